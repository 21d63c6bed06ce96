/**
 * The stderr logger. In stdio modes stdout carries only JSON-RPC, so nothing in `src/` writes there;
 * every diagnostic goes through this module to stderr.
 *
 * @module
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

function parseLevel(value: string | undefined): LogLevel | undefined {
  const v = value?.trim().toLowerCase();
  return v !== undefined && v in RANK ? (v as LogLevel) : undefined;
}

let threshold: LogLevel = parseLevel(process.env.CODEMODE_LOG_LEVEL) ?? 'info';
let sink: (line: string) => void = (line) => {
  process.stderr.write(line);
};

/** Sets the process-wide log level. `CODEMODE_LOG_LEVEL` sets the initial one. */
export function setLogLevel(level: LogLevel): void {
  threshold = level;
}

export function getLogLevel(): LogLevel {
  return threshold;
}

/** Replaces where log lines go (tests capture them). Returns a function that restores the previous sink. */
export function setLogSink(next: (line: string) => void): () => void {
  const previous = sink;
  sink = next;
  return () => {
    sink = previous;
  };
}

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

function formatFields(fields: Record<string, unknown> | undefined): string {
  if (fields === undefined) return '';
  let out = '';
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    let text: string;
    if (value instanceof Error) text = value.message;
    else if (typeof value === 'string') text = value;
    else {
      try {
        text = JSON.stringify(value) ?? String(value);
      } catch {
        text = String(value);
      }
    }
    out += ` ${key}=${/\s/.test(text) ? JSON.stringify(text) : text}`;
  }
  return out;
}

/**
 * A logger for one component. Lines look like `codemode[proxy] warn: upstream closed code=1`.
 *
 * @example
 * ```ts
 * const log = createLogger('proxy');
 * log.warn('upstream closed', { code: 1 });
 * ```
 */
export function createLogger(scope: string): Logger {
  const emit = (level: Exclude<LogLevel, 'silent'>, message: string, fields?: Record<string, unknown>): void => {
    if (RANK[level] < RANK[threshold]) return;
    sink(`codemode[${scope}] ${level}: ${message}${formatFields(fields)}\n`);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}
