import { hashSecret, secretShape } from "./api-key.js";
import { modelRefusal, modelsForKey, type CatalogueModel, type CatalogueSnapshot, type Plan } from "./catalogue.js";
import { parseChatRequest, type RequestBody } from "./chat-request.js";
import { keyState, type ResolvedKey } from "./keys.js";
import { addNanos, tokenCost, type Nanos } from "./money.js";
import { estimateChatPromptTokens } from "./token-estimate.js";
import { deny, type Admission, type Deny, type RateLimitState, type Verdict } from "./verdict.js";

/** What Check hands to admission, already lifted out of the transport. */
export interface AdmissionRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  /** Every Authorization value the client sent (normally one). */
  authorization: readonly string[];
  body: RequestBody;
}

/** Finds a key by the hash of its secret: synchronous when cached, so the warm path never awaits storage. */
export interface KeyDirectory {
  resolve(secretHash: string): ResolvedKey | null | Promise<ResolvedKey | null>;
}

/** A per-key quota decision for one request. `state` is absent only when limits were skipped (Redis down, fail-open). */
export type RateDecision =
  | { admitted: true; state?: RateLimitState }
  | { admitted: false; state: RateLimitState; retryAfterSeconds: number; dimension: "requests" | "tokens" };

/** One request's place in its key's window. */
export interface RateRequest {
  keyId: string;
  accountId: string;
  decisionId: string;
  requestsPerMinute: number;
  tokensPerMinute: number;
  /** Tokens to reserve in the window: prompt estimate plus maximum output. */
  tokens: number;
  now: number;
}

/**
 * Per-key requests- and tokens-per-minute limits, exact over any sliding 60-second window (in-process or Redis).
 * A limiter that cannot decide (Redis unreachable) throws; admission turns that into a 503 `unavailable`.
 */
export interface RateLimiter {
  admit(request: RateRequest): RateDecision | Promise<RateDecision>;
  /**
   * Replaces an admission's token reservation with the tokens actually used (the meter calls it once usage is known),
   * refunding the difference to the window. A no-op once the admission has aged out of the window or was released.
   */
  settle(request: { keyId: string; accountId: string; decisionId: string; actualTokens: number; now: number }): void | Promise<void>;
  /** Gives back a reservation that will never be used (a later step refused the request): its request and tokens. */
  release(request: { keyId: string; accountId: string; decisionId: string; tokens: number; now: number }): void | Promise<void>;
}

/** Credit reservations against an account's prepaid balance. */
export interface CreditGate {
  reserve(request: {
    accountId: string;
    decisionId: string;
    amount: Nanos;
    now: number;
  }): { reserved: true } | { reserved: false; available: Nanos } | Promise<{ reserved: true } | { reserved: false; available: Nanos }>;
}

/** What admitting one request holds: a place in its key's window and a worst-case credit reservation. */
export interface HoldRequest extends RateRequest {
  /** Credit to reserve: the request's worst-case cost. */
  amount: Nanos;
}

/** Held (with the window's figures when limits applied), or refused by the limiter, or refused for credit. */
export type HoldOutcome =
  | { held: true; rateLimit?: RateLimitState }
  | { held: false; rate: Extract<RateDecision, { admitted: false }> }
  | { held: false; available: Nanos };

/**
 * A request's rate-limit admission and credit reservation, held together: both or neither, the limiter deciding
 * first. Redis decides both in one script (one round trip per Check); `holdInTurn` composes the separate ports.
 * Throws when it cannot decide; admission answers 503 `unavailable`.
 */
export interface Quota {
  hold(request: HoldRequest): HoldOutcome | Promise<HoldOutcome>;
}

/** A Quota over separate ports: the limiter admits, then the gate reserves, and a credit refusal gives the admission back. */
export function holdInTurn(limiter: RateLimiter, credits: CreditGate): Quota {
  return {
    async hold(request) {
      const { keyId, accountId, decisionId, tokens, now } = request;
      const admitted = limiter.admit(request);
      const decision = admitted instanceof Promise ? await admitted : admitted;
      if (!decision.admitted) return { held: false, rate: decision };
      let credit;
      try {
        const reserved = credits.reserve(request);
        credit = reserved instanceof Promise ? await reserved : reserved;
      } catch (error) {
        await limiter.release({ keyId, accountId, decisionId, tokens, now });
        throw error;
      }
      if (!credit.reserved) {
        await limiter.release({ keyId, accountId, decisionId, tokens, now });
        return { held: false, available: credit.available };
      }
      return { held: true, rateLimit: decision.state };
    },
  };
}

/** Everything admission reads; all of it in memory on the warm path. */
export interface AdmissionDeps {
  snapshot(): CatalogueSnapshot;
  keys: KeyDirectory;
  /** Whether requests for a provider can be forwarded (it is configured and has a credential). */
  routable(provider: string): boolean;
  /** Rate limits and credit reservations; absent, requests are admitted without either (benchmarks of the rest). */
  quota?: Quota;
  now(): number;
  newDecisionId(): string;
}

const BEARER = /^bearer +([^ ]+) *$/i;

/** Decides one request. Pure apart from the ports in `deps`; never throws for anything a client can send. */
export async function admit(request: AdmissionRequest, deps: AdmissionDeps): Promise<Verdict> {
  const auth = authenticate(request.authorization, deps);
  const resolved = auth instanceof Promise ? await auth : auth;
  if ("kind" in resolved) return resolved;
  const { key, account } = resolved;
  const snapshot = deps.snapshot();
  const plan = snapshot.plans.get(account.planId);
  if (!plan) return deny("unavailable", "The account's plan is not configured; contact the operator.");

  const method = request.method.toUpperCase();
  const route = `${method} ${request.path}`;
  if (route === "GET /v1/models") {
    return { kind: "answer", body: { object: "list", data: modelsForKey(snapshot, plan, key.allowedModels).map(modelObject) } };
  }
  if (method === "GET" && request.path.startsWith("/v1/models/")) {
    const id = decodeURIComponent(request.path.slice("/v1/models/".length));
    const model = snapshot.models.get(id);
    if (!model || model.retired) return deny("model_not_found", `The model '${id}' does not exist.`, { param: "model" });
    if (modelRefusal(model, plan, key.allowedModels)) return notPermitted(model);
    return { kind: "answer", body: modelObject(model) };
  }
  if (route !== "POST /v1/chat/completions") {
    return deny("unsupported_endpoint", `${route} is not supported; use POST /v1/chat/completions or GET /v1/models.`);
  }

  const chat = parseChatRequest(request.body);
  if ("kind" in chat) return chat;
  const model = snapshot.models.get(chat.model);
  if (!model || model.retired) {
    return deny("model_not_found", `The model '${chat.model}' does not exist.`, { param: "model" });
  }
  if (modelRefusal(model, plan, key.allowedModels)) return notPermitted(model);
  if (chat.maxOutputTokens !== undefined && chat.maxOutputTokens > model.maxOutputTokens) {
    return deny("invalid_request", `max_tokens is too large: ${chat.maxOutputTokens}; '${model.id}' supports at most ${model.maxOutputTokens} output tokens.`, { param: "max_tokens" });
  }
  if (!deps.routable(model.provider)) {
    return deny("unavailable", `The provider serving '${model.id}' is not configured on this gateway.`, { retryAfterSeconds: 30 });
  }
  return reserve(key, account.id, model, plan, chat, deps);
}

function authenticate(values: readonly string[], deps: AdmissionDeps): ResolvedKey | Deny | Promise<ResolvedKey | Deny> {
  if (values.length === 0 || (values.length === 1 && values[0]!.trim() === "")) {
    return deny("missing_api_key", "You didn't provide an API key. Send it as 'Authorization: Bearer tg_…'.");
  }
  if (values.length > 1) {
    return deny("missing_api_key", "Send exactly one Authorization header; several were received.");
  }
  const header = values[0]!;
  // A secret is 43 characters; anything far longer is refused before any regex or hash work.
  const match = header.length <= 256 ? BEARER.exec(header) : null;
  if (!match) {
    return deny("missing_api_key", "Malformed Authorization header; expected 'Authorization: Bearer tg_…'.");
  }
  const token = match[1]!;
  const shape = secretShape(token);
  if (shape !== "well_formed") {
    return deny("invalid_api_key", shape === "malformed_key"
      ? "Incorrect API key provided: it has the tg_ prefix but not the length or characters of a Tollgate key."
      : "Incorrect API key provided: it is not a Tollgate key.");
  }
  const hash = hashSecret(token);
  const found = deps.keys.resolve(hash);
  return found instanceof Promise ? found.then((r) => checkKey(r, hash, deps)) : checkKey(found, hash, deps);
}

function checkKey(resolved: ResolvedKey | null, hash: string, deps: AdmissionDeps): ResolvedKey | Deny {
  if (!resolved) return deny("invalid_api_key", "Incorrect API key provided.");
  switch (keyState(resolved, hash, deps.now())) {
    case "valid":
      return resolved.account.suspended
        ? deny("invalid_api_key", "The account for this API key is suspended.")
        : resolved;
    case "revoked":
      return deny("revoked_api_key", "This API key has been revoked.");
    case "expired":
      return deny("expired_api_key", "This API key has expired.");
    case "rotated_out":
      return deny("invalid_api_key", "Incorrect API key provided: this secret was replaced by a rotation.");
  }
}

async function reserve(
  key: ResolvedKey["key"],
  accountId: string,
  model: CatalogueModel,
  plan: Plan,
  chat: { stream: boolean; maxOutputTokens: number | undefined; body: Record<string, unknown> },
  deps: AdmissionDeps,
): Promise<Verdict> {
  const keyId = key.id;
  const promptTokensEstimate = estimateChatPromptTokens(chat.body);
  const maxOutputTokens = chat.maxOutputTokens ?? model.maxOutputTokens;
  const reservedTokens = promptTokensEstimate + maxOutputTokens;
  const reservedNanos = addNanos(tokenCost(promptTokensEstimate, model.prices.input), tokenCost(maxOutputTokens, model.prices.output));
  const decisionId = deps.newDecisionId();
  const now = deps.now();

  let rateLimit: RateLimitState | undefined;
  if (deps.quota) {
    const requestsPerMinute = key.requestsPerMinute ?? plan.requestsPerMinute;
    const tokensPerMinute = key.tokensPerMinute ?? plan.tokensPerMinute;
    if (reservedTokens > tokensPerMinute) {
      // Waiting can never help, so no Retry-After (clients would retry in vain); 429 as OpenAI answers "Request too large".
      return deny("rate_limit_exceeded", `Request too large for this key's tokens per minute: limit ${tokensPerMinute}, requested ${reservedTokens} (prompt estimate + max output). It can never fit; lower max_tokens or shorten the prompt.`, { param: "max_tokens" });
    }
    let outcome: HoldOutcome;
    try {
      const held = deps.quota.hold({ keyId, accountId, decisionId, requestsPerMinute, tokensPerMinute, tokens: reservedTokens, amount: reservedNanos, now });
      outcome = held instanceof Promise ? await held : held;
    } catch {
      // Infrastructure fault (the quota's failure policy logs it); fail closed: without limits and credit the gateway cannot decide.
      return deny("unavailable", "Rate limits and credit cannot be checked right now; retry shortly.", { retryAfterSeconds: 1 });
    }
    if ("rate" in outcome) {
      const decision = outcome.rate;
      return deny("rate_limit_exceeded", decision.dimension === "requests"
        ? `Rate limit reached for requests per minute on this key; retry in ${decision.retryAfterSeconds}s.`
        : `Rate limit reached for tokens per minute on this key (this request needs ${reservedTokens}); retry in ${decision.retryAfterSeconds}s.`,
        { retryAfterSeconds: decision.retryAfterSeconds, rateLimit: decision.state });
    }
    if (!outcome.held) {
      return deny("insufficient_credits", "Your credit balance cannot cover this request's maximum cost; add credits or lower max_tokens.");
    }
    rateLimit = outcome.rateLimit;
  }
  const admission: Admission = {
    kind: "allow",
    decisionId,
    accountId,
    keyId,
    model,
    stream: chat.stream,
    promptTokensEstimate,
    maxOutputTokens,
    reservedTokens,
    reservedNanos,
    rateLimit,
  };
  return admission;
}

function notPermitted(model: CatalogueModel): Deny {
  return deny("model_not_permitted", `This API key is not permitted to use the model '${model.id}'.`, { param: "model" });
}

function modelObject(model: CatalogueModel) {
  return { id: model.id, object: "model", created: 0, owned_by: model.provider };
}
