import { context, SpanKind, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { Client as V2Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { serveHttp } from '../../src/server/http.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { telemetryWanted } from '../../src/cli/telemetry.js';
import { CodeMode } from '../../src/codemode/codemode.js';
import { localTools } from '../../src/codemode/sources.js';
import { fileURLToPath } from 'node:url';
import { parseServersConfig } from '../../src/server/config.js';
import { createCodemodeServer, createCodemodeServerFromConfig } from '../../src/server/server.js';
import type { CodemodeServer } from '../../src/server/server.js';

const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });

describe('OpenTelemetry in the server', () => {
  let server: CodemodeServer;
  let client: Client;

  beforeAll(async () => {
    trace.setGlobalTracerProvider(provider);
    // The async context manager the OpenTelemetry Node SDK registers.
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    const mode = await CodeMode.create({ sources: [localTools('loc', [{ name: 'one', handler: () => 1 }])] });
    server = createCodemodeServer({ mode });
    const [a, b] = InMemoryTransport.createLinkedPair();
    await server.connect(b);
    client = new Client({ name: 'otel-test', version: '1.0.0' });
    await client.connect(a);
  });

  afterAll(async () => {
    await client?.close();
    await server?.close({ graceMs: 0 });
    await provider.shutdown();
  });

  it('a SERVER span "tools/call execute" continues the caller trace from _meta and parents the execute span', async () => {
    exporter.reset();
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const callerSpanId = '00f067aa0ba902b7';
    const result = await client.callTool({ name: 'execute', arguments: { code: 'return await tools.loc.one()' }, _meta: { traceparent: `00-${traceId}-${callerSpanId}-01` } });
    expect(result.structuredContent).toMatchObject({ result: 1 });
    await provider.forceFlush();
    const spans = exporter.getFinishedSpans();
    const serverSpan = spans.find((s) => s.name === 'tools/call execute');
    expect(serverSpan).toBeDefined();
    expect(serverSpan!.kind).toBe(SpanKind.SERVER);
    expect(serverSpan!.spanContext().traceId).toBe(traceId);
    expect(serverSpan!.parentSpanContext?.spanId).toBe(callerSpanId);
    expect(serverSpan!.attributes).toMatchObject({ 'mcp.method.name': 'tools/call', 'gen_ai.tool.name': 'execute' });
    const execute = spans.find((s) => s.name === 'codemode.execute');
    expect(execute?.parentSpanContext?.spanId).toBe(serverSpan!.spanContext().spanId);
    const inner = spans.find((s) => s.name === 'tools/call one');
    expect(inner?.parentSpanContext?.spanId).toBe(execute!.spanContext().spanId);
    expect(inner?.spanContext().traceId).toBe(traceId);
  });

  it('a 2026-07-28 request over HTTP: the traceparent in its _meta parents the SERVER span and the execute span (SEP-414)', async () => {
    const own = createCodemodeServer({ mode: await CodeMode.create({ sources: [localTools('loc', [{ name: 'one', handler: () => 1 }])] }) });
    const http = await serveHttp(own, { port: 0 });
    const modern = new V2Client({ name: 'otel-2026', version: '1.0.0' }, { versionNegotiation: { mode: { pin: '2026-07-28' } } });
    try {
      await modern.connect(new StreamableHTTPClientTransport(new URL(http.url)));
      exporter.reset();
      const traceId = '0af7651916cd43dd8448eb211c80319c';
      const callerSpanId = 'b7ad6b7169203331';
      const result = await modern.callTool({ name: 'execute', arguments: { code: 'return await tools.loc.one()' }, _meta: { traceparent: `00-${traceId}-${callerSpanId}-01` } });
      expect(result.structuredContent).toMatchObject({ result: 1 });
      await provider.forceFlush();
      const spans = exporter.getFinishedSpans();
      const serverSpan = spans.find((s) => s.name === 'tools/call execute');
      expect(serverSpan?.spanContext().traceId).toBe(traceId);
      expect(serverSpan?.parentSpanContext?.spanId).toBe(callerSpanId);
      expect(serverSpan?.attributes).toMatchObject({ 'network.transport': 'tcp' });
      const execute = spans.find((s) => s.name === 'codemode.execute');
      expect(execute?.parentSpanContext?.spanId).toBe(serverSpan!.spanContext().spanId);
    } finally {
      await modern.close();
      await http.close({ graceMs: 0 });
    }
  });

  it('inner tool calls carry the trace context in _meta to a 2026-07-28-only upstream, beside a 2025 one in the same execute', async () => {
    const modern = fileURLToPath(new URL('../fixtures/modern-upstream.ts', import.meta.url));
    const inventory = fileURLToPath(new URL('../../examples/inventory-server.mjs', import.meta.url));
    const config = parseServersConfig(
      JSON.stringify({
        mcpServers: {
          modern: { command: process.execPath, args: ['--experimental-strip-types', '--no-warnings', modern, '--stdio'] },
          inventory: { command: process.execPath, args: [inventory] },
        },
      }),
    );
    const own = await createCodemodeServerFromConfig(config, { connectTimeoutMs: 20_000, onStderr: () => undefined });
    const [a, b] = InMemoryTransport.createLinkedPair();
    await own.connect(b);
    const c = new Client({ name: 'otel-eras', version: '1.0.0' });
    try {
      await c.connect(a);
      const traceId = '5bf92f3577b34da6a3ce929d0e0e4736';
      const result = await c.callTool({
        name: 'execute',
        arguments: { code: "const e = await tools.modern.echo({ text: 'x' }); const p = await tools.inventory.get_product({ sku: 'KB-101' }); return { traceparent: e.traceparent, sku: p.sku };" },
        _meta: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
      });
      const value = (result.structuredContent as { result: { traceparent: string; sku: string } }).result;
      expect(value.sku).toBe('KB-101');
      // The 2026-07-28 upstream got a traceparent of the caller's trace, parented by the inner CLIENT span.
      expect(value.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
      await provider.forceFlush();
      const inner = exporter.getFinishedSpans().find((s) => s.name === 'tools/call echo');
      expect(value.traceparent.split('-')[2]).toBe(inner?.spanContext().spanId);
    } finally {
      await c.close();
      await own.close({ graceMs: 0 });
    }
  });

  it('marks a failed execute with error.type tool_error', async () => {
    exporter.reset();
    const result = await client.callTool({ name: 'execute', arguments: { code: 'throw new Error("no")' } });
    expect(result.isError).toBe(true);
    await provider.forceFlush();
    const serverSpan = exporter.getFinishedSpans().find((s) => s.name === 'tools/call execute');
    expect(serverSpan?.attributes['error.type']).toBe('tool_error');
  });
});

describe('telemetryWanted', () => {
  it('is off unless OTEL_* asks for export', () => {
    expect(telemetryWanted({})).toBe(false);
    expect(telemetryWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' })).toBe(true);
    expect(telemetryWanted({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:4318/v1/traces' })).toBe(true);
    expect(telemetryWanted({ OTEL_TRACES_EXPORTER: 'console' })).toBe(true);
    expect(telemetryWanted({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x' })).toBe(false);
    expect(telemetryWanted({ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x' })).toBe(false);
  });
});
