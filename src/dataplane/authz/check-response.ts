import { create, type JsonObject } from "@bufbuild/protobuf";
import { HeaderValueOptionSchema, type HeaderValueOption } from "../../gen/envoy/config/core/v3/base_pb.js";
import { CheckResponseSchema, type CheckResponse } from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import type { Admission, DenyCode, RateLimitState, Verdict } from "../../domain/verdict.js";

/** Headers authz sets on an allowed request; the data plane routes and rewrites by them. */
export const HEADER = {
  provider: "x-tollgate-provider",
  upstreamModel: "x-tollgate-upstream-model",
  stream: "x-tollgate-stream",
  decisionId: "x-tollgate-decision-id",
} as const;

/** Namespace Envoy files CheckResponse.dynamic_metadata under; the usage filter and the meter read it back. */
export const AUTHZ_METADATA_NAMESPACE = "envoy.filters.http.ext_authz";

/** The one table from verdict code to HTTP status and OpenAI error type. Nothing else knows status codes. */
export const DENY_STATUS: Readonly<Record<DenyCode, { http: number; type: string }>> = {
  missing_api_key: { http: 401, type: "invalid_request_error" },
  invalid_api_key: { http: 401, type: "invalid_request_error" },
  expired_api_key: { http: 401, type: "invalid_request_error" },
  revoked_api_key: { http: 401, type: "invalid_request_error" },
  invalid_request: { http: 400, type: "invalid_request_error" },
  request_too_large: { http: 413, type: "invalid_request_error" },
  unsupported_endpoint: { http: 404, type: "invalid_request_error" },
  model_not_found: { http: 404, type: "invalid_request_error" },
  model_not_permitted: { http: 403, type: "invalid_request_error" },
  insufficient_credits: { http: 402, type: "insufficient_quota" },
  rate_limit_exceeded: { http: 429, type: "rate_limit_error" },
  unavailable: { http: 503, type: "server_error" },
};

const GRPC_OK = 0;
const GRPC_PERMISSION_DENIED = 7;
const GRPC_UNAUTHENTICATED = 16;

/** Per-provider data the response needs: base path and the credential to inject. */
export interface ProviderRoute {
  basePath: string;
  authorization: string;
}

/** Everything from the original request that shapes an allow response. */
export interface ResponseContext {
  headerNames: readonly string[];
  query: string;
  provider: ProviderRoute;
}

/** A header mutation that replaces any existing value: `append: false`, sent explicitly as the contract requires. */
function set(key: string, value: string): HeaderValueOption {
  return create(HeaderValueOptionSchema, { header: { key, value }, append: false });
}

function rateLimitHeaders(state: RateLimitState | undefined): HeaderValueOption[] {
  if (!state) return [];
  return [
    set("x-ratelimit-limit-requests", String(state.requests.limit)),
    set("x-ratelimit-remaining-requests", String(state.requests.remaining)),
    set("x-ratelimit-reset-requests", `${state.requests.resetSeconds}s`),
    set("x-ratelimit-limit-tokens", String(state.tokens.limit)),
    set("x-ratelimit-remaining-tokens", String(state.tokens.remaining)),
    set("x-ratelimit-reset-tokens", `${state.tokens.resetSeconds}s`),
  ];
}

/** The dynamic metadata of an admission: the join key and everything the meter needs, so nothing is looked up twice. */
export function admissionMetadata(a: Admission): JsonObject {
  return {
    decision_id: a.decisionId,
    account_id: a.accountId,
    key_id: a.keyId,
    model: a.model.id,
    upstream_model: a.model.upstreamModel,
    provider: a.model.provider,
    // Prices and money as decimal strings: Struct numbers are doubles and money never passes through a float.
    price_input: a.prices.input.toString(),
    price_cached_input: a.prices.cachedInput.toString(),
    price_output: a.prices.output.toString(),
    reserved_tokens: a.reservedTokens,
    reserved_nanos: a.reservedNanos.toString(),
    prompt_tokens_estimate: a.promptTokensEstimate,
    max_output_tokens: a.maxOutputTokens,
    stream: a.stream,
  };
}

/** Maps a verdict to the CheckResponse Envoy applies. */
export function toCheckResponse(verdict: Verdict, context: ResponseContext | undefined): CheckResponse {
  if (verdict.kind === "allow") return allowResponse(verdict, context!);
  if (verdict.kind === "answer") {
    return create(CheckResponseSchema, {
      status: { code: GRPC_PERMISSION_DENIED, message: "answered by tollgate" },
      httpResponse: {
        case: "deniedResponse",
        value: { status: { code: 200 }, headers: [set("content-type", "application/json")], body: JSON.stringify(verdict.body) },
      },
    });
  }
  const { http, type } = DENY_STATUS[verdict.code];
  const headers = [set("content-type", "application/json"), ...rateLimitHeaders(verdict.rateLimit)];
  if (verdict.retryAfterSeconds !== undefined) headers.push(set("retry-after", String(verdict.retryAfterSeconds)));
  const body = JSON.stringify({
    error: { message: verdict.message, type, param: verdict.param ?? null, code: verdict.code },
  });
  return create(CheckResponseSchema, {
    status: { code: http === 401 ? GRPC_UNAUTHENTICATED : GRPC_PERMISSION_DENIED, message: verdict.code },
    httpResponse: { case: "deniedResponse", value: { status: { code: http }, headers, body } },
    dynamicMetadata: { verdict: verdict.code },
  });
}

function allowResponse(a: Admission, context: ResponseContext): CheckResponse {
  const headers = [
    set(":path", `${context.provider.basePath}/chat/completions${context.query ? "?" + context.query : ""}`),
    set("authorization", context.provider.authorization),
    set(HEADER.provider, a.model.provider),
    set(HEADER.upstreamModel, a.model.upstreamModel),
  ];
  if (a.stream) headers.push(set(HEADER.stream, "1"));
  const ours = new Set(headers.map((h) => h.header!.key));
  const headersToRemove = context.headerNames.filter((name) => name.startsWith("x-tollgate-") && !ours.has(name));
  return create(CheckResponseSchema, {
    status: { code: GRPC_OK },
    httpResponse: {
      case: "okResponse",
      value: {
        headers,
        headersToRemove,
        responseHeadersToAdd: [set(HEADER.decisionId, a.decisionId), ...rateLimitHeaders(a.rateLimit)],
      },
    },
    dynamicMetadata: admissionMetadata(a),
  });
}
