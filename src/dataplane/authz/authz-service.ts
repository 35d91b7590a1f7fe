import type * as grpc from "@grpc/grpc-js";
import { Authorization, type CheckResponse } from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import { admit, releaseAdmission, type AdmissionDeps } from "../../domain/admission.js";
import { deny, type Admission, type Verdict } from "../../domain/verdict.js";
import type { Logger } from "../../logging.js";
import { liftCheckRequest, type LiftedRequest } from "./check-request.js";
import { encodeAllow, toCheckResponse, type ProviderRoute, type ResponseContext } from "./check-response.js";
import type { DecisionSigner } from "../signing/decision-signature.js";

/** What the Authorization service needs: admission's ports plus how to reach each provider. */
export interface AuthzOptions {
  admission: AdmissionDeps;
  /** Provider id → base path and credential, from the catalogue and config. */
  providers(): ReadonlyMap<string, ProviderRoute>;
  logger: Logger;
  /** Signs each allow's billing metadata with the secret the meter verifies. */
  signer: DecisionSigner;
  /** Observes each decision (metrics); must not throw. */
  onDecision?(outcome: string, seconds: number): void;
}

/** Seconds a client should wait after a 503 before retrying. */
const UNAVAILABLE_RETRY_AFTER = 1;

/** What one Check decided, before it is put on the wire. */
type Decided =
  | { kind: "allow"; verdict: Admission; context: ResponseContext }
  | { kind: "other"; verdict: Exclude<Verdict, Admission> };

async function decide(lifted: LiftedRequest, options: AuthzOptions): Promise<Decided> {
  const started = process.hrtime.bigint();
  let outcome = "error";
  try {
    const verdict = await admit(lifted.admission, options.admission);
    if (verdict.kind === "allow") {
      const provider = options.providers().get(verdict.model.provider);
      // admission checked routability; a provider vanishing in between is an operator change mid-flight.
      if (!provider) throw new Error(`provider ${verdict.model.provider} is not routable`);
      outcome = "allow";
      if (options.logger.isLevelEnabled("debug")) {
        options.logger.debug(
          { decisionId: verdict.decisionId, keyId: verdict.keyId, model: verdict.model.id },
          "check allowed",
        );
      }
      return {
        kind: "allow",
        verdict,
        context: { tollgateHeaders: lifted.tollgateHeaders, query: lifted.query, provider, signer: options.signer },
      };
    }
    outcome = verdict.kind === "answer" ? "answer" : verdict.code;
    if (options.logger.isLevelEnabled("debug")) {
      options.logger.debug({ verdict: outcome, path: lifted.admission.path }, "check denied");
    }
    return { kind: "other", verdict };
  } catch (error) {
    outcome = "unavailable";
    options.logger.error({ err: error }, "check failed; answering 503");
    return {
      kind: "other",
      verdict: deny("unavailable", "The gateway cannot decide right now; retry shortly.", {
        retryAfterSeconds: UNAVAILABLE_RETRY_AFTER,
      }),
    };
  } finally {
    options.onDecision?.(outcome, Number(process.hrtime.bigint() - started) / 1e9);
  }
}

/**
 * Decides one CheckRequest (as lifted from its wire bytes), already encoded for the wire when allowed (the
 * cached-encoding fast path, `encodeAllow`). Never throws and never rejects: every outcome, including an internal
 * fault, is a CheckResponse, because a gRPC error is a failure and Envoy's failure path must never be what decides.
 */
export async function checkEncoded(request: LiftedRequest, options: AuthzOptions): Promise<Uint8Array | CheckResponse> {
  return encodeDecided(await decide(request, options));
}

/** A decision on the wire: an allow through the cached-encoding fast path, anything else as a message. */
function encodeDecided(decided: Decided): Uint8Array | CheckResponse {
  return decided.kind === "allow"
    ? encodeAllow(decided.verdict, decided.context)
    : toCheckResponse(decided.verdict, undefined);
}

/**
 * envoy.service.auth.v3.Authorization for `startGrpcServer`: Check requests are lifted straight from their wire bytes
 * (`liftCheckRequest`), never decoded whole. Bytes that are not a CheckRequest fail the call (INTERNAL), and Envoy
 * fails closed.
 */
export function authorizationService(options: AuthzOptions) {
  const abandoned = throttledWarn(options.logger);
  const implementation: grpc.UntypedServiceImplementation = {
    check(call: grpc.ServerUnaryCall<LiftedRequest, CheckResponse>, callback: grpc.sendUnaryData<CheckResponse>) {
      decide(call.request, options).then((decided) => {
        if (decided.kind === "allow" && gaveUp(call)) {
          // Envoy's ext_authz timeout (sent as grpc-timeout) passed first: it answered 503 and forwards nothing, so no
          // access-log entry will settle these holds; released now, they are not charged at expiry.
          releaseAdmission(decided.verdict, options.admission);
          abandoned();
          if (!call.cancelled) callback({ code: GRPC_DEADLINE_EXCEEDED, details: "deadline passed before admission" });
          return;
        }
        callback(null, encodeDecided(decided) as CheckResponse);
      });
    },
  };
  return { service: Authorization, implementation, decoders: { check: liftCheckRequest } };
}

/** grpc-js status DEADLINE_EXCEEDED (the call has no listener left for a verdict). */
const GRPC_DEADLINE_EXCEEDED = 4;

/** Whether the caller can no longer receive the answer: the call was cancelled, or its deadline has passed. */
function gaveUp(call: grpc.ServerUnaryCall<LiftedRequest, CheckResponse>): boolean {
  if (call.cancelled) return true;
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(at) && Date.now() >= at;
}

/** Logs admissions released because Envoy gave up first, at most once per 10 s with how many there were. */
function throttledWarn(logger: Logger): () => void {
  let last = -Infinity;
  let count = 0;
  return () => {
    count++;
    const now = Date.now();
    if (now - last < 10_000) return;
    last = now;
    logger.warn(
      { released: count },
      "Checks decided after Envoy's ext_authz timeout: their holds were released (raise the timeout, or add authz capacity)",
    );
    count = 0;
  };
}
