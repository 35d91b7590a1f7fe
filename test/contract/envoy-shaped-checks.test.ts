// The CheckRequests the contract tests and the local edge send must be what Envoy sends with envoy.yaml: only
// headers that pass ext_authz's `allowed_headers` (pseudo-headers included), never a header a later filter adds
// (the router's x-envoy-expected-rq-timeout-ms, x-envoy-attempt-count, …: ext_authz runs before the router), and
// the partial-body marker whenever a body was buffered (Envoy adds it after filtering, so it is always there).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import type { JsonValue } from "@bufbuild/protobuf";
import { PARTIAL_BODY_HEADER } from "../../src/contract/index.js";
import { buildCheckRequest } from "../../src/edge/check-request.js";
import type { CheckRequest } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { checkRequestFromJson, envoyCheckRequest } from "../support/authz-client.js";

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML is walked loosely; a wrong path fails the test anyway
type Any = Record<string, any>;
const root = join(import.meta.dirname, "../..");
const fixtures = join(import.meta.dirname, "fixtures");

/** ext_authz's allowed_headers patterns from a bootstrap, as name predicates. */
function allowedBy(file: string): (name: string) => boolean {
  const doc = parse(readFileSync(join(root, "envoy", file), "utf8")) as Any;
  const hcm = doc.static_resources.listeners[0].filter_chains[0].filters[0].typed_config as Any;
  const authz = (hcm.http_filters as Any[]).find((f) => f.name === "envoy.filters.http.ext_authz")!.typed_config;
  const patterns = authz.allowed_headers.patterns as Array<{ exact?: string; prefix?: string }>;
  return (name) =>
    patterns.some((p) => (p.exact !== undefined ? name === p.exact : name.startsWith(p.prefix ?? "\u0000")));
}

/** What is wrong with a CheckRequest as something Envoy could have sent (empty when nothing). */
function problems(request: CheckRequest, allowed: (name: string) => boolean): string[] {
  const http = request.attributes?.request?.http;
  if (!http) return ["no attributes.request.http"];
  const out: string[] = [];
  const names = [...Object.keys(http.headers), ...(http.headerMap?.headers ?? []).map((h) => h.key)].map((n) =>
    n.toLowerCase(),
  );
  for (const name of names) {
    if (name === PARTIAL_BODY_HEADER) continue;
    if (!allowed(name)) out.push(`header ${name} is not in allowed_headers`);
  }
  const buffered = http.rawBody.length > 0 || http.body !== "";
  if (buffered && !names.includes(PARTIAL_BODY_HEADER)) out.push(`a body without ${PARTIAL_BODY_HEADER}`);
  if (!buffered && names.includes(PARTIAL_BODY_HEADER)) out.push(`${PARTIAL_BODY_HEADER} without a body`);
  return out;
}

const allowed = allowedBy("envoy.yaml");

describe("CheckRequests are what Envoy sends with envoy.yaml", () => {
  it("both bootstraps allow the same headers (the fixtures stand for both)", () => {
    const local = allowedBy("envoy.local.yaml");
    for (const name of ["authorization", "content-type", "x-request-id", ":path", "user-agent", "x-tollgate-a"]) {
      expect(local(name), name).toBe(allowed(name));
    }
  });

  const files = readdirSync(fixtures).filter((f) => f.endsWith(".json"));
  for (const file of files) {
    it(`fixture ${file}`, () => {
      const json = JSON.parse(readFileSync(join(fixtures, file), "utf8")) as JsonValue;
      expect(problems(checkRequestFromJson(json, { KEY: "tg_x" }), allowed)).toEqual([]);
    });
  }

  it("envoyCheckRequest (the contract tests' builder), with and without bodies, both header encodings", () => {
    const shapes = [
      {},
      { body: '{"model":"m"}' },
      { body: '{"model":"m"}', asBytes: true },
      { body: '{"model":"m"}', partialBody: true },
      { body: '{"model":"m"}', rawHeaders: true },
      { method: "GET", path: "/v1/models" },
      { headers: { authorization: "Bearer tg_x", "x-tollgate-provider": "anthropic" }, body: "{}" },
    ];
    for (const shape of shapes) expect(problems(envoyCheckRequest(shape), allowed), JSON.stringify(shape)).toEqual([]);
  });

  it("the local edge's CheckRequest, from a request carrying every kind of header", () => {
    const headers: Array<[string, string]> = [
      ["authorization", "Bearer tg_x"],
      ["content-type", "application/json"],
      ["content-length", "13"],
      ["user-agent", "OpenAI/JS 6.0.0"],
      ["accept-encoding", "gzip, deflate"],
      ["x-request-id", "envoy-generated"],
      ["x-forwarded-for", "198.51.100.7"],
      ["x-forwarded-proto", "https"],
      ["x-envoy-external-address", "198.51.100.7"],
      ["x-envoy-expected-rq-timeout-ms", "600000"],
      ["x-tollgate-provider", "anthropic"],
    ];
    for (const body of [new Uint8Array(), new TextEncoder().encode('{"model":"m"}')]) {
      const check = buildCheckRequest({
        method: "POST",
        path: "/v1/chat/completions",
        authority: "gateway.example.com",
        scheme: "https",
        protocol: "HTTP/1.1",
        headers,
        body,
        remote: { address: "198.51.100.7", port: 1 },
        local: { address: "10.0.0.5", port: 10000 },
        streamId: "1",
        startMs: 0,
      });
      expect(problems(check, allowed), `body ${body.length}`).toEqual([]);
    }
  });

  it("notices a router-added header and a missing partial-body marker (the check above can fail)", () => {
    const bad = envoyCheckRequest({ body: "{}" });
    bad.attributes!.request!.http!.headers["x-envoy-expected-rq-timeout-ms"] = "600000";
    delete bad.attributes!.request!.http!.headers[PARTIAL_BODY_HEADER];
    expect(problems(bad, allowed)).toEqual([
      "header x-envoy-expected-rq-timeout-ms is not in allowed_headers",
      `a body without ${PARTIAL_BODY_HEADER}`,
    ]);
  });
});
