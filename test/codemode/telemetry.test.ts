import { join } from 'node:path';
import { context, SpanKind, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CodeMode } from '../../src/codemode/codemode.js';
import { localTools, mcpClientSource } from '../../src/codemode/sources.js';
import type { IsolatedVmSandbox } from '../../src/sandbox/isolated-vm-sandbox.js';
import { testSandbox } from './helpers.js';
import { extractTraceContext, injectTraceContext } from '../../src/telemetry/index.js';
import { connectEverythingHttp, connectStdio, root } from './helpers.js';
import type { Connected } from './helpers.js';

const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });

describe('OpenTelemetry', () => {
  let sandbox: IsolatedVmSandbox;
  let conn: Connected;
  let mode: CodeMode;

  beforeAll(async () => {
    trace.setGlobalTracerProvider(provider);
    // The async context manager the OpenTelemetry Node SDK registers.
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    sandbox = testSandbox();
    conn = await connectStdio([join(root, 'test/fixtures/codemode-server.ts')]);
    mode = await CodeMode.create({
      sources: [mcpClientSource('fx', conn.client, { transport: 'pipe' }), localTools('loc', [{ name: 'one', handler: () => 1 }])],
      sandbox,
    });
  }, 30_000);

  afterAll(async () => {
    await mode?.close();
    await conn?.close();
    await sandbox?.close();
    trace.disable();
    context.disable();
    await provider.shutdown();
  });

  it('records an execute span with CLIENT child spans per tool call, and sends traceparent upstream', async () => {
    exporter.reset();
    const result = await mode.execute(`
      await tools.fx.add({ a: 1, b: 2 });
      try { await tools.fx.fail({ message: 'bad' }); } catch {}
      await tools.loc.one();
      return 'ok';
    `);
    expect(result.ok, JSON.stringify(result)).toBe(true);
    await provider.forceFlush();
    const spans = exporter.getFinishedSpans();
    const execute = spans.find((s) => s.name === 'codemode.execute');
    expect(execute).toBeDefined();
    expect(execute!.attributes).toMatchObject({ 'codemode.outcome': 'ok', 'codemode.tool_calls': 3 });
    expect(typeof execute!.attributes['codemode.duration_ms']).toBe('number');

    const add = spans.find((s) => s.name === 'tools/call add');
    const fail = spans.find((s) => s.name === 'tools/call fail');
    const one = spans.find((s) => s.name === 'tools/call one');
    for (const span of [add, fail, one]) {
      expect(span?.kind).toBe(SpanKind.CLIENT);
      expect(span?.parentSpanContext?.spanId).toBe(execute!.spanContext().spanId);
      expect(span?.spanContext().traceId).toBe(execute!.spanContext().traceId);
    }
    expect(add!.attributes).toMatchObject({ 'mcp.method.name': 'tools/call', 'gen_ai.tool.name': 'add', 'network.transport': 'pipe' });
    expect(add!.attributes['error.type']).toBeUndefined();
    expect(fail!.attributes).toMatchObject({ 'gen_ai.tool.name': 'fail', 'error.type': 'tool_error' });
    expect(one!.attributes['network.transport']).toBeUndefined();

    // The upstream received the CLIENT span's context in params._meta.
    const stats = (await conn.client.callTool({ name: 'stats', arguments: {} })).structuredContent as { metas: Array<{ traceparent?: string }> };
    const traceparents = stats.metas.map((m) => m?.traceparent);
    expect(traceparents).toEqual([
      `00-${add!.spanContext().traceId}-${add!.spanContext().spanId}-01`,
      `00-${fail!.spanContext().traceId}-${fail!.spanContext().spanId}-01`,
    ]);
  });

  it('marks a failed execute with its kind', async () => {
    exporter.reset();
    const result = await mode.execute('throw new Error("x")');
    expect(result.ok).toBe(false);
    await provider.forceFlush();
    const execute = exporter.getFinishedSpans().find((s) => s.name === 'codemode.execute');
    expect(execute!.attributes).toMatchObject({ 'codemode.outcome': 'runtime', 'error.type': 'runtime' });
    expect(execute!.status.code).toBe(2);
  });

  it('nests the execute span under the caller’s active span', async () => {
    exporter.reset();
    const parent = trace.getTracer('test').startSpan('caller');
    await context.with(trace.setSpan(context.active(), parent), () => mode.execute('return await tools.loc.one()'));
    parent.end();
    await provider.forceFlush();
    const spans = exporter.getFinishedSpans();
    const execute = spans.find((s) => s.name === 'codemode.execute');
    expect(execute?.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(spans.find((s) => s.name === 'tools/call one')?.parentSpanContext?.spanId).toBe(execute!.spanContext().spanId);
  });

  it('reports network.transport and mcp.session.id for a Streamable HTTP upstream', async () => {
    const http = await connectEverythingHttp();
    const httpMode = await CodeMode.create({ sources: [mcpClientSource('everything', http.client, { transport: 'tcp' })], sandbox });
    try {
      exporter.reset();
      const result = await httpMode.execute(`return await tools.everything.echo({ message: 'x' })`);
      expect(result.ok).toBe(true);
      await provider.forceFlush();
      const span = exporter.getFinishedSpans().find((s) => s.name === 'tools/call echo');
      const sessionId = (http.client.transport as { sessionId?: string }).sessionId;
      expect(sessionId).toMatch(/.+/);
      expect(span?.attributes).toMatchObject({ 'network.transport': 'tcp', 'mcp.session.id': sessionId });
    } finally {
      await httpMode.close();
      await http.close();
    }
  });

  it('round-trips trace context through _meta', () => {
    const span = trace.getTracer('test').startSpan('x');
    const meta = injectTraceContext({ other: 1 }, trace.setSpan(context.active(), span));
    span.end();
    expect(meta).toMatchObject({ other: 1, traceparent: `00-${span.spanContext().traceId}-${span.spanContext().spanId}-01` });
    const extracted = trace.getSpanContext(extractTraceContext(meta));
    expect(extracted).toMatchObject({ traceId: span.spanContext().traceId, spanId: span.spanContext().spanId, isRemote: true });
    expect(trace.getSpanContext(extractTraceContext({ traceparent: 'garbage' }))).toBeUndefined();
    expect(injectTraceContext({}, context.active())).toEqual({});
  });
});
