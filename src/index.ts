/**
 * codemode: a sandboxed code-mode execution engine for LLM agents.
 *
 * Named exports only; each layer adds its public surface here.
 *
 * @module
 */

export { CodemodeError, isCodemodeError, describeError } from './errors.js';
export type { CodemodeErrorCode } from './errors.js';
export { createLogger, setLogLevel, getLogLevel } from './log.js';
export type { Logger, LogLevel as LoggerLevel } from './log.js';

// The sandbox, the proxy and the server: the same surfaces as the subpath exports codemode/sandbox,
// codemode/proxy and codemode/server (the root loads isolated-vm with the sandbox; those two never do).
export * from './exports/sandbox.js';
export * from './exports/proxy.js';
export * from './exports/server.js';

// codemode: the code-mode engine (catalog, declarations, discovery, execute) and its MCP-facing tools.
export { CodeMode, DEFAULT_MAX_TOOL_CALLS, DEFAULT_MAX_CONCURRENT_TOOL_CALLS } from './codemode/codemode.js';
export type { CodeModeOptions, ExecuteOptions } from './codemode/codemode.js';
export { mcpClientSource, localTools, localTool } from './codemode/sources.js';
export type { SourceClient } from './codemode/sources.js';
export type { McpClientSourceOptions, LocalTool, LocalToolContext } from './codemode/sources.js';
export { ToolError, ToolCallLimitError } from './codemode/tool-errors.js';
export type { ToolErrorData } from './codemode/tool-errors.js';
export type {
  ToolSource,
  ToolDefinition,
  ToolCallOutput,
  SourceCallOptions,
  JsonSchema,
  ExecuteResult,
  ExecuteError,
  ExecuteErrorKind,
  ExecuteStats,
  ToolCallRecord,
} from './codemode/types.js';
export { DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LIMIT } from './codemode/search.js';
export type { SearchDetail, SearchOptions, ToolSummary, ParameterSummary } from './codemode/search.js';
export { schemaToTs } from './codemode/schema-to-ts.js';
export { toIdentifier } from './codemode/naming.js';
// What the catalog does to a hostile upstream's tools: caps, and the warnings it records when it trims.
export { MAX_TOOL_DESCRIPTION_CHARS, MAX_TOOL_NAME_CHARS, MAX_SCHEMA_CHARS, MAX_SCHEMA_DEPTH } from './codemode/catalog-limits.js';
export type { CatalogWarning } from './codemode/catalog-limits.js';
export {
  createCodeModeTools,
  formatExecuteResult,
  executeDescription,
  DEFAULT_MAX_RESULT_TEXT_CHARS,
  DEFAULT_MAX_LOG_TEXT_CHARS,
  DEFAULT_INLINE_DECLARATIONS_MAX_CHARS,
} from './codemode/mcp-tools.js';
export type { CodeModeTool, CodeModeToolsOptions, ToolHandlerExtra } from './codemode/mcp-tools.js';

// telemetry: OpenTelemetry helpers (tracer, MCP semconv attributes, trace context in params._meta).
export { getTracer, injectTraceContext, extractTraceContext, TRACER_NAME, ATTR, ERROR_TYPE_TOOL_ERROR } from './telemetry/index.js';
