import { hashSecret, secretShape } from "./api-key.js";
import {
  modelRefusal,
  modelsForKey,
  type CatalogueModel,
  type CatalogueSnapshot,
  type KeyModelScope,
  type Plan,
} from "./catalogue.js";
import { readChat, type ChatFacts, type RequestBody } from "./chat-request.js";
import { effectiveLimits, keyState, type ResolvedKey } from "./keys.js";
import { budgetExceededMessage, budgetHolds, type BudgetHold } from "./budgets.js";
import { addNanos, tokenCost, type Nanos } from "./money.js";
import { expectedOutputTokens } from "./rate-limit.js";
import { budgetJson, keyStatusBody, type KeyStatusSource } from "./key-status.js";
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
  | {
      admitted: false;
      state: RateLimitState;
      retryAfterSeconds: number;
      /** Which limit refused: per minute, per UTC day, or requests in flight. */
      dimension: RateDimension;
      /** Tokens held by requests in flight when they, not settled usage, are what is in the way. */
      inFlightTokens?: number;
    };

/** The limits a limiter enforces per key. */
export type RateDimension = "requests" | "tokens" | "requests_day" | "tokens_day" | "concurrency";

/** One request's place in its key's window. */
export interface RateRequest {
  keyId: string;
  accountId: string;
  decisionId: string;
  requestsPerMinute: number;
  tokensPerMinute: number;
  /**
   * Tokens the window counts for this request until the meter settles it: prompt estimate plus the client's
   * `max_tokens` (× n), or the expected output when it sets none (see `expectedOutputTokens`).
   */
  tokens: number;
  now: number;
  /** Daily quotas (UTC days) counted like the minute's: requests, and tokens settled to use. 0 or absent: none. */
  requestsPerDay?: number;
  tokensPerDay?: number;
  /** Requests in flight at once; each ends when the meter settles it, or after the limiter's in-flight TTL. */
  maxConcurrency?: number;
}

/**
 * Per-key requests- and tokens-per-minute limits, exact over any sliding 60-second window (in-process or Redis).
 * A limiter that cannot decide (Redis unreachable) throws; admission turns that into a 503 `unavailable`.
 */
export interface RateLimiter {
  admit(request: RateRequest): RateDecision | Promise<RateDecision>;
  /**
   * Replaces an admission's token reservation with the tokens actually used (the meter calls it once usage is known),
   * refunding the difference to the window and the day, and ends its place among the requests in flight. A no-op
   * once the admission has aged out of the window or was released.
   */
  settle(request: {
    keyId: string;
    accountId: string;
    decisionId: string;
    actualTokens: number;
    now: number;
  }): void | Promise<void>;
  /**
   * Gives back a reservation that will never be used (a later step refused the request): its request and the tokens
   * its entry holds. Idempotent: releasing a decision never admitted, or already released, changes nothing.
   */
  release(request: {
    keyId: string;
    accountId: string;
    decisionId: string;
    /** Not read: each limiter gives back what the decision's own entry holds. */
    tokens?: number;
    now: number;
  }): void | Promise<void>;
}

/**
 * Why a gate refused: not enough credit (what is available), too many reservations open (per account or in the whole
 * gate), or reservations fenced after Redis lost data (credit reserved before the loss may still be in flight).
 */
export type CreditRefusal =
  | { available: Nanos }
  | { inFlight: "account" | "total"; limit: number }
  | { fenced: true; retryAfterSeconds: number }
  | { budget: BudgetHold };

/** A credit gate's answer: reserved, or refused and why. */
export type CreditReserveOutcome = { reserved: true } | ({ reserved: false } & CreditRefusal);

/** A gate's refusal as the hold's outcome (the union does not spread through a rest pattern). */
export function creditRefused(refusal: CreditRefusal): HoldOutcome {
  if ("inFlight" in refusal) return { held: false, inFlight: refusal.inFlight, limit: refusal.limit };
  if ("fenced" in refusal) return { held: false, fenced: true, retryAfterSeconds: refusal.retryAfterSeconds };
  if ("budget" in refusal) return { held: false, budget: refusal.budget };
  return { held: false, available: refusal.available };
}

/** Credit reservations against an account's prepaid balance. */
export interface CreditGate {
  reserve(request: {
    accountId: string;
    decisionId: string;
    amount: Nanos;
    now: number;
    /** The key the reservation is for (its budget's held amount). */
    keyId?: string;
    /** Budgets the amount must also fit in (spent in the period + held + amount ≤ limit). */
    budgets?: readonly BudgetHold[];
  }): CreditReserveOutcome | Promise<CreditReserveOutcome>;
}

/** What admitting one request holds: a place in its key's window and a worst-case credit reservation. */
export interface HoldRequest extends RateRequest {
  /** Credit to reserve: the request's worst-case cost. */
  amount: Nanos;
  /** The key's and account's spend caps the amount must fit in; absent when neither has one. */
  budgets?: readonly BudgetHold[];
}

/** Held (with the window's figures when limits applied), or refused by the limiter, or refused for credit. */
export type HoldOutcome =
  | { held: true; rateLimit?: RateLimitState }
  | { held: false; rate: Extract<RateDecision, { admitted: false }> }
  | ({ held: false } & CreditRefusal);

/**
 * A request's rate-limit admission and credit reservation, held together: both or neither, the limiter deciding
 * first. Redis decides both in one script (one round trip per Check); `holdInTurn` composes the separate ports.
 * Throws when it cannot decide; admission answers 503 `unavailable`.
 */
export interface Quota {
  hold(request: HoldRequest): HoldOutcome | Promise<HoldOutcome>;
  /**
   * Gives back everything a hold may have written for a decision (credit reservation, window entry, day and in-flight
   * places): after a hold that failed in a way that means it may still have run (a timeout, a connection closed after
   * sending), or an admission the data plane never forwarded. Idempotent: a release of a hold that never ran changes
   * nothing. Throws when it cannot reach the store (the caller retries).
   */
  release?(held: HeldDecision): void | Promise<void>;
}

/** What identifies the holds of one decision: its key and account, and when it was admitted (the UTC day's keys). */
export interface HeldDecision {
  keyId: string;
  accountId: string;
  decisionId: string;
  now: number;
}

/**
 * Gives back an admission's holds when its answer never reached the data plane (Envoy's ext_authz timeout passed
 * first, so Envoy answered 503 and forwarded nothing): otherwise its reservation would be charged at expiry.
 */
export function releaseAdmission(admission: Admission, deps: Pick<AdmissionDeps, "quota" | "now">): void {
  const { keyId, accountId, decisionId } = admission;
  const released = deps.quota?.release?.({ keyId, accountId, decisionId, now: admission.admittedAt ?? deps.now() });
  if (released instanceof Promise) released.catch(() => undefined);
}

/**
 * A Quota over separate ports: the limiter admits, then the gate reserves, and a credit refusal gives the admission
 * back. `releaseCredit` gives back a decision's reservation (idempotent); without it `release` frees only the limiter.
 */
export function holdInTurn(
  limiter: RateLimiter,
  credits: CreditGate,
  releaseCredit?: (accountId: string, decisionId: string) => void | Promise<void>,
): Quota {
  /** Gives the limiter's admission back (its credit was refused, or could not be reserved), then `answer()`. */
  async function givenBack(request: HoldRequest, answer: () => HoldOutcome): Promise<HoldOutcome> {
    const { keyId, accountId, decisionId, tokens, now } = request;
    await limiter.release({ keyId, accountId, decisionId, tokens, now });
    return answer();
  }
  function reserveAfter(request: HoldRequest, decision: RateDecision): HoldOutcome | Promise<HoldOutcome> {
    if (!decision.admitted) return { held: false, rate: decision };
    const answer = (credit: CreditReserveOutcome): HoldOutcome | Promise<HoldOutcome> =>
      credit.reserved ? { held: true, rateLimit: decision.state } : givenBack(request, () => creditRefused(credit));
    const failed = (error: unknown) =>
      givenBack(request, () => {
        throw error;
      });
    let reserved: CreditReserveOutcome | Promise<CreditReserveOutcome>;
    try {
      reserved = credits.reserve(request);
    } catch (error) {
      return failed(error);
    }
    return reserved instanceof Promise ? reserved.then(answer, failed) : answer(reserved);
  }
  return {
    async release({ keyId, accountId, decisionId, now }) {
      await Promise.all([
        limiter.release({ keyId, accountId, decisionId, now }),
        releaseCredit?.(accountId, decisionId),
      ]);
    },
    hold(request) {
      // Synchronous when both ports are (the in-process ones, warm): no promise and no microtask per Check.
      const admitted = limiter.admit(request);
      return admitted instanceof Promise
        ? admitted.then((d) => reserveAfter(request, d))
        : reserveAfter(request, admitted);
    },
  };
}

/** The models a request may go on to reserve with: its plan's and key's, in the catalogue, not retired. */
export interface ServableModels {
  has(model: string): boolean;
  /** The same set as ids, for a reader that runs elsewhere (a worker thread). */
  ids(): string[];
}

/**
 * Reads chat bodies (`readChat`), in line or elsewhere: the data plane reads large bodies on worker threads so a
 * small Check never waits behind a large one. Must give `readChat`'s answer, or a 429 refusal when the account has
 * too many large bodies waiting (or a body waited past the data plane's timeout), and never reject.
 */
export interface ChatReader {
  /** `accountId` is whose body it is: a reader that queues large bodies keeps each account to a fair share. */
  read(body: RequestBody, servable: ServableModels, accountId: string): ChatFacts | Deny | Promise<ChatFacts | Deny>;
}

/** Everything admission reads; all of it in memory on the warm path. */
export interface AdmissionDeps {
  snapshot(): CatalogueSnapshot;
  keys: KeyDirectory;
  /** Whether requests for a provider can be forwarded (it is configured and has a credential). */
  routable(provider: string): boolean;
  /** Rate limits and credit reservations; absent, requests are admitted without either (benchmarks of the rest). */
  quota?: Quota;
  /** Where chat bodies are read; absent, in line with `readChat`. */
  chats?: ChatReader;
  /** What GET /v1/key reports beyond the key (its windows, its account's balance); absent, that route is 503. */
  keyStatus?: KeyStatusSource;
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
    return { kind: "answer", body: { object: "list", data: modelsForKey(snapshot, plan, key).map(modelObject) } };
  }
  if (method === "GET" && request.path.startsWith("/v1/models/")) {
    const id = decodePathSegment(request.path.slice("/v1/models/".length));
    const model = id === undefined ? undefined : snapshot.models.get(id);
    if (!model || model.retired) return modelNotFound(id ?? request.path.slice("/v1/models/".length));
    if (modelRefusal(model, plan, key)) return notPermitted(model);
    return { kind: "answer", body: modelObject(model) };
  }
  if (route === "GET /v1/key") return keyStatus(resolved, plan, snapshot, deps);
  if (route !== "POST /v1/chat/completions") {
    return deny(
      "unsupported_endpoint",
      `${route} is not supported; use POST /v1/chat/completions, GET /v1/models or GET /v1/key.`,
    );
  }

  const servable = servableModels(snapshot, plan, key);
  const read = deps.chats ? deps.chats.read(request.body, servable, account.id) : readChat(request.body, servable.has);
  const chat = read instanceof Promise ? await read : read;
  if ("kind" in chat) return chat;
  const model = snapshot.models.get(chat.model);
  if (!model || model.retired) return modelNotFound(chat.model);
  if (modelRefusal(model, plan, key)) return notPermitted(model);
  if (chat.maxOutputTokens !== undefined && chat.maxOutputTokens > model.maxOutputTokens) {
    return deny(
      "invalid_request",
      `max_tokens is too large: ${chat.maxOutputTokens}; '${model.id}' supports at most ${model.maxOutputTokens} output tokens.`,
      { param: "max_tokens" },
    );
  }
  if (!deps.routable(model.provider)) {
    return deny("unavailable", `The provider serving '${model.id}' is not configured on this gateway.`, {
      retryAfterSeconds: 30,
    });
  }
  // The model passed the checks `servable` stands for, so the reader counted the tokens.
  if (!chat.tokens) throw new Error(`chat reader gave no token bounds for servable model ${model.id}`);
  return reserve(key, account, model, plan, chat, chat.tokens, deps);
}

/** GET /v1/key: the calling key as it stands now (limits and what remains of each, models, balance). */
async function keyStatus(
  resolved: ResolvedKey,
  plan: Plan,
  snapshot: CatalogueSnapshot,
  deps: AdmissionDeps,
): Promise<Verdict> {
  const { key, account } = resolved;
  const limits = effectiveLimits(key, plan);
  if (!deps.keyStatus) return deny("unavailable", "Key status is not served here.", { retryAfterSeconds: 30 });
  const wait = deps.keyStatus.throttle?.(key.id, deps.now()) ?? 0;
  if (wait > 0) {
    return deny("rate_limit_exceeded", "This key reads GET /v1/key too often; retry shortly.", {
      retryAfterSeconds: Math.ceil(wait / 1000),
    });
  }
  try {
    const [windows, balance, budgets] = await Promise.all([
      deps.keyStatus.windows({ keyId: key.id, accountId: account.id, now: deps.now(), ...limits }),
      deps.keyStatus.balance(account.id),
      deps.keyStatus.budgets ? deps.keyStatus.budgets(resolved, deps.now()) : [],
    ]);
    const models = modelsForKey(snapshot, plan, key);
    const budget = budgetJson(budgets);
    return { kind: "answer", body: keyStatusBody({ resolved, plan, models, limits, windows, balance, budget }) };
  } catch {
    return deny("unavailable", "The key's status cannot be read right now; retry shortly.", { retryAfterSeconds: 1 });
  }
}

/** The servable set for one request, from the snapshot admission decides with (so the reader and admission agree). */
function servableModels(snapshot: CatalogueSnapshot, plan: Plan, scope: KeyModelScope): ServableModels {
  const has = (id: string) => {
    const model = snapshot.models.get(id);
    return model !== undefined && !model.retired && !modelRefusal(model, plan, scope);
  };
  return { has, ids: () => [...snapshot.models.keys()].filter(has) };
}

function authenticate(
  values: readonly string[],
  deps: AdmissionDeps,
): ResolvedKey | Deny | Promise<ResolvedKey | Deny> {
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
    return deny(
      "invalid_api_key",
      shape === "malformed_key"
        ? "Incorrect API key provided: it has the tg_ prefix but not the length or characters of a Tollgate key."
        : "Incorrect API key provided: it is not a Tollgate key.",
    );
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
  account: ResolvedKey["account"],
  model: CatalogueModel,
  plan: Plan,
  chat: ChatFacts,
  tokens: NonNullable<ChatFacts["tokens"]>,
  deps: AdmissionDeps,
): Promise<Verdict> {
  const keyId = key.id;
  const accountId = account.id;
  const maxOutputTokens = chat.maxOutputTokens ?? model.maxOutputTokens;
  // Image, file and audio parts bill at rates their bytes do not bound (an image's tiles, a PDF's pages): the prompt
  // is bounded only by the context window, which the provider fills with prompt and output together.
  // The bound is reserved; the text estimate stays the one the usage filter bills when a stream loses its usage
  // report, so a cut-off media request is not billed a whole context window.
  const promptTokensEstimate = tokens.prompt;
  const promptTokensBound = tokens.media
    ? Math.max(tokens.prompt, model.contextWindow - maxOutputTokens)
    : tokens.prompt;
  // The worst case bills every choice at its cap, and every predicted token rejected (billed as output).
  const outputTokensBound = maxOutputTokens * chat.choices + tokens.prediction;
  const reservedTokens = promptTokensBound + outputTokensBound;
  // The window counts what the request may be expected to use (settled to what it used by the meter); the credit
  // reservation above stays the worst case.
  const windowTokens =
    promptTokensBound + expectedOutputTokens(chat.maxOutputTokens, model, plan) * chat.choices + tokens.prediction;
  const reservedNanos = addNanos(
    tokenCost(promptTokensBound, model.prices.input),
    tokenCost(outputTokensBound, model.prices.output),
  );
  const decisionId = deps.newDecisionId();
  const now = deps.now();

  let rateLimit: RateLimitState | undefined;
  if (deps.quota) {
    // An operator's per-key value stands; an account's never exceeds the plan in force now.
    const limits = effectiveLimits(key, plan);
    const { tokensPerMinute, tokensPerDay } = limits;
    if (tokensPerDay > 0 && windowTokens > tokensPerDay) {
      return deny(
        "rate_limit_exceeded",
        `Request too large for this key's tokens per day: limit ${tokensPerDay}, requested ${windowTokens} (prompt estimate + max_tokens, or the expected output, × n). It can never fit; lower max_tokens or n, or shorten the prompt.`,
        { param: "max_tokens" },
      );
    }
    if (windowTokens > tokensPerMinute) {
      // Waiting can never help, so no Retry-After (clients would retry in vain); 429 as OpenAI answers "Request too large".
      return deny(
        "rate_limit_exceeded",
        tokens.media
          ? `Request too large for this key's tokens per minute: limit ${tokensPerMinute}, requested ${windowTokens}. A request with image, file or audio parts counts the model's context window (${model.contextWindow} tokens: prompt up to the window less max output, + expected output × n), so it can never fit this key; use a key with a higher tokens-per-minute limit, or send text only.`
          : `Request too large for this key's tokens per minute: limit ${tokensPerMinute}, requested ${windowTokens} (prompt estimate + max_tokens, or the expected output, × n). It can never fit; lower max_tokens or n, or shorten the prompt.`,
        { param: "max_tokens" },
      );
    }
    let outcome: HoldOutcome;
    try {
      const held = deps.quota.hold({
        keyId,
        accountId,
        decisionId,
        ...limits,
        tokens: windowTokens,
        amount: reservedNanos,
        now,
        budgets: budgetHolds(key, account, now),
      });
      outcome = held instanceof Promise ? await held : held;
    } catch {
      // Infrastructure fault (the quota's failure policy logs it); fail closed: without limits and credit the gateway cannot decide.
      return deny("unavailable", "Rate limits and credit cannot be checked right now; retry shortly.", {
        retryAfterSeconds: 1,
      });
    }
    if ("rate" in outcome) {
      const decision = outcome.rate;
      if (decision.dimension === "concurrency") {
        return deny(
          "concurrency_limit_exceeded",
          `Too many requests in flight on this key (limit ${limits.maxConcurrency} at once); retry when one has finished.`,
          { retryAfterSeconds: decision.retryAfterSeconds, rateLimit: decision.state },
        );
      }
      return deny("rate_limit_exceeded", rateRefusalMessage(decision, windowTokens), {
        retryAfterSeconds: decision.retryAfterSeconds,
        rateLimit: decision.state,
      });
    }
    if ("inFlight" in outcome) {
      return deny(
        "rate_limit_exceeded",
        `Too many requests in flight for this ${outcome.inFlight === "account" ? "account" : "gateway"} (limit ${outcome.limit} unsettled); retry when some have finished.`,
        { retryAfterSeconds: 1 },
      );
    }
    if ("fenced" in outcome) {
      return deny(
        "unavailable",
        "Credit reservations are being recovered after a loss of Redis data or an unclean authz restart; retry shortly.",
        { retryAfterSeconds: outcome.retryAfterSeconds },
      );
    }
    if ("budget" in outcome) return deny("budget_exceeded", budgetExceededMessage(outcome.budget));
    if (!outcome.held) {
      return deny(
        "insufficient_credits",
        "Your credit balance cannot cover this request's maximum cost; add credits or lower max_tokens.",
      );
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
    admittedAt: now,
  };
  return admission;
}

/** What a limiter's refusal tells the client: which limit, whose tokens are in the way, and how long to wait. */
function rateRefusalMessage(decision: Extract<RateDecision, { admitted: false }>, windowTokens: number): string {
  const wait = decision.retryAfterSeconds;
  if (decision.dimension === "requests") {
    return `Rate limit reached for requests per minute on this key; retry in ${wait}s.`;
  }
  if (decision.dimension === "requests_day") {
    return `Daily quota reached: requests per day on this key (limit ${decision.state.requestsDay?.limit}); it resets at 00:00 UTC, in ${wait}s.`;
  }
  if (decision.dimension === "tokens_day") {
    return decision.inFlightTokens
      ? `Daily quota reached for tokens per day on this key: ${decision.inFlightTokens} of today's tokens are held by requests still in flight (counted at their prompt plus max_tokens or expected output until they finish and are settled to what they used); this request needs ${windowTokens}. Retry in ${wait}s.`
      : `Daily quota reached: tokens per day on this key (limit ${decision.state.tokensDay?.limit}, this request needs ${windowTokens}); it resets at 00:00 UTC, in ${wait}s.`;
  }
  if (decision.inFlightTokens) {
    return `Rate limit reached for tokens per minute on this key: ${decision.inFlightTokens} of the window's tokens are held by requests still in flight (counted at their prompt plus max_tokens or expected output until they finish and are settled to what they used); this request needs ${windowTokens}. Retry in ${wait}s.`;
  }
  return `Rate limit reached for tokens per minute on this key (this request needs ${windowTokens}); retry in ${wait}s.`;
}

/** Longest client-supplied name echoed in a refusal: the body is bounded by what Tollgate chose to send. */
const MAX_ECHOED_NAME = 256;

function modelNotFound(id: string): Deny {
  const shown = id.length > MAX_ECHOED_NAME ? `${id.slice(0, MAX_ECHOED_NAME)}…` : id;
  return deny("model_not_found", `The model '${shown}' does not exist.`, { param: "model" });
}

/** A percent-encoded path segment, or undefined when its escapes are malformed (`%ZZ`): a name no model has. */
function decodePathSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

function notPermitted(model: CatalogueModel): Deny {
  return deny("model_not_permitted", `This API key is not permitted to use the model '${model.id}'.`, {
    param: "model",
  });
}

function modelObject(model: CatalogueModel) {
  return { id: model.id, object: "model", created: 0, owned_by: model.provider };
}
