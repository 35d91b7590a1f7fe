import type * as grpc from "@grpc/grpc-js";
import { Authorization, type CheckResponse } from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import { admit, type AdmissionDeps } from "../../domain/admission.js";
import { deny, type Admission, type Verdict } from "../../domain/verdict.js";
import type { Logger } from "../../logging.js";
import { liftCheckRequest, type LiftedRequest } from "./check-request.js";
import { encodeAllow, toCheckResponse, type ProviderRoute, type ResponseContext } from "./check-response.js";

/** What the Authorization service needs: admission's ports plus how to reach each provider. */
export interface AuthzOptions {
  admission: AdmissionDeps;
  /** Provider id → base path and credential, from the catalogue and config. */
  providers(): ReadonlyMap<string, ProviderRoute>;
  logger: Logger;
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
        options.logger.debug({ decisionId: verdict.decisionId, keyId: verdict.keyId, model: verdict.model.id }, "check allowed");
      }
      return { kind: "allow", verdict, context: { tollgateHeaders: lifted.tollgateHeaders, query: lifted.query, provider } };
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
      verdict: deny("unavailable", "The gateway cannot decide right now; retry shortly.", { retryAfterSeconds: UNAVAILABLE_RETRY_AFTER }),
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
  const decided = await decide(request, options);
  return decided.kind === "allow" ? encodeAllow(decided.verdict, decided.context) : toCheckResponse(decided.verdict, undefined);
}

/**
 * envoy.service.auth.v3.Authorization for `startGrpcServer`: Check requests are lifted straight from their wire bytes
 * (`liftCheckRequest`), never decoded whole. Bytes that are not a CheckRequest fail the call (INTERNAL), and Envoy
 * fails closed.
 */
export function authorizationService(options: AuthzOptions) {
  const implementation: grpc.UntypedServiceImplementation = {
    check(call: grpc.ServerUnaryCall<LiftedRequest, CheckResponse>, callback: grpc.sendUnaryData<CheckResponse>) {
      checkEncoded(call.request, options).then((response) => callback(null, response as CheckResponse));
    },
  };
  return { service: Authorization, implementation, decoders: { check: liftCheckRequest } };
}
