import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { compileLocalReply } from "../../src/edge/local-reply.js";

// Review finding (uncommitted): stream_idle_timeout (300 s) cuts a non-streaming request whose provider is still
// thinking (long reasoning answers send no byte until done) with Envoy's own "stream timeout" (flag SI; 504 once the
// request was read whole, 408 on older Envoys), plain text: no mapper covers it, so the SDK gets an untyped error, and
// the openai SDKs retry 408 and 5xx on their own (twice by default), each retry again billed nothing (no usage: no response reached the usage filter) while the provider
// charges for it. Envoy's own 408 for slow request headers (request_headers_timeout) is unmapped too.
type Mapper = { filter?: Record<string, unknown> };

function flagsOf(filter: unknown): string[] {
  if (filter === null || typeof filter !== "object") return [];
  const f = filter as Record<string, unknown>;
  const own = ((f.response_flag_filter as { flags?: string[] } | undefined)?.flags ?? []) as string[];
  const nested = [f.and_filter, f.or_filter].flatMap((g) =>
    ((g as { filters?: unknown[] } | undefined)?.filters ?? []).flatMap(flagsOf),
  );
  return [...own, ...nested];
}

describe.each(["envoy.yaml", "envoy.local.yaml"])("%s local_reply_config", (file) => {
  const doc = parse(readFileSync(join(__dirname, "../../envoy", file), "utf8"));
  const hcm = doc.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
  const mappers = (hcm.local_reply_config?.mappers ?? []) as Mapper[];

  it("maps Envoy's stream idle timeout (SI) to an OpenAI-shaped JSON error", () => {
    expect(mappers.some((m) => flagsOf(m.filter).includes("SI"))).toBe(true);
  });
});

// Every plain-text reply Envoy itself sends a client (not authz's verdicts) is OpenAI-shaped JSON, read here with the
// local edge's evaluator of the same local_reply_config (src/edge/local-reply.ts), which follows Envoy's rules.
const VERDICT = { "envoy.filters.http.ext_authz": { verdict: "invalid_request" } };
const ADMITTED = { "envoy.filters.http.ext_authz": { decision_id: "d-1" } };

describe.each(["envoy.yaml", "envoy.local.yaml"])(
  "%s: Envoy's own plain-text replies as OpenAI-shaped JSON",
  (file) => {
    const doc = parse(readFileSync(join(__dirname, "../../envoy", file), "utf8"));
    const hcm = doc.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
    const localReply = compileLocalReply(hcm.local_reply_config);
    const rewrite = (
      status: number,
      body: string,
      flags: string[] = [],
      metadata: Record<string, Record<string, string>> = {},
    ) => {
      const out = localReply.rewrite({
        status,
        body,
        flags,
        metadata,
        headers: new Map([["content-type", ["text/plain"]]]),
      });
      return { ...out, json: JSON.parse(out.body) as { error: Record<string, unknown> } };
    };

    it.each([504, 408])(
      "stream idle timeout (SI, %i): a timeout error the openai SDKs do not retry on their own (each retry is billed)",
      (status) => {
        const out = rewrite(status, "stream timeout", ["SI"], ADMITTED);
        expect(out.status).toBe(status);
        expect(out.headers.get("content-type")).toEqual(["application/json"]);
        expect(out.json.error).toMatchObject({ type: "server_error", code: "timeout", param: null });
        expect(String(out.json.error.message)).toContain("stream");
        expect(out.headers.get("x-should-retry")).toEqual(["false"]);
        expect(out.headers.has("retry-after")).toBe(false);
      },
    );

    it("request headers or the whole request too slow (408, no flag): request_timeout, safe to retry at once", () => {
      for (const body of ["request header timeout", "request timeout"]) {
        const out = rewrite(408, body);
        expect(out.json.error).toMatchObject({ type: "invalid_request_error", code: "request_timeout" });
        expect(out.headers.get("retry-after")).toEqual(["1"]);
      }
    });

    it("headers too large (431): request_too_large", () => {
      const out = rewrite(431, "Request Header Fields Too Large");
      expect(out.status).toBe(431);
      expect(out.json.error).toMatchObject({ type: "invalid_request_error", code: "request_too_large" });
    });

    it("a codec or header error (400, with or without DPE): invalid_request", () => {
      for (const flags of [[], ["DPE"]]) {
        const out = rewrite(400, "Bad Request", flags);
        expect(out.status).toBe(400);
        expect(out.json.error).toMatchObject({ type: "invalid_request_error", code: "invalid_request" });
      }
    });

    it("the provider broke off before its response headers (UR, UPE, LR): unavailable with Retry-After", () => {
      for (const flag of ["UR", "UPE", "LR"]) {
        const out = rewrite(
          503,
          "upstream connect error or disconnect/reset before headers. reset reason: remote reset",
          [flag],
          ADMITTED,
        );
        expect(out.json.error).toMatchObject({ type: "server_error", code: "unavailable" });
        expect(out.headers.get("retry-after")).toEqual(["1"]);
      }
    });

    it("authz's own 400 (it carries a verdict) passes unchanged", () => {
      const body =
        '{"error":{"message":"bad","type":"invalid_request_error","param":"model","code":"invalid_request"}}';
      const out = localReply.rewrite({
        status: 400,
        body,
        flags: ["UAEX"],
        metadata: VERDICT,
        headers: new Map([["content-type", ["application/json"]]]),
      });
      expect(out.body).toBe(body);
    });
  },
);
