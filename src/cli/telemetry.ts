/**
 * OpenTelemetry for the CLI: the SDK is loaded and started only when standard `OTEL_*` variables ask for
 * export, so a plain run pays nothing (not even the module load). Spans go through `@opentelemetry/api`,
 * which is a no-op until a provider registers.
 *
 * @module
 */

import { createLogger } from '../log.js';
import { describeError } from '../errors.js';

const log = createLogger('otel');

/** True when the environment asks for trace export (an OTLP endpoint, or an exporter other than `none`). */
export function telemetryWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  if ((env.OTEL_SDK_DISABLED ?? '').toLowerCase() === 'true') return false;
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '').trim().toLowerCase();
  if (exporters === 'none') return false;
  return exporters !== '' || (env.OTEL_EXPORTER_OTLP_ENDPOINT ?? '') !== '' || (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? '') !== '';
}

export interface TelemetryHandle {
  /** Flushes and stops the SDK. Idempotent, never throws. */
  shutdown(): Promise<void>;
}

/**
 * Starts `@opentelemetry/sdk-node` (exporters from `OTEL_*`) when `telemetryWanted()`; otherwise does
 * nothing and returns `undefined`.
 */
export async function startTelemetryFromEnv(env: NodeJS.ProcessEnv = process.env): Promise<TelemetryHandle | undefined> {
  if (!telemetryWanted(env)) return undefined;
  try {
    const { NodeSDK } = await import('@opentelemetry/sdk-node');
    const sdk = new NodeSDK({ serviceName: env.OTEL_SERVICE_NAME ?? 'codemode', instrumentations: [] });
    sdk.start();
    log.debug('OpenTelemetry SDK started');
    let done: Promise<void> | undefined;
    return {
      shutdown() {
        done ??= sdk.shutdown().catch((err: unknown) => log.warn('OpenTelemetry shutdown failed', { error: describeError(err) }));
        return done;
      },
    };
  } catch (err) {
    log.warn('could not start OpenTelemetry; continuing without it', { error: describeError(err) });
    return undefined;
  }
}
