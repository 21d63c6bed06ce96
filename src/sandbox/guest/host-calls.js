// @ts-check
/*
 * Guest bootstrap, part: host functions (tools and callTool) and timers: the guest side of the host-call and timer bridges.
 *
 * One of the parts ../bootstrap.ts joins, in order, into the body of one function run in each fresh isolate
 * (README.md here has the rules for editing them). Top-level names are shared by all the parts.
 */
// ---- host functions ----
// The guest sends [id, index, argsJson] with applySyncPromise. The host answers with the envelope (see
// unwrap) at once
// when the host function settled within the host's current turn (one round trip), or with '' and later
// through settleCall(id, envelope). A late answer resolves a promise this closure made with the captured
// Promise constructor, with a string, so no patched "then" (or other guest code) sits in between.
// Errors are made inside the async wrapper, so their stacks run through the user's code.
const calls = ObjectCreate(null);
let nextCallId = 0;
const toGuestError = ((e) => {
  const name = ObjectHasOwn(e, 'name') && typeof e.name === 'string' ? e.name : 'Error';
  const message = ObjectHasOwn(e, 'message') && typeof e.message === 'string' ? e.message : '';
  const Cls = errorClasses[name];
  const err = Cls !== undefined ? new Cls(message) : new ErrorCtor(message);
  if (Cls === undefined && name !== 'Error') defineValue(err, 'name', name, false);
  const data = ObjectHasOwn(e, 'data') ? e.data : null;
  if (data !== null && typeof data === 'object' && !ArrayIsArray(data)) {
    const keys = ObjectKeys(data);
    for (let i = 0; i < keys.length; i++) defineValue(err, keys[i], data[keys[i]], true);
  }
  return err;
});
const settleCall = ((id, envelope) => {
  hostTasks++;
  const resolve = calls[id];
  if (resolve === undefined) return;
  delete calls[id];
  // A reply to a settled run is dropped: the call stays pending, so no guest code resumes after the outcome.
  if (settled) return;
  resolve(envelope);
});
// Envelopes: 'u' (undefined), 'v' + JSON value, or 'e' + JSON {name, message, data?}.
const unwrap = ((envelope) => {
  const kind = envelope[0];
  if (kind === 'u') return undefined;
  let parsed;
  try { parsed = JSONParse(slice(envelope, 1)); } catch { throw new ErrorCtor('malformed reply from the host'); }
  if (kind === 'v') return parsed;
  throw toGuestError(parsed);
});
const refusedAfterEnd = (label) => new ErrorCtor(label + ': the run has already ended, so host calls are refused');
// UTF-8 length of s, counting no further than max + 4 (the caller only asks whether it exceeds max).
const utf8Length = ((s, max) => {
  let n = 0;
  const len = s.length;
  for (let i = 0; i < len && n <= max; i++) {
    const c = ReflectApply(StringCharCodeAt, s, [i]);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < len) {
      const d = ReflectApply(StringCharCodeAt, s, [i + 1]);
      if (d >= 0xdc00 && d <= 0xdfff) { n += 4; i++; } else n += 3;
    } else n += 3;
  }
  return n;
});
const makeHostFunction = ((index, label, name) => {
  const f = async function (...args) {
    if (settled) throw refusedAfterEnd(label);
    let argsJson;
    try {
      // UTF-8 never takes fewer bytes than UTF-16 code units, so the copier stops at maxArgBytes characters;
      // only text that might encode past the byte cap is measured (3 MiB of "€" passed a 1 MiB cap by length).
      argsJson = toJSONText(args, label + ' arguments', maxArgBytes);
      if (argsJson.length > maxArgBytes / 3 && utf8Length(argsJson, maxArgBytes) > maxArgBytes) throw OUTPUT_LIMIT;
    } catch (err) {
      if (err === OUTPUT_LIMIT) throw new ErrorCtor(label + ': arguments are larger than the ' + maxArgBytes + '-byte limit (in UTF-8)');
      throw err;
    }
    // One microtask before the call leaves. The run's reaction to the user's function settling is queued the
    // moment it settles, so it runs before this; a call started after that moment (by a .then callback queued
    // earlier, say) then sees settled and never reaches the host, whether the calls before it were answered
    // at once or later. Without this, fast host functions let such calls through and slow ones did not.
    await undefined;
    if (settled) throw refusedAfterEnd(label);
    if (pending >= maxPending) {
      throw new ErrorCtor(label + ': too many host calls pending at once (limit ' + maxPending + '); await some before starting more');
    }
    const id = ++nextCallId;
    pending++;
    let envelope;
    try {
      // Blocks this isolate at most until the host's current turn ends.
      envelope = ReflectApply(refApplySyncPromise, hostCallRef, [undefined, [id, index, argsJson], syncCallOptions]);
      if (envelope === '') envelope = await new PromiseCtor((resolve) => { calls[id] = resolve; });
    } finally {
      pending--;
    }
    return unwrap(envelope);
  };
  defineValue(f, 'name', name, false);
  return f;
});
// ---- timers ----
// setTimeout/clearTimeout backed by host timers. The host clears every timer when the run settles, so no
// callback runs after that; the guest side refuses new timers once settled. A callback that throws fails the
// run (the first such error is reported when the run ends), as an uncaught exception would in Node.
const timers = ObjectCreate(null);
let nextTimerId = 0;
let liveTimers = 0;
let timerError;
let timerFailed = false;
const MAX_TIMERS = 1000;
// Every setTimeout/clearTimeout is a message to the host thread, and applyIgnored does not wait: a guest
// looping on clearTimeout(setTimeout(...)) queued messages faster than the host could drain them, starving
// its event loop (the wall-clock timer never fired) until the process died of heap exhaustion. So the
// number of timers one run may ever create is capped too; with it, the host handles at most 2 messages each.
let timersCreated = 0;
const MAX_TIMERS_PER_RUN = 10000;
// The longest delay the host's timers take (Node's ceiling), set by install() from the host's constant.
let maxTimerDelay = 0;
const guestSetTimeout = function setTimeout(callback, delay, ...args) {
  if (typeof callback !== 'function') throw new TypeErrorCtor('setTimeout: the callback must be a function');
  if (settled) return 0;
  if (liveTimers >= MAX_TIMERS) throw new ErrorCtor('setTimeout: too many pending timers (limit ' + MAX_TIMERS + ')');
  if (timersCreated >= MAX_TIMERS_PER_RUN) {
    throw new ErrorCtor('setTimeout: too many timers created in this run (limit ' + MAX_TIMERS_PER_RUN + '); wait on fewer, longer timers');
  }
  timersCreated++;
  let ms = typeof delay === 'number' ? delay : 0;
  if (!(ms >= 0)) ms = 0;
  if (ms > maxTimerDelay) ms = maxTimerDelay;
  const id = ++nextTimerId;
  const entry = ObjectCreate(null);
  entry.callback = callback;
  entry.args = args;
  timers[id] = entry;
  liveTimers++;
  ReflectApply(refApplyIgnored, timerRef, [undefined, [id, ms]]);
  return id;
};
const guestClearTimeout = function clearTimeout(id) {
  if (typeof id !== 'number') return;
  const entry = timers[id];
  if (entry === undefined) return;
  delete timers[id];
  liveTimers--;
  ReflectApply(refApplyIgnored, timerRef, [undefined, [id, -1]]);
};
const fireTimer = (id) => {
  hostTasks++;
  const entry = timers[id];
  if (entry === undefined || settled) return;
  delete timers[id];
  liveTimers--;
  try {
    ReflectApply(entry.callback, undefined, entry.args);
  } catch (err) {
    if (!timerFailed) { timerFailed = true; timerError = err; }
  }
};
defineValue(G, 'setTimeout', guestSetTimeout, false);
defineValue(G, 'clearTimeout', guestClearTimeout, false);
