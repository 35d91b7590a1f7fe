import { create, fromJson, toBinary, type JsonObject } from "@bufbuild/protobuf";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import {
  HeaderValueOption_HeaderAppendAction,
  HeaderValueOptionSchema,
  type HeaderValueOption,
} from "../../gen/envoy/config/core/v3/base_pb.js";
import {
  CheckResponseSchema,
  OkHttpResponseSchema,
  type CheckResponse,
} from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import type { Admission, DenyCode, RateLimitState, Verdict } from "../../domain/verdict.js";
import type { CatalogueModel } from "../../domain/catalogue.js";
import { AllowWireWriter } from "./allow-wire.js";
import { LEN, tagOf, varintSize, writeVarint } from "../wire/index.js";
import type { DecisionSigner } from "../signing/decision-signature.js";
import {
  AUTHZ_METADATA_KEYS as K,
  type AuthzMetadataKey,
  STREAM_HEADER_ON,
  TOLLGATE_HEADER_PREFIX,
  TOLLGATE_HEADERS as HEADER,
} from "../../contract/index.js";

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
  budget_exceeded: { http: 402, type: "insufficient_quota" },
  rate_limit_exceeded: { http: 429, type: "rate_limit_error" },
  concurrency_limit_exceeded: { http: 429, type: "rate_limit_error" },
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
  /** Lower-cased names of the client's x-tollgate-* headers. */
  tollgateHeaders: readonly string[];
  query: string;
  provider: ProviderRoute;
  /** Signs the billing fields of the metadata, so the meter bills only what authz admitted. */
  signer: DecisionSigner;
}

/**
 * A header mutation that replaces any existing value: `append_action: OVERWRITE_IF_EXISTS_OR_ADD`, and the deprecated
 * `append` left out. Envoy up to 1.36 reads an absent `append` as false (replace) for request headers and applies
 * `append_action` to response headers; from 1.37 `append_action` decides whenever `append` is absent.
 */
function set(key: string, value: string): HeaderValueOption {
  return create(HeaderValueOptionSchema, {
    header: { key, value },
    appendAction: HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
  });
}

/**
 * OpenAI's x-ratelimit-* headers for a rate-limit state, handed pair by pair to `put` (the message path collects
 * them, the wire path writes them straight into its buffer).
 */
function rateLimitEntries(state: RateLimitState, put: (key: string, value: string) => void): void {
  put("x-ratelimit-limit-requests", String(state.requests.limit));
  put("x-ratelimit-remaining-requests", String(state.requests.remaining));
  put("x-ratelimit-reset-requests", `${state.requests.resetSeconds}s`);
  put("x-ratelimit-limit-tokens", String(state.tokens.limit));
  put("x-ratelimit-remaining-tokens", String(state.tokens.remaining));
  put("x-ratelimit-reset-tokens", `${state.tokens.resetSeconds}s`);
  if (state.requestsDay) {
    put("x-ratelimit-limit-requests-day", String(state.requestsDay.limit));
    put("x-ratelimit-remaining-requests-day", String(state.requestsDay.remaining));
    put("x-ratelimit-reset-requests-day", `${state.requestsDay.resetSeconds}s`);
  }
  if (state.tokensDay) {
    put("x-ratelimit-limit-tokens-day", String(state.tokensDay.limit));
    put("x-ratelimit-remaining-tokens-day", String(state.tokensDay.remaining));
    put("x-ratelimit-reset-tokens-day", `${state.tokensDay.resetSeconds}s`);
  }
}

function rateLimitHeaders(state: RateLimitState | undefined): HeaderValueOption[] {
  const headers: HeaderValueOption[] = [];
  if (state) rateLimitEntries(state, (key, value) => headers.push(set(key, value)));
  return headers;
}

/** The part of an admission's metadata fixed by the model and the prices in force (cacheable per snapshot). */
function modelMetadata(model: CatalogueModel): JsonObject {
  return {
    [K.model]: model.id,
    [K.upstreamModel]: model.upstreamModel,
    [K.provider]: model.provider,
    // Prices and money as decimal strings: Struct numbers are doubles and money never passes through a float.
    [K.priceInput]: model.prices.input.toString(),
    [K.priceCachedInput]: model.prices.cachedInput.toString(),
    [K.priceOutput]: model.prices.output.toString(),
  };
}

/** A Struct value the per-request metadata carries. */
type MetadataValue = string | number | boolean;

/**
 * The part of an admission's metadata that is new for every request, handed field by field to `put`: the message
 * path collects them into a JsonObject, the wire path writes them straight into its buffer without an object.
 */
function requestMetadata(
  a: Admission,
  signer: DecisionSigner,
  put: (key: AuthzMetadataKey, value: MetadataValue) => void,
): void {
  put(K.decisionId, a.decisionId);
  put(K.accountId, a.accountId);
  put(K.keyId, a.keyId);
  put(K.reservedTokens, a.reservedTokens);
  put(K.reservedNanos, a.reservedNanos.toString());
  put(K.promptTokensEstimate, a.promptTokensEstimate);
  put(K.maxOutputTokens, a.maxOutputTokens);
  put(K.stream, a.stream);
  put(K.signature, signer.sign(a));
}

/** The dynamic metadata of an admission: the join key and everything the meter needs, so nothing is looked up twice. */
function admissionMetadata(a: Admission, signer: DecisionSigner): JsonObject {
  const metadata: JsonObject = {};
  requestMetadata(a, signer, (key, value) => (metadata[key] = value));
  return { ...metadata, ...modelMetadata(a.model) };
}

/** Maps a verdict to the CheckResponse Envoy applies. */
export function toCheckResponse(verdict: Verdict, context: ResponseContext | undefined): CheckResponse {
  if (verdict.kind === "allow") return allowResponse(verdict, context!);
  if (verdict.kind === "answer") {
    return create(CheckResponseSchema, {
      status: { code: GRPC_PERMISSION_DENIED, message: "answered by tollgate" },
      httpResponse: {
        case: "deniedResponse",
        value: {
          status: { code: 200 },
          headers: [set("content-type", "application/json")],
          body: JSON.stringify(verdict.body),
        },
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
    dynamicMetadata: { [K.verdict]: verdict.code },
  });
}

/** The request-header mutations of an allow: where the data plane sends the request and with which credential. */
function allowHeaders(a: Admission, context: ResponseContext): HeaderValueOption[] {
  const headers = [
    set(":path", `${context.provider.basePath}/chat/completions${context.query ? "?" + context.query : ""}`),
    set("authorization", context.provider.authorization),
    set(HEADER.provider, a.model.provider),
    set(HEADER.upstreamModel, a.model.upstreamModel),
  ];
  if (a.stream) headers.push(set(HEADER.stream, STREAM_HEADER_ON));
  return headers;
}

/**
 * Client-sent x-tollgate-* headers: never trusted, never forwarded. Those authz sets itself are overwritten instead;
 * x-tollgate-stream is set only for streams, so a client's copy on any other request is removed.
 */
function clientTollgateHeaders(tollgateHeaders: readonly string[], stream: boolean): string[] {
  return tollgateHeaders.filter(
    (name) =>
      name.startsWith(TOLLGATE_HEADER_PREFIX) &&
      name !== HEADER.provider &&
      name !== HEADER.upstreamModel &&
      (name !== HEADER.stream || !stream),
  );
}

function allowResponse(a: Admission, context: ResponseContext): CheckResponse {
  return create(CheckResponseSchema, {
    status: { code: GRPC_OK },
    httpResponse: {
      case: "okResponse",
      value: {
        headers: allowHeaders(a, context),
        headersToRemove: clientTollgateHeaders(context.tollgateHeaders, a.stream),
        responseHeadersToAdd: [set(HEADER.decisionId, a.decisionId), ...rateLimitHeaders(a.rateLimit)],
      },
    },
    dynamicMetadata: admissionMetadata(a, context.signer),
  });
}

/**
 * Encoded request-header mutations per route: model, provider route and stream. A catalogue reload makes new model
 * and route objects, so a changed credential or path is never served stale and the old entries are collected.
 */
const encodedHeaders = new WeakMap<CatalogueModel, WeakMap<ProviderRoute, Array<Uint8Array | undefined>>>();
/** Encoded model metadata, per model object: a catalogue reload makes new objects, so new prices are never stale. */
const encodedModelMetadata = new WeakMap<CatalogueModel, Uint8Array>();
const STATUS_OK = toBinary(CheckResponseSchema, create(CheckResponseSchema, { status: { code: GRPC_OK } }));
const OK_RESPONSE_FIELD = CheckResponseSchema.field.okResponse!.number;
const DYNAMIC_METADATA_FIELD = CheckResponseSchema.field.dynamicMetadata!.number;
const HEADERS_TO_REMOVE_FIELD = OkHttpResponseSchema.field.headersToRemove!.number;
const RESPONSE_HEADERS_FIELD = OkHttpResponseSchema.field.responseHeadersToAdd!.number;
/** Reused per-request buffers: Check runs on one thread and copies out before the next call. */
const metaWriter = new AllowWireWriter();
const okWriter = new AllowWireWriter();
const putMeta = (key: string, value: MetadataValue): void => void metaWriter.structEntry(key, value);
const putRateLimit = (key: string, value: string): void =>
  void okWriter.headerOption(RESPONSE_HEADERS_FIELD, key, value);

function routeHeaders(a: Admission, context: ResponseContext): Uint8Array {
  const encode = () =>
    toBinary(OkHttpResponseSchema, create(OkHttpResponseSchema, { headers: allowHeaders(a, context) }));
  // A query string is rare and part of the rewritten :path, so such requests are encoded each time.
  if (context.query !== "") return encode();
  let byRoute = encodedHeaders.get(a.model);
  if (!byRoute) encodedHeaders.set(a.model, (byRoute = new WeakMap()));
  let byStream = byRoute.get(context.provider);
  if (!byStream) byRoute.set(context.provider, (byStream = []));
  return (byStream[a.stream ? 1 : 0] ??= encode());
}

function structBytes(json: JsonObject): Uint8Array {
  return toBinary(StructSchema, fromJson(StructSchema, json));
}

/**
 * Wire bytes of an allow CheckResponse, identical in meaning to `toBinary(toCheckResponse(a, context))` but cheaper,
 * because most of it depends only on the route: the header mutations (model, stream, provider credential) and the
 * model's metadata entries are encoded once and cached; per request only the decision's own fields are encoded.
 * The cached parts are encoded by protobuf-es; the per-request parts (response header options, the decision's Struct
 * entries) by `AllowWireWriter`, and the two embedded fields whose contents are concatenations (repeated headers;
 * Struct map entries) get their tag and length here: the wire format defines that as encoding the combined list.
 */
export function encodeAllow(a: Admission, context: ResponseContext): Uint8Array {
  const headers = routeHeaders(a, context);
  let modelMeta = encodedModelMetadata.get(a.model);
  if (!modelMeta) encodedModelMetadata.set(a.model, (modelMeta = structBytes(modelMetadata(a.model))));
  metaWriter.reset();
  requestMetadata(a, context.signer, putMeta);
  const requestMeta = metaWriter.bytes();
  const ok = okWriter.reset();
  for (const name of clientTollgateHeaders(context.tollgateHeaders, a.stream)) ok.string(HEADERS_TO_REMOVE_FIELD, name);
  ok.headerOption(RESPONSE_HEADERS_FIELD, HEADER.decisionId, a.decisionId);
  if (a.rateLimit) rateLimitEntries(a.rateLimit, putRateLimit);
  const perRequest = ok.bytes();
  const metaLength = modelMeta.length + requestMeta.length;
  const okLength = headers.length + perRequest.length;
  const out = new Uint8Array(
    STATUS_OK.length + 1 + varintSize(metaLength) + metaLength + 1 + varintSize(okLength) + okLength,
  );
  out.set(STATUS_OK, 0);
  let at = STATUS_OK.length;
  at = writeVarint(out, at, tagOf(DYNAMIC_METADATA_FIELD, LEN));
  at = writeVarint(out, at, metaLength);
  out.set(modelMeta, at);
  out.set(requestMeta, (at += modelMeta.length));
  at += requestMeta.length;
  at = writeVarint(out, at, tagOf(OK_RESPONSE_FIELD, LEN));
  at = writeVarint(out, at, okLength);
  out.set(headers, at);
  out.set(perRequest, at + headers.length);
  return out;
}
