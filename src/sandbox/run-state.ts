/**
 * The host's state of one run, shared by the run lifecycle (isolated-vm-sandbox.ts), the guest bridge
 * handlers (guest-bridge.ts) and outcome mapping (outcome.ts).
 *
 * @module
 */

import type { FlatFunctions } from './host-functions.js';
import type { HostCallContext, HostFunction, LogEntry, SandboxLimits } from './types.js';

/** Stand-in for "no limit" in numbers sent to the guest (JSON has no Infinity). */
export const NO_LIMIT = Number.MAX_SAFE_INTEGER;

/** Null-prototype copy of an option bag: isolated-vm reads options through the prototype chain. */
export function bag<const T extends object>(fields: T): T {
  return Object.assign(Object.create(null) as T, fields);
}

/** What the host tracks while one run is in flight. */
export interface RunState {
  readonly functions: readonly HostFunction[];
  /** Where each function appears in the guest (`tools.fx.echo`), for messages: never read off the function. */
  readonly paths: readonly (readonly string[])[];
  readonly limits: Readonly<SandboxLimits>;
  settled: boolean;
  hostCalls: number;
  pending: number;
  controller: AbortController | undefined;
  /** Shared by the run's host calls (created with the controller on the first call). */
  context: HostCallContext | undefined;
  /** Pending guest timers by guest id. */
  readonly timers: Map<number, NodeJS.Timeout>;
  readonly logs: LogEntry[];
  logBytes: number;
  hostDroppedLogLines: number;
  guestTruncatedLogs: boolean;
  /** Log-bridge messages received; the guest's outcome says how many it sent. */
  logMessagesReceived: number;
  /** Set while the host waits for log messages still in transit after the run's result arrived. */
  onLogMessage: (() => void) | undefined;
  /** Ends that wait at once (the wall clock, an abort or close() came first); set while it lasts. */
  endDrain: (() => void) | undefined;
  /** Closed once the outcome is final: later messages would change a result already handed out. */
  logsClosed: boolean;
  /** The sandbox's `hotPollMs`: how long the event loop stays hot after a fast host-function answer. */
  readonly hotPollMs: number;
}

/** A fresh state for a run of `flat`'s functions under `limits`. */
export function createRunState(flat: FlatFunctions, limits: Readonly<SandboxLimits>, hotPollMs: number): RunState {
  return {
    functions: flat.functions,
    paths: flat.paths,
    limits,
    settled: false,
    hostCalls: 0,
    pending: 0,
    controller: undefined,
    context: undefined,
    timers: new Map(),
    logs: [],
    logBytes: 0,
    hostDroppedLogLines: 0,
    guestTruncatedLogs: false,
    logMessagesReceived: 0,
    onLogMessage: undefined,
    endDrain: undefined,
    logsClosed: false,
    hotPollMs,
  };
}
