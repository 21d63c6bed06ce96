/**
 * Node's timer ceiling, the one place it is written down.
 *
 * `setTimeout` (and every API built on it: the SDK's request timeouts, `AbortSignal.timeout`) takes a
 * delay of at most 2^31 - 1 ms, about 24.8 days. A larger delay is not clamped: Node warns
 * (`TimeoutOverflowWarning`) and fires the timer after 1 ms, so a "very long" timeout becomes an
 * immediate one. Code that means "no timeout" passes this value instead.
 *
 * @module
 */

/** The longest delay Node's timers accept, in milliseconds (2^31 - 1, about 24.8 days). */
export const MAX_TIMER_DELAY_MS = 2_147_483_647;
