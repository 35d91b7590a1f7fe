// The CheckRequest bench/check sends: what Envoy's ext_authz sends for `POST /v1/chat/completions` with
// with_request_body and pack_as_bytes: about a dozen lower-cased headers (pseudo-headers included), ~1 KB chat body.
import { create, toBinary } from "@bufbuild/protobuf";
import { CheckRequestSchema } from "../dist/gen/envoy/service/auth/v3/external_auth_pb.js";

export const CHAT_BODY = JSON.stringify({
  model: "gpt-5.5",
  messages: [
    {
      role: "system",
      content:
        "You are a support assistant for Acme Cloud. Answer briefly and accurately, cite the relevant documentation " +
        "page when you can, and never reveal internal ticket numbers. If a question is about billing, explain the " +
        "invoice line items in plain language and suggest contacting billing@acme.example for refunds.",
    },
    {
      role: "user",
      content:
        "Hi! Since yesterday our nightly export job fails with 'quota exceeded for bucket exports-eu-west' even though " +
        "the dashboard shows we used only 62% of the storage quota this month. We did rotate the service account key " +
        "on Monday and moved the job from the old scheduler to the new workflow engine. The job writes about 40 GB " +
        "in roughly 12,000 objects. What could be going on, and what should we check first? Also, will the failed " +
        "runs be billed?",
    },
  ],
  max_tokens: 256,
  stream: false,
});

/** The CheckRequest for `secret`, its encoding, and what it carries. */
export function checkRequest(secret) {
  const body = new TextEncoder().encode(CHAT_BODY);
  const headers = {
    ":authority": "gateway.tollgate.example",
    ":method": "POST",
    ":path": "/v1/chat/completions",
    ":scheme": "https",
    authorization: `Bearer ${secret}`,
    "content-type": "application/json",
    "content-length": String(body.length),
    accept: "application/json",
    "user-agent": "OpenAI/Python 1.99.1",
    "x-stainless-lang": "python",
    "x-request-id": "5f0c9a8e-1b7d-4c2e-9f43-2a6d8b1e7c90",
    "x-forwarded-for": "203.0.113.24",
    "x-forwarded-proto": "https",
    "x-envoy-expected-rq-timeout-ms": "600000",
  };
  const message = create(CheckRequestSchema, {
    attributes: {
      source: {
        address: {
          address: {
            case: "socketAddress",
            value: { address: "203.0.113.24", portSpecifier: { case: "portValue", value: 53422 } },
          },
        },
      },
      destination: {
        address: {
          address: {
            case: "socketAddress",
            value: { address: "10.0.0.7", portSpecifier: { case: "portValue", value: 10000 } },
          },
        },
      },
      request: {
        time: { seconds: BigInt(Math.floor(Date.now() / 1000)), nanos: 0 },
        http: {
          id: "10874513972930165244",
          method: "POST",
          headers,
          path: "/v1/chat/completions",
          host: "gateway.tollgate.example",
          scheme: "https",
          size: BigInt(body.length),
          protocol: "HTTP/1.1",
          rawBody: body,
        },
      },
    },
  });
  const bytes = toBinary(CheckRequestSchema, message);
  return { message, bytes, headerCount: Object.keys(headers).length, bodyBytes: body.length };
}

/** A gRPC length-prefixed message: 0 (uncompressed), 4-byte big-endian length, the message. */
export function grpcFrame(bytes) {
  const framed = Buffer.alloc(5 + bytes.length);
  framed.writeUInt32BE(bytes.length, 1);
  framed.set(bytes, 5);
  return framed;
}
