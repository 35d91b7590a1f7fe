// Envoy's own replies (not authz's verdicts) reach the official openai SDK as typed errors with OpenAI-shaped
// bodies: authz timed out or unreachable, a header mutation Envoy refuses, the provider unreachable. Through the
// local edge, which applies envoy.local.yaml's local_reply_config as read from the file. Authz here is a fake gRPC
// server, so each failure is produced on purpose; the real stack's "authz down" case is in data-plane.test.ts.
import { createServer, type Server } from "node:net";
import type { AddressInfo } from "node:net";
import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  Authorization,
  CheckResponseSchema,
  type CheckRequest,
  type CheckResponse,
} from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { startGrpcServer, type RunningGrpcServer } from "../../src/dataplane/grpc/grpc-server.js";
import { createEdge, type Edge } from "../../src/edge/edge.js";
import { createMockProvider } from "../../src/mock-provider/mock-provider.js";

const set = (key: string, value: string) => ({ header: { key, value }, append: false });
const allow = (extra: ReturnType<typeof set>[] = []) =>
  create(CheckResponseSchema, {
    status: { code: 0 },
    httpResponse: {
      case: "okResponse",
      value: {
        headers: [
          set(":path", "/v1/chat/completions"),
          set("authorization", "Bearer mock-openai"),
          set("x-tollgate-provider", "openai"),
          ...extra,
        ],
      },
    },
    dynamicMetadata: { decision_id: "dec-1", prompt_tokens_estimate: 5 },
  });

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server: Server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe("Envoy's own replies reach the openai SDK typed [edge]", () => {
  const closers: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  async function fakeAuthz(answer: (done: (r: CheckResponse) => void) => void): Promise<RunningGrpcServer> {
    const server = await startGrpcServer("127.0.0.1:0", [
      {
        service: Authorization,
        implementation: {
          check(_call: grpc.ServerUnaryCall<CheckRequest, CheckResponse>, cb: grpc.sendUnaryData<CheckResponse>) {
            answer((r) => cb(null, r));
          },
        },
      },
    ]);
    closers.push(() => server.close(0));
    return server;
  }

  async function edgeFor(authzAddress: string, upstream?: string): Promise<Edge> {
    const edge = await createEdge({
      authzAddress,
      host: "127.0.0.1",
      port: 0,
      fileLogPath: null,
      authzTimeoutMs: 300,
      defaultUpstream: upstream,
    });
    closers.push(() => edge.close());
    return edge;
  }

  async function failure(edge: Edge): Promise<InstanceType<typeof OpenAI.APIError>> {
    const client = new OpenAI({ apiKey: "tg_x", baseURL: `${edge.url}/v1`, maxRetries: 0, timeout: 10_000 });
    const error = await client.chat.completions
      .create({ model: "gpt-oss-120b", messages: [{ role: "user", content: "hi" }] })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(OpenAI.APIError);
    return error as InstanceType<typeof OpenAI.APIError>;
  }

  it("authz unreachable (ext_authz_error): 503 unavailable with Retry-After", async () => {
    const e = await failure(await edgeFor(`127.0.0.1:${await closedPort()}`));
    expect(e).toBeInstanceOf(OpenAI.InternalServerError);
    expect(e.status).toBe(503);
    expect(e.code).toBe("unavailable");
    expect(e.type).toBe("server_error");
    expect(e.headers?.get("retry-after")).toBe("1");
    expect(e.headers?.get("content-type")).toBe("application/json");
  });

  it("authz timed out (ext_authz_error): 503 unavailable with Retry-After", async () => {
    const authz = await fakeAuthz(() => {}); // never answers
    const e = await failure(await edgeFor(`127.0.0.1:${authz.port}`));
    expect(e.status).toBe(503);
    expect(e.code).toBe("unavailable");
    expect(e.headers?.get("retry-after")).toBe("1");
  });

  it("a header mutation envoy.yaml refuses (ext_authz_invalid): 500 internal_error", async () => {
    const authz = await fakeAuthz((done) => done(allow([set("host", "elsewhere.example")])));
    const mock = await createMockProvider();
    closers.push(() => mock.close());
    const e = await failure(await edgeFor(`127.0.0.1:${authz.port}`, mock.url));
    expect(e).toBeInstanceOf(OpenAI.InternalServerError);
    expect(e.status).toBe(500);
    expect(e.code).toBe("internal_error");
    expect(e.type).toBe("server_error");
    expect(mock.requests).toHaveLength(0);
  });

  it("the provider unreachable before any byte (UF): 503 unavailable with Retry-After", async () => {
    const authz = await fakeAuthz((done) => done(allow()));
    const e = await failure(await edgeFor(`127.0.0.1:${authz.port}`, `http://127.0.0.1:${await closedPort()}`));
    expect(e.status).toBe(503);
    expect(e.code).toBe("unavailable");
    expect(e.headers?.get("retry-after")).toBe("1");
  });

  it("authz's own denial passes through unchanged (its body, its Retry-After)", async () => {
    const body = JSON.stringify({
      error: { message: "slow down", type: "rate_limit_error", param: null, code: "rate_limit_exceeded" },
    });
    const authz = await fakeAuthz((done) =>
      done(
        create(CheckResponseSchema, {
          status: { code: 7 },
          httpResponse: {
            case: "deniedResponse",
            value: {
              status: { code: 429 },
              headers: [set("content-type", "application/json"), set("retry-after", "17")],
              body,
            },
          },
          dynamicMetadata: { verdict: "rate_limit_exceeded" },
        }),
      ),
    );
    const e = await failure(await edgeFor(`127.0.0.1:${authz.port}`));
    expect(e).toBeInstanceOf(OpenAI.RateLimitError);
    expect(e.message).toContain("slow down");
    expect(e.headers?.get("retry-after")).toBe("17");
  });
});
