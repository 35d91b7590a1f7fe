import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CheckRequestSchema } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { liftCheckRequest } from "../../src/dataplane/authz/check-request.js";
import { MalformedMessage } from "../../src/dataplane/wire/index.js";
import { envoyCheckRequest, type CheckShape } from "../support/authz-client.js";
import { liftDecodedCheckRequest } from "../support/lift-oracle.js";

const BODY = JSON.stringify({ model: "gpt-5.5", max_tokens: 16, messages: [{ role: "user", content: "hi ✓" }] });

/** Lifting from the wire must equal lifting protobuf-es's full decode of the same bytes. */
function agrees(bytes: Uint8Array): void {
  const lifted = liftCheckRequest(Buffer.from(bytes));
  expect(lifted).toEqual(liftDecodedCheckRequest(fromBinary(CheckRequestSchema, bytes)));
}

const text = fc.string({ unit: "binary", maxLength: 40 });
const header = fc.tuple(
  fc.oneof(
    fc.constantFrom(
      "authorization",
      "AUTHORIZATION",
      "x-envoy-auth-partial-body",
      "X-Envoy-Auth-Partial-Body",
      "x-tollgate-provider",
      "X-Tollgate-Debug",
      "x-tollgate-",
      "x-tollgat",
      ":path",
    ),
    text,
  ),
  fc.oneof(fc.constant("true"), text),
);

/** Random requests in the shape Envoy sends, with everything admission does not read filled in too. */
const requests = fc.record({
  method: fc.oneof(fc.constantFrom("POST", "GET"), text),
  path: fc.oneof(fc.constantFrom("/v1/chat/completions", "/v1/models?x=1", "/v1/models/gpt-5.5"), text),
  headers: fc.uniqueArray(header, { selector: ([k]) => k, maxLength: 12 }),
  raw: fc.option(
    fc.array(
      fc.record({ key: text, value: fc.oneof(fc.constant(""), text), rawValue: fc.uint8Array({ maxLength: 20 }) }),
      { maxLength: 8 },
    ),
  ),
  body: fc.oneof(fc.constant(""), text),
  rawBody: fc.uint8Array({ maxLength: 64 }),
  id: text,
  host: text,
  size: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  extensions: fc.dictionary(text, text, { maxKeys: 3 }),
});

describe("liftCheckRequest reads a CheckRequest's wire bytes as protobuf-es's full decode would", () => {
  it("for the requests the contract tests send: text and bytes bodies, both header encodings, the partial-body marker", () => {
    const shapes: CheckShape[] = [
      { headers: { authorization: "Bearer tg_x" }, body: BODY },
      { headers: { authorization: "Bearer tg_x" }, body: BODY, asBytes: false },
      { headers: { authorization: ["Bearer a", "Bearer b"] }, body: BODY, rawHeaders: true },
      { headers: { authorization: "Bearer tg_x" }, body: BODY.slice(0, 20), partialBody: true },
      { method: "GET", path: "/v1/models?limit=2", headers: { authorization: "Bearer tg_x" } },
      { headers: {}, body: new Uint8Array([0xff, 0xfe, 0x00]) },
    ];
    for (const shape of shapes) agrees(toBinary(CheckRequestSchema, envoyCheckRequest(shape)));
  });

  it("for random requests, non-ASCII strings and unread fields included", () => {
    fc.assert(
      fc.property(requests, (r) => {
        const message = create(CheckRequestSchema, {
          attributes: {
            contextExtensions: r.extensions,
            request: {
              time: { seconds: 1n, nanos: 2 },
              http: {
                id: r.id,
                method: r.method,
                path: r.path,
                host: r.host,
                size: r.size,
                body: r.body,
                rawBody: r.rawBody,
                headers: Object.fromEntries(r.headers),
                headerMap: r.raw ? { headers: r.raw } : undefined,
              },
            },
          },
        });
        agrees(toBinary(CheckRequestSchema, message));
      }),
      { numRuns: 500 },
    );
  });

  it("reads invalid UTF-8 in header values and the path with replacement characters, and never alters a body", () => {
    // protobuf-es refuses such a request whole (a failed call, so a 503 for one odd header value).
    const marked = toBinary(
      CheckRequestSchema,
      envoyCheckRequest({
        path: "/v1/\u0001\u0002x",
        headers: { authorization: "Bearer \u0001\u0002" },
        body: '{"a":"\u0001\u0002"}',
        asBytes: false,
      }),
    );
    const bytes = Buffer.from(marked);
    for (let i = 0; i + 1 < bytes.length; i++) {
      if (bytes[i] === 0x01 && bytes[i + 1] === 0x02) bytes.set([0xc3, 0x28], i); // a lead byte without its continuation
    }
    expect(() => fromBinary(CheckRequestSchema, bytes)).toThrow();
    const lifted = liftCheckRequest(bytes);
    expect(lifted.admission.path).toBe("/v1/\ufffd(x");
    expect(lifted.admission.authorization).toEqual(["Bearer \ufffd("]);
    // The body stays bytes, so admission answers 400 "not valid UTF-8" instead of admitting a different body.
    expect(lifted.admission.body).toEqual({
      kind: "bytes",
      bytes: new Uint8Array([...Buffer.from('{"a":"'), 0xc3, 0x28, ...Buffer.from('"}')]),
    });
  });

  it("merges a message that arrives in several pieces, as protobuf parsing requires", () => {
    const a = toBinary(CheckRequestSchema, envoyCheckRequest({ headers: { authorization: "Bearer one" }, body: BODY }));
    const b = toBinary(
      CheckRequestSchema,
      create(CheckRequestSchema, { attributes: { request: { http: { path: "/v1/models" } } } }),
    );
    const joined = new Uint8Array([...a, ...b]);
    agrees(joined);
    expect(liftCheckRequest(Buffer.from(joined)).admission.path).toBe("/v1/models");
  });

  it("refuses bytes that are not protobuf with a specific error, and never reads past the end", () => {
    const good = toBinary(
      CheckRequestSchema,
      envoyCheckRequest({ headers: { authorization: "Bearer tg_x" }, body: BODY }),
    );
    for (let cut = 1; cut < good.length; cut += 7) {
      const part = Buffer.from(good.subarray(0, cut));
      let decoded: unknown;
      try {
        decoded = fromBinary(CheckRequestSchema, part);
      } catch {
        decoded = undefined;
      }
      // A cut inside a field is malformed for both; a cut between fields is a valid shorter message for both.
      if (decoded === undefined) expect(() => liftCheckRequest(part)).toThrow(MalformedMessage);
      else agrees(part);
    }
    expect(() => liftCheckRequest(Buffer.from([0x0a, 0x05, 0x01]))).toThrow("invalid CheckRequest: truncated field");
    expect(() => liftCheckRequest(Buffer.from([0x00]))).toThrow("invalid CheckRequest: field number 0");
    expect(() => liftCheckRequest(Buffer.from([0x13]))).toThrow("invalid CheckRequest: unsupported wire type 3");
    expect(() =>
      liftCheckRequest(Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])),
    ).toThrow("varint longer than 10 bytes");
    expect(() => liftCheckRequest(Buffer.from([0x10]))).toThrow("truncated varint");
    // A field admission reads, with the wrong wire type (attributes as a varint).
    expect(() => liftCheckRequest(Buffer.from([0x08, 0x01]))).toThrow(
      "invalid CheckRequest: wire type 0 where a length-delimited field belongs",
    );
  });
});
