/**
 * A headless "browser" for codemode-remote's --open-command, run with plain `node` (which strips the
 * types): follows redirects, keeps cookies, approves the OAuth proxy's consent page, and ends at the
 * bridge's own callback page. Exit 0 when authorized.
 */
const cookies = new Map<string, string>();
let next = process.argv[2]!;
let init: RequestInit = {};
for (let hop = 0; hop < 12; hop++) {
  const headers = new Headers(init.headers);
  if (cookies.size > 0) headers.set('cookie', [...cookies].map(([k, v]) => `${k}=${v}`).join('; '));
  const res = await fetch(next, { ...init, headers, redirect: 'manual', signal: AbortSignal.timeout(15_000) });
  for (const line of res.headers.getSetCookie()) {
    const [name, ...value] = (line.split(';')[0] ?? '').split('=');
    if (name) cookies.set(name.trim(), value.join('='));
  }
  const location = res.headers.get('location');
  if (res.status >= 300 && res.status < 400 && location !== null) {
    await res.body?.cancel();
    next = new URL(location, next).href;
    init = {};
    continue;
  }
  const html = await res.text();
  const action = /<form method="post" action="([^"]+)"/.exec(html)?.[1];
  const txn = /name="txn" value="([^"]+)"/.exec(html)?.[1];
  if (res.status === 200 && action !== undefined && txn !== undefined) {
    next = new URL(action.replace(/&#(\d+);/g, (_m, c: string) => String.fromCharCode(Number(c))), next).href;
    init = { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ txn, action: 'approve' }).toString() };
    continue;
  }
  process.exit(res.ok && html.includes('Authorized') ? 0 : 1);
}
process.exit(1);
