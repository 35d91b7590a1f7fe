import type * as grpc from "@grpc/grpc-js";
import type { CheckRequest, CheckResponse } from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import { admit, type AdmissionDeps } from "../../domain/admission.js";
import { deny, type Admission, type Verdict } from "../../domain/verdict.js";
import type { Logger } from "../../logging.js";
import { liftCheckRequest } from "./check-request.js";
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

async function decide(request: CheckRequest, options: AuthzOptions): Promise<Decided> {
  const started = process.hrtime.bigint();
  let outcome = "error";
  try {
    const lifted = liftCheckRequest(request);
    const verdict = await admit(lifted.admission, options.admission);
    if (verdict.kind === "allow") {
      const provider = options.providers().get(verdict.model.provider);
      // admission checked routability; a provider vanishing in between is an operator change mid-flight.
      if (!provider) throw new Error(`provider ${verdict.model.provider} is not routable`);
      outcome = "allow";
      if (options.logger.isLevelEnabled("debug")) {
        options.logger.debug({ decisionId: verdict.decisionId, keyId: verdict.keyId, model: verdict.model.id }, "check allowed");
      }
      return { kind: "allow", verdict, context: { headerNames: lifted.headerNames, query: lifted.query, provider } };
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
 * Decides one CheckRequest, already encoded for the wire when allowed (the cached-encoding fast path, `encodeAllow`).
 * Never throws and never rejects: every outcome, including an internal fault, is a CheckResponse, because a gRPC
 * error is a failure and Envoy's failure path must never be what decides.
 */
export async function checkEncoded(request: CheckRequest, options: AuthzOptions): Promise<Uint8Array | CheckResponse> {
  const decided = await decide(request, options);
  return decided.kind === "allow" ? encodeAllow(decided.verdict, decided.context) : toCheckResponse(decided.verdict, undefined);
}

/** The grpc-js implementation of envoy.service.auth.v3.Authorization. */
export function authorizationImplementation(options: AuthzOptions): grpc.UntypedServiceImplementation {
  return {
    check(call: grpc.ServerUnaryCall<CheckRequest, CheckResponse>, callback: grpc.sendUnaryData<CheckResponse>) {
      checkEncoded(call.request, options).then((response) => callback(null, response as CheckResponse));
    },
  };
}
