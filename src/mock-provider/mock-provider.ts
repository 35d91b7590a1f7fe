import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { gzipSync } from "node:zlib";
import { completionObject, errorBody, streamCompletion, type ReplyMeta } from "./openai-responses.js";
import { parseChatRequest, planReply } from "./reply.js";

/** Where `tollgate serve --mock-providers` listens: Envoy's local config points every provider cluster here. */
export const MOCK_PROVIDER_DEFAULT_PORT = 9100;

/** Options for a mock provider; everything defaults to an ephemeral port on loopback with any bearer accepted. */
export interface MockProviderOptions {
  /** 0 (the default) picks a free port. */
  port?: number;
  /** Defaults to 127.0.0.1. */
  host?: string;
  /**
   * Expected bearer credential per provider path: the key is the path before `/chat/completions` (`"/v1"`,
   * `"/v1beta/openai"`, `""`). When given, a request whose credential does not match its path's entry gets a 401,
   * which proves the gateway swapped the client key for the right provider credential.
   */
  expectedCredentials?: Record<string, string>;
}

/** One request as the mock received it, so tests can assert what the gateway forwarded (headers, rewritten body). */
export interface RecordedRequest {
  method: string;
  /** Path including any query string. */
  path: string;
  headers: IncomingHttpHeaders;
  /** The parsed JSON body, or undefined when the body was empty or not JSON. */
  body: unknown;
  rawBody: string;
}

/** A running mock provider; `requests` is live and shared with `GET /_mock/requests`. */
export interface MockProvider {
  url: string;
  port: number;
  requests: RecordedRequest[];
  clear(): void;
  close(): Promise<void>;
}

const COMPLETIONS_SUFFIX = "/chat/completions";
const CONTROL_PATH = "/_mock/requests";

/** Stands in for OpenAI, Anthropic, Google and DeepSeek in tests and demos: deterministic replies, real counts. */
export async function createMockProvider(options: MockProviderOptions = {}): Promise<MockProvider> {
  const requests: RecordedRequest[] = [];
  let sequence = 0;

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendError(res, 500, `mock provider failure: ${String(err)}`, "server_error", null);
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rawBody = await readBody(req);
    const path = req.url ?? "/";
    const pathname = path.split("?")[0] ?? "/";
    const method = req.method ?? "GET";

    if (pathname === CONTROL_PATH) {
      if (method === "GET") return sendJson(res, 200, requests);
      if (method === "DELETE") {
        requests.length = 0;
        res.writeHead(204).end();
        return;
      }
    }
    requests.push({ method, path, headers: { ...req.headers }, body: tryParseJson(rawBody), rawBody });

    if (method !== "POST" || !pathname.endsWith(COMPLETIONS_SUFFIX)) {
      return sendError(res, 404, `Unknown request URL: ${method} ${pathname}.`, "invalid_request_error", "unknown_url");
    }
    const credential = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "")?.[1];
    if (credential === undefined) {
      return sendError(res, 401, "You didn't provide an API key.", "invalid_request_error", null);
    }
    if (options.expectedCredentials !== undefined) {
      const expected = options.expectedCredentials[pathname.slice(0, -COMPLETIONS_SUFFIX.length)];
      if (credential !== expected) {
        return sendError(res, 401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key");
      }
    }

    const json = tryParseJson(rawBody);
    if (json === undefined) {
      return sendError(res, 400, "We could not parse the JSON body of your request.", "invalid_request_error", null);
    }
    const parsed = parseChatRequest(json);
    if (!parsed.ok) return sendError(res, 400, parsed.message, "invalid_request_error", null, parsed.param);
    const { request } = parsed;

    const plan = planReply(request);
    if (plan.kind === "error") return sendError(res, plan.status, plan.message, errorType(plan.status), "mock_error");

    const meta: ReplyMeta = {
      id: `chatcmpl-mock${++sequence}`,
      created: Math.floor(Date.now() / 1000),
      model: request.model,
    };
    // A compressing provider answers in gzip whenever the request allows it: it lists gzip (the SDKs send
    // Accept-Encoding: gzip) or sends no Accept-Encoding at all, which RFC 9110 §12.5.3 reads as "any coding".
    // `gzip=force` compresses regardless, as a provider (or a proxy in front of it) that ignores identity does.
    const gzip = plan.gzip === "force" || (plan.gzip === "allowed" && acceptsGzip(req.headers["accept-encoding"]));
    if (request.stream) return streamCompletion(res, meta, plan, request.includeUsage, gzip);
    if (plan.slowMs > 0) await sleep(plan.slowMs);
    if (plan.cutAfter !== undefined) {
      req.socket.destroy();
      return;
    }
    if (gzip) {
      res
        .writeHead(200, { "content-type": "application/json", "content-encoding": "gzip" })
        .end(gzipSync(JSON.stringify(completionObject(meta, plan))));
      return;
    }
    sendJson(res, 200, completionObject(meta, plan));
  }

  const host = options.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const urlHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;

  return {
    url: `http://${urlHost}:${port}`,
    port,
    requests,
    clear: () => {
      requests.length = 0;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/** The demo entry point (`tollgate serve --mock-providers`): same mock, on the port Envoy's local config expects. */
export function startMockProvider(options: MockProviderOptions = {}): Promise<MockProvider> {
  return createMockProvider({ ...options, port: options.port ?? MOCK_PROVIDER_DEFAULT_PORT });
}

/** Whether an Accept-Encoding value admits gzip: absent (any coding), or gzip listed without q=0. */
export function acceptsGzip(value: string | undefined): boolean {
  if (value === undefined) return true;
  return value.split(",").some((part) => {
    const [coding, ...params] = part.trim().toLowerCase().split(";");
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    return (coding === "gzip" || coding === "*") && (q === undefined || Number(q.slice(2)) > 0);
  });
}

function errorType(status: number): string {
  if (status === 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

function sendError(
  res: ServerResponse,
  status: number,
  message: string,
  type: string,
  code: string | null,
  param: string | null = null,
): void {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (status === 429 || status === 503) headers["retry-after"] = "1";
  res.writeHead(status, headers).end(errorBody(message, type, code, param));
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(value));
}

function tryParseJson(text: string): unknown {
  if (text === "") return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
