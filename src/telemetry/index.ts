/**
 * OpenTelemetry helpers: the tracer, MCP semantic-convention attribute names, and W3C trace context
 * carried in a request's `params._meta`.
 *
 * Only `@opentelemetry/api` is used, so without a registered SDK every span is a no-op and costs almost
 * nothing. Register a tracer provider (for example `NodeSDK` from `@opentelemetry/sdk-node`) to export.
 *
 * @module
 */

import { context, propagation, trace, TraceFlags } from '@opentelemetry/api';
import type { Context, Tracer } from '@opentelemetry/api';

/** The instrumentation scope name of every span codemode creates. */
export const TRACER_NAME = 'codemode';

/** Attribute names from the OpenTelemetry MCP and GenAI semantic conventions. */
export const ATTR = {
  MCP_METHOD: 'mcp.method.name',
  MCP_SESSION_ID: 'mcp.session.id',
  MCP_PROTOCOL_VERSION: 'mcp.protocol.version',
  TOOL_NAME: 'gen_ai.tool.name',
  JSONRPC_REQUEST_ID: 'jsonrpc.request.id',
  NETWORK_TRANSPORT: 'network.transport',
  ERROR_TYPE: 'error.type',
  MCP_RESOURCE_URI: 'mcp.resource.uri',
  GEN_AI_PROMPT_NAME: 'gen_ai.prompt.name',
} as const;

/** The `error.type` value for a tool result with `isError: true`. */
export const ERROR_TYPE_TOOL_ERROR = 'tool_error';

/**
 * The tracer codemode uses, resolved on each call so a provider registered after import still applies.
 *
 * @example
 * ```ts
 * const span = getTracer().startSpan('work');
 * span.end();
 * ```
 */
export function getTracer(): Tracer {
  return trace.getTracer(TRACER_NAME);
}

const carrierSetter = {
  set(carrier: Record<string, unknown>, key: string, value: string) {
    carrier[key] = value;
  },
};

const carrierGetter = {
  keys(carrier: Record<string, unknown>) {
    return Object.keys(carrier);
  },
  get(carrier: Record<string, unknown>, key: string) {
    const value = carrier[key];
    return typeof value === 'string' ? value : undefined;
  },
};

/**
 * Returns `meta` with the trace context of `ctx` added (`traceparent`, and `tracestate` when present), for a
 * request's `params._meta`. A registered global propagator is used first; when none wrote `traceparent`
 * (no SDK propagator registered) it is written from the active span directly, because the MCP semantic
 * conventions make `traceparent` in `_meta` the carrier regardless of SDK setup.
 *
 * @example
 * ```ts
 * const params = { name: 'search', arguments: {}, _meta: injectTraceContext({}) };
 * ```
 */
export function injectTraceContext(meta: Record<string, unknown> = {}, ctx: Context = context.active()): Record<string, unknown> {
  const out: Record<string, unknown> = { ...meta };
  propagation.inject(ctx, out, carrierSetter);
  if (typeof out.traceparent !== 'string') {
    const spanContext = trace.getSpanContext(ctx);
    if (spanContext !== undefined && trace.isSpanContextValid(spanContext)) {
      const flags = (spanContext.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED ? '01' : '00';
      out.traceparent = `00-${spanContext.traceId}-${spanContext.spanId}-${flags}`;
      const state = spanContext.traceState?.serialize();
      if (state) out.tracestate = state;
    }
  }
  return out;
}

/**
 * The context carried in a request's `params._meta` (for a server continuing a caller's trace). Uses the
 * registered propagator, and parses `traceparent` directly when none is registered.
 *
 * @example
 * ```ts
 * const parent = extractTraceContext(request.params._meta);
 * const span = getTracer().startSpan('tools/call search', { kind: SpanKind.SERVER }, parent);
 * ```
 */
export function extractTraceContext(meta: unknown, parent: Context = context.active()): Context {
  if (typeof meta !== 'object' || meta === null) return parent;
  const carrier = meta as Record<string, unknown>;
  const extracted = propagation.extract(parent, carrier, carrierGetter);
  if (trace.getSpanContext(extracted) !== trace.getSpanContext(parent)) return extracted;
  const header = carrier.traceparent;
  if (typeof header !== 'string') return parent;
  const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(header.trim());
  if (!m) return parent;
  const spanContext = { traceId: m[1]!, spanId: m[2]!, traceFlags: parseInt(m[3]!, 16) & TraceFlags.SAMPLED, isRemote: true };
  if (!trace.isSpanContextValid(spanContext)) return parent;
  return trace.setSpanContext(parent, spanContext);
}
