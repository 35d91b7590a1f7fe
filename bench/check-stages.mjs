#!/usr/bin/env node
// In-process cost of each step of tollgate's Check on bench/check's request, without gRPC or HTTP/2: where the
// microseconds between the null server and tollgate go. Numbers are per call on one core, after warm-up. Admission
// runs here without the rate limiter and credit gate (bench/check's profile covers those).
//
//   npm run build && node bench/check-stages.mjs
import { mkdtempSync, rmSync } from "node:fs";
import { randomBytes, randomUUID } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { CheckRequestSchema, CheckResponseSchema } from "../dist/gen/envoy/service/auth/v3/external_auth_pb.js";
import { loadConfig } from "../dist/config/config.js";
import { openStores } from "../dist/app/stores.js";
import { createKeyCache } from "../dist/adapters/memory/key-cache.js";
import { liftCheckRequest } from "../dist/dataplane/authz/check-request.js";
import { encodeAllow, toCheckResponse } from "../dist/dataplane/authz/check-response.js";
import { checkEncoded } from "../dist/dataplane/authz/authz-service.js";
import { admit } from "../dist/domain/admission.js";
import { parseChatRequest } from "../dist/domain/chat-request.js";
import { estimateChatPromptTokens } from "../dist/domain/token-estimate.js";
import { hashSecret } from "../dist/domain/api-key.js";
import { createDecisionSigner } from "../dist/dataplane/signing/decision-signature.js";
import { checkRequest, CHAT_BODY } from "./check-request.mjs";

const work = mkdtempSync(join(tmpdir(), "tollgate-stages-"));
const config = loadConfig({ env: { TOLLGATE_DATABASE_URL: `sqlite:${join(work, "stages.db")}` } });
const stores = await openStores(config);
const account = await stores.accounts.create({ name: "bench", planId: "scale" });
const issued = await stores.keys.create({
  accountId: account.id,
  name: "bench",
  expiresAt: null,
  allowedModels: null,
  labels: {},
});
const snapshot = await stores.catalogue.snapshot();
const keyCache = createKeyCache({ source: stores.keys });
const routes = new Map(
  [...snapshot.providers.values()].map((p) => [p.id, { basePath: p.basePath, authorization: `Bearer mock-${p.id}` }]),
);
const admission = {
  snapshot: () => snapshot,
  keys: keyCache,
  routable: (p) => routes.has(p),
  now: Date.now,
  newDecisionId: randomUUID,
};
// authz signs each allow's billing metadata with the secret the meter shares; any 32 bytes will do in process.
const signer = createDecisionSigner(randomBytes(32));
const options = {
  admission,
  providers: () => routes,
  logger: { error() {}, debug() {}, isLevelEnabled: () => false },
  signer,
};

const { bytes } = checkRequest(issued.secret);
const wire = Buffer.from(bytes); // grpc-js hands the decoder a Buffer
const lifted = liftCheckRequest(wire);
// The end-to-end stage must measure an allow (bytes), not the fault path's 503 CheckResponse.
if (!((await checkEncoded(lifted, options)) instanceof Uint8Array))
  throw new Error("checkEncoded did not allow the benchmark request");
const verdict = await admit(lifted.admission, admission); // also warms the key cache
if (verdict.kind !== "allow") throw new Error(`not allowed: ${JSON.stringify(verdict)}`);
const chat = parseChatRequest(lifted.admission.body);
const allow = toCheckResponse(verdict, {
  tollgateHeaders: lifted.tollgateHeaders,
  query: lifted.query,
  provider: routes.get(verdict.model.provider),
  signer,
});
const nullOk = create(CheckResponseSchema, { status: { code: 0 }, httpResponse: { case: "okResponse", value: {} } });
const allowWithoutMetadata = create(CheckResponseSchema, { ...allow, dynamicMetadata: undefined });
const bodyText = new TextDecoder().decode(lifted.admission.body.bytes);

const stages = [
  ["fromBinary(CheckRequest)  [null server does this too]", () => fromBinary(CheckRequestSchema, bytes)],
  ["toBinary(fixed OK)        [null server's response]", () => toBinary(CheckResponseSchema, nullOk)],
  ["liftCheckRequest (from wire bytes; replaces fromBinary)", () => liftCheckRequest(wire)],
  ["hashSecret (sha256)", () => hashSecret(issued.secret)],
  ["parseChatRequest (utf8 decode + JSON.parse)", () => parseChatRequest(lifted.admission.body)],
  ["  of which JSON.parse alone", () => JSON.parse(bodyText)],
  ["estimateChatPromptTokens (gpt-tokenizer o200k)", () => estimateChatPromptTokens(chat.body)],
  ["randomUUID (decision id)", () => randomUUID()],
  ["admit (all of admission)", () => admit(lifted.admission, admission)],
  [
    "toCheckResponse(allow) (create + Struct)",
    () =>
      toCheckResponse(verdict, {
        tollgateHeaders: lifted.tollgateHeaders,
        query: lifted.query,
        provider: routes.get("openai"),
        signer,
      }),
  ],
  ["signer.sign (HMAC-SHA256 over the billing fields)", () => signer.sign(verdict)],
  ["toBinary(allow CheckResponse)", () => toBinary(CheckResponseSchema, allow)],
  ["toBinary(the same, without dynamic_metadata)", () => toBinary(CheckResponseSchema, allowWithoutMetadata)],
  [
    "encodeAllow (what the gRPC path sends: cached header encoding)",
    () =>
      encodeAllow(verdict, {
        tollgateHeaders: lifted.tollgateHeaders,
        query: lifted.query,
        provider: routes.get("openai"),
        signer,
      }),
  ],
  [
    "lift + checkEncoded() end to end, no transport (wire bytes in and out)",
    () => checkEncoded(liftCheckRequest(wire), options),
  ],
];

console.log(
  `tollgate Check stages, ${process.version}, body ${CHAT_BODY.length} B, allow response ${toBinary(CheckResponseSchema, allow).length} B\n`,
);
for (const [name, fn] of stages) {
  const us = await measure(fn);
  console.log(`${us.toFixed(2).padStart(8)} µs  ${name}`);
}
await stores.db.close();
rmSync(work, { recursive: true, force: true });

async function measure(fn) {
  const run = async (n) => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      const r = fn();
      if (r instanceof Promise) await r;
    }
    return Number(process.hrtime.bigint() - start) / 1e3 / n;
  };
  await run(2000);
  let n = 2000;
  while ((await run(n)) * n < 200_000) n *= 2;
  const samples = [];
  for (let i = 0; i < 5; i++) samples.push(await run(n));
  return samples.sort((a, b) => a - b)[2];
}
