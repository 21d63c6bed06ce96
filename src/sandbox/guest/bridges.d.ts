/**
 * For the type checker only (tsconfig.guest.json): the three host bridges the bootstrap function receives as
 * its parameters (isolated-vm References, created in prepared-isolate.ts). load order and wrapper: ../bootstrap.ts.
 */
declare const hostCallRef: { applySyncPromise: (...args: unknown[]) => unknown };
declare const logRef: { applyIgnored: (...args: unknown[]) => unknown };
declare const timerRef: { applyIgnored: (...args: unknown[]) => unknown };
