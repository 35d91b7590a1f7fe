import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { toBinary } from "@bufbuild/protobuf";
import { type CheckRequest, CheckRequestSchema } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { hashSecret, mintSecret } from "../../src/domain/api-key.js";
import { admit, type AdmissionDeps, type HoldRequest, type Quota } from "../../src/domain/admission.js";
import { compileSnapshot, type CatalogueModel } from "../../src/domain/catalogue.js";
import type { ResolvedKey } from "../../src/domain/keys.js";
import { nanos, parseUsdPerMillionTokens, type Nanos } from "../../src/domain/money.js";
import { warmUpTokenEstimate } from "../../src/domain/token-estimate.js";
import type { Verdict } from "../../src/domain/verdict.js";
import { liftCheckRequest } from "../../src/dataplane/authz/check-request.js";
import { envoyCheckRequest } from "../support/authz-client.js";

/** envoy.yaml's ext_authz `with_request_body.max_request_bytes`: a body this long or longer reaches authz cut (413). */
export const BODY_LIMIT = 1_048_576;

/** The model every admission fixture serves: $5 in, $30 out per million tokens, at most 64,000 output tokens. */
export const MODEL: CatalogueModel = {
  id: "gpt-5.5",
  displayName: "GPT-5.5",
  provider: "openai",
  upstreamModel: "gpt-5.5",
  tier: "basic",
  prices: {
    input: parseUsdPerMillionTokens("5"),
    cachedInput: parseUsdPerMillionTokens("0.5"),
    output: parseUsdPerMillionTokens("30"),
  },
  contextWindow: 400_000,
  maxOutputTokens: 64_000,
  retired: false,
};

/** Admission in memory: one key on a plan with ample limits, an account holding `balance` nano-USD, holds recorded. */
export function admissionFixture(balance: bigint) {
  const { secret } = mintSecret();
  const now = Date.parse("2026-12-01T12:00:00Z");
  const resolved: ResolvedKey = {
    key: {
      id: "key_1",
      accountId: "acct_1",
      name: "k",
      displayPrefix: "tg_x",
      secretHash: hashSecret(secret),
      previousSecretHash: null,
      previousSecretExpiresAt: null,
      expiresAt: null,
      revokedAt: null,
      labels: {},
      allowedModels: null,
      requestsPerMinute: null,
      tokensPerMinute: null,
      createdAt: now,
      updatedAt: now,
    },
    account: { id: "acct_1", name: "a", planId: "pro", suspended: false, updatedAt: now },
  };
  const snapshot = compileSnapshot({
    models: [MODEL],
    plans: [
      { id: "pro", displayName: "Pro", requestsPerMinute: 1_000_000, tokensPerMinute: 1_000_000_000, tiers: ["basic"] },
    ],
    providers: [{ id: "openai", basePath: "/v1" }],
  });
  const holds: HoldRequest[] = [];
  const quota: Quota = {
    hold(request) {
      holds.push(request);
      return request.amount <= balance ? { held: true } : { held: false, available: nanos(balance) as Nanos };
    },
  };
  let decision = 0;
  const deps: AdmissionDeps = {
    snapshot: () => snapshot,
    keys: { resolve: (hash) => (hash === resolved.key.secretHash ? resolved : null) },
    routable: () => true,
    quota,
    now: () => now,
    newDecisionId: () => `dec_${++decision}`,
  };
  return { secret, deps, holds };
}

/** A CheckRequest as Envoy sends it (raw_body bytes, or the `body` string), encoded once so measuring it costs nothing. */
export function encodedCheck(
  secret: string,
  body: string | Uint8Array,
  path = "/v1/chat/completions",
  method = "POST",
  asBytes = true,
): Uint8Array {
  return toBinary(
    CheckRequestSchema,
    envoyCheckRequest({
      method,
      path,
      headers: { authorization: `Bearer ${secret}` },
      body: typeof body === "string" && asBytes ? new TextEncoder().encode(body) : body,
      asBytes,
    }),
  );
}

/**
 * Lifts a CheckRequest from its wire bytes and decides it, returning the verdict and the CPU milliseconds the
 * process spent meanwhile: every thread's, so garbage-collector work on helper threads counts too.
 */
export async function timedCheck(bytes: Uint8Array, deps: AdmissionDeps): Promise<{ verdict: Verdict; cpuMs: number }> {
  const started = process.cpuUsage();
  const verdict = await admit(liftCheckRequest(bytes).admission, deps);
  const spent = process.cpuUsage(started);
  return { verdict, cpuMs: (spent.user + spent.system) / 1000 };
}

/** A chat body's text before and after its one message's content. */
export const CHAT_OPEN = '{"model":"gpt-5.5","messages":[{"role":"user","content":"';
export const CHAT_CLOSE = '"}]}';

/**
 * Compiles the Check path as a serving process has before the first attacker arrives: the warm-up authz and each
 * chat-reader thread run at start (warmUpTokenEstimate), small chat bodies, then bodies of 10 kB, 100 kB and 1 MB.
 * A body's first sight still pays for everything about that body.
 */
export async function warmUpAdmission(secret: string, deps: AdmissionDeps): Promise<void> {
  warmUpTokenEstimate();
  for (let i = 0; i < 20; i++) await timedCheck(encodedCheck(secret, `${CHAT_OPEN}warm up ${i}${CHAT_CLOSE}`), deps);
  for (const size of [10_000, 100_000, 1_000_000])
    await timedCheck(encodedCheck(secret, bodyOfSize(size, CHAT_OPEN, "warm up ", CHAT_CLOSE)), deps);
}

let collector: (() => void) | undefined;

/** A full garbage collection, now (V8's `gc`, exposed to this isolate only for as long as it takes to get it). */
export function collectGarbage(): void {
  if (collector === undefined) {
    setFlagsFromString("--expose-gc");
    collector = runInNewContext("gc") as () => void;
    setFlagsFromString("--no-expose-gc");
  }
  collector();
}

/**
 * timedCheck on a clean heap: what earlier bodies left behind is collected first and its sweeping (on helper threads)
 * given time to end, so a decision pays for its own allocations, not for the bodies decided before it. (A second
 * collection finishes the first one's sweeping before it starts, on this thread.)
 */
export async function cleanTimedCheck(
  bytes: Uint8Array,
  deps: AdmissionDeps,
): Promise<{ verdict: Verdict; cpuMs: number }> {
  collectGarbage();
  collectGarbage();
  await new Promise((resolve) => setTimeout(resolve, 10));
  return timedCheck(bytes, deps);
}

/** A chat body of exactly `bytes` UTF-8 bytes: `prefix`, then `unit` repeated, then `suffix` (ASCII padding to fit). */
export function bodyOfSize(bytes: number, prefix: string, unit: string, suffix: string): string {
  const fixed = Buffer.byteLength(prefix) + Buffer.byteLength(suffix);
  const unitBytes = Buffer.byteLength(unit);
  const count = Math.floor((bytes - fixed) / unitBytes);
  const pad = bytes - fixed - count * unitBytes;
  return prefix + unit.repeat(count) + suffix + " ".repeat(pad);
}

/** CheckRequests as authz-attack-loop.ts reads them: each a 4-byte big-endian length, then its bytes. */
export function framedRequests(requests: readonly CheckRequest[]): Buffer {
  return Buffer.concat(
    requests.flatMap((request) => {
      const bytes = toBinary(CheckRequestSchema, request);
      const length = Buffer.alloc(4);
      length.writeUInt32BE(bytes.length);
      return [length, Buffer.from(bytes)];
    }),
  );
}
