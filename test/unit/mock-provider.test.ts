import { request } from "node:http";
import { gunzipSync } from "node:zlib";
import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { countTextTokens, estimateChatPromptTokens } from "../../src/domain/token-estimate.js";
import { createMockProvider, type MockProvider } from "../../src/mock-provider/mock-provider.js";
import { textOfTokens } from "../../src/mock-provider/reply.js";

const AUTH = { authorization: "Bearer sk-test", "content-type": "application/json" };

let mock: MockProvider;
beforeAll(async () => {
  mock = await createMockProvider();
});
afterAll(async () => {
  await mock.close();
});
beforeEach(() => mock.clear());

function chatBody(userText: string, extra: Record<string, unknown> = {}) {
  return {
    model: "gpt-4o-mini",
    messages: [
      { role: "system", content: "You are terse." },
      { role: "user", content: userText },
    ],
    ...extra,
  };
}

function post(body: unknown, path = "/v1/chat/completions", headers: Record<string, string> = AUTH) {
  return fetch(mock.url + path, {
    method: "POST",
    headers,
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** A chat.completion as the tests read it. */
interface Completion {
  object: string;
  model: string;
  choices: { message: { role: string; content: string }; finish_reason: string }[];
  usage: {
    prompt_tokens: number;
    completion_tokens: number;
    total_tokens: number;
    prompt_tokens_details: { cached_tokens: number };
    completion_tokens_details: { reasoning_tokens: number };
  };
}

async function complete(body: Record<string, unknown>): Promise<Completion> {
  const res = await post(body);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("application/json");
  return (await res.json()) as Completion;
}

/** One SSE event and the moment it was read. */
interface SseEvent {
  data: string;
  at: number;
}

/** Reads an SSE body event by event; `error` is set when the connection died before the body ended. */
async function readSse(res: Response): Promise<{ events: SseEvent[]; error: unknown }> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const events: SseEvent[] = [];
  let buffer = "";
  let error: unknown;
  for (;;) {
    // Only the read may fail (a reset connection); a failed assertion below must not be mistaken for one.
    let chunk: Awaited<ReturnType<typeof reader.read>>;
    try {
      chunk = await reader.read();
    } catch (err) {
      error = err;
      break;
    }
    if (chunk.done) break;
    buffer += decoder.decode(chunk.value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const raw = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      expect(raw.startsWith("data: ")).toBe(true);
      events.push({ data: raw.slice("data: ".length), at: performance.now() });
    }
  }
  expect(buffer).toBe("");
  return { events, error };
}

interface Chunk {
  object: string;
  choices: { index: number; delta: { role?: string; content?: string }; finish_reason: string | null }[];
  usage?: Completion["usage"] | null;
}

async function stream(body: Record<string, unknown>) {
  const res = await post({ ...body, stream: true });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("text/event-stream");
  const { events, error } = await readSse(res);
  const chunks = events.filter((e) => e.data !== "[DONE]").map((e) => JSON.parse(e.data) as Chunk);
  const content = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
  return { events, chunks, content, error };
}

function expectedUsage(
  body: Record<string, unknown>,
  content: string,
  extra: { cached?: number; reasoning?: number } = {},
) {
  const prompt = estimateChatPromptTokens(body);
  const completion = countTextTokens(content) + (extra.reasoning ?? 0);
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: extra.cached ?? 0 },
    completion_tokens_details: { reasoning_tokens: extra.reasoning ?? 0 },
  };
}

describe("JSON completions", () => {
  it("replies deterministically and counts usage with the gateway's tokenizer", async () => {
    const body = chatBody("Say hello to the nice people");
    const completion = await complete(body);
    expect(completion.object).toBe("chat.completion");
    expect(completion.model).toBe("gpt-4o-mini");
    expect(completion.choices[0]!.message).toMatchObject({
      role: "assistant",
      content: "Mock reply to: Say hello to the nice people",
    });
    expect(completion.choices[0]!.finish_reason).toBe("stop");
    expect(completion.usage).toEqual(expectedUsage(body, completion.choices[0]!.message.content));
    expect(completion.usage.prompt_tokens).toBeGreaterThan(10);
  });

  it("echoes only the first 40 characters of the last user message, without directives", async () => {
    const body = {
      model: "m",
      messages: [
        { role: "user", content: "an earlier question" },
        { role: "assistant", content: "an earlier answer" },
        {
          role: "user",
          content: [{ type: "text", text: "[[mock:cached=1]] 0123456789012345678901234567890123456789TAIL" }],
        },
      ],
    };
    const completion = await complete(body);
    expect(completion.choices[0]!.message.content).toBe("Mock reply to: 0123456789012345678901234567890123456789");
  });

  it("answers on every provider path shape", async () => {
    for (const path of ["/v1/chat/completions", "/v1beta/openai/chat/completions", "/chat/completions"]) {
      expect((await post(chatBody("hi"), path)).status).toBe(200);
    }
  });
});

describe("streams", () => {
  it("without include_usage: role chunk, content chunks, finish chunk, [DONE] and no usage anywhere", async () => {
    const body = chatBody("[[mock:tokens=7]]");
    const { events, chunks, content, error } = await stream(body);
    expect(error).toBeUndefined();
    expect(events.at(-1)!.data).toBe("[DONE]");
    expect(chunks.every((c) => c.object === "chat.completion.chunk" && !("usage" in c))).toBe(true);
    expect(chunks[0]!.choices[0]).toMatchObject({ delta: { role: "assistant", content: "" }, finish_reason: null });
    const middle = chunks.slice(1, -1);
    expect(middle).toHaveLength(3); // 7 tokens in deltas of 3 tokens
    expect(middle.every((c) => c.choices[0]!.finish_reason === null && c.choices[0]!.delta.content !== "")).toBe(true);
    expect(chunks.at(-1)!.choices[0]).toMatchObject({ delta: {}, finish_reason: "stop" });
    expect(content).toBe(textOfTokens(7));
  });

  it("with include_usage: usage null on each chunk, then a usage-only chunk before [DONE]", async () => {
    const body = chatBody("Stream me something", { stream_options: { include_usage: true } });
    const { events, chunks, content, error } = await stream(body);
    expect(error).toBeUndefined();
    expect(events.at(-1)!.data).toBe("[DONE]");
    const usageChunk = chunks.at(-1)!;
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage).toEqual(expectedUsage({ ...body, stream: true }, content));
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe("stop");
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    expect(content).toBe("Mock reply to: Stream me something");
  });

  it("streams the same text the JSON reply carries", async () => {
    const json = await complete(chatBody("same text either way please"));
    const streamed = await stream(chatBody("same text either way please"));
    expect(streamed.content).toBe(json.choices[0]!.message.content);
  });
});

describe("directives", () => {
  it("tokens=N builds a reply of exactly N completion tokens", async () => {
    for (const n of [0, 1, 2, 7, 100, 1000]) {
      const body = chatBody(`please [[mock:tokens=${n}]]`);
      const completion = await complete(body);
      expect(countTextTokens(completion.choices[0]!.message.content)).toBe(n);
      expect(completion.usage.completion_tokens).toBe(n);
      expect(completion.usage).toEqual(expectedUsage(body, completion.choices[0]!.message.content));
    }
  });

  it("textOfTokens is exact for every length up to 3000", () => {
    for (let n = 0; n <= 3000; n++) expect(countTextTokens(textOfTokens(n))).toBe(n);
  });

  it("error=STATUS answers that status with an OpenAI error body, also for streams", async () => {
    for (const [status, stream] of [
      [429, false],
      [503, true],
      [400, false],
      [500, true],
    ] as const) {
      const res = await post(chatBody(`[[mock:error=${status}]]`, { stream }));
      expect(res.status).toBe(status);
      expect(res.headers.get("content-type")).toBe("application/json");
      const body = (await res.json()) as { error: Record<string, unknown> };
      expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"]);
      expect(body.error.code).toBe("mock_error");
      if (status === 429 || status === 503) expect(res.headers.get("retry-after")).toBe("1");
    }
  });

  it("rejects unknown or malformed directives with a 400 naming them", async () => {
    for (const [text, fragment] of [
      ["[[mock:tokenz=3]]", 'unknown mock directive "tokenz"'],
      ["[[mock:tokens=three]]", 'mock directive "tokens" needs a non-negative integer'],
      ["[[mock:error=200]]", "needs a 4xx or 5xx status"],
    ]) {
      const res = await post(chatBody(text!));
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { message: string } }).error.message).toContain(fragment);
    }
  });

  it("gzip=1 compresses only when allowed; gzip=force compresses even when the request asks for identity", async () => {
    // Raw HTTP, so nothing decompresses behind the test's back.
    const raw = (text: string, stream: boolean) =>
      new Promise<{ encoding: string | undefined; body: Buffer }>((resolve, reject) => {
        const req = request(
          `${mock.url}/v1/chat/completions`,
          { method: "POST", headers: { ...AUTH, "accept-encoding": "identity" } },
          (res) => {
            const parts: Buffer[] = [];
            res.on("data", (c: Buffer) => parts.push(c));
            res.on("end", () => resolve({ encoding: res.headers["content-encoding"], body: Buffer.concat(parts) }));
          },
        );
        req.on("error", reject);
        req.end(JSON.stringify(chatBody(text, stream ? { stream: true } : {})));
      });
    const allowed = await raw("[[mock:gzip=1]] [[mock:tokens=3]]", false);
    expect(allowed.encoding).toBeUndefined();
    expect(JSON.parse(allowed.body.toString("utf8")).usage.completion_tokens).toBe(3);
    const forced = await raw("[[mock:gzip=force]] [[mock:tokens=3]]", false);
    expect(forced.encoding).toBe("gzip");
    expect(JSON.parse(gunzipSync(forced.body).toString("utf8")).usage.completion_tokens).toBe(3);
    const forcedStream = await raw("[[mock:gzip=force]] [[mock:tokens=3]]", true);
    expect(forcedStream.encoding).toBe("gzip");
    expect(gunzipSync(forcedStream.body).toString("utf8")).toContain("data: [DONE]");
  });

  it("slow=MS spaces stream events by MS, one write per event", async () => {
    const { events } = await stream(chatBody("[[mock:slow=60]][[mock:tokens=6]]"));
    expect(events).toHaveLength(5); // role, 2 content, finish, [DONE]
    for (let i = 1; i < events.length; i++) expect(events[i]!.at - events[i - 1]!.at).toBeGreaterThanOrEqual(45);
  });

  it("slow=MS delays a JSON reply", async () => {
    const started = performance.now();
    await complete(chatBody("[[mock:slow=120]]"));
    expect(performance.now() - started).toBeGreaterThanOrEqual(110);
  });

  it("cut=K resets the stream after K content chunks: no finish, no usage, no [DONE]", async () => {
    const body = chatBody("[[mock:tokens=30]][[mock:cut=2]]", { stream_options: { include_usage: true } });
    const { events, chunks, content, error } = await stream(body);
    expect(error).toBeDefined();
    expect(events.some((e) => e.data === "[DONE]")).toBe(false);
    expect(chunks).toHaveLength(3); // role chunk + 2 content chunks
    expect(chunks.some((c) => c.choices[0]?.finish_reason || c.usage)).toBe(false);
    expect(content).toBe(textOfTokens(6));
  });

  it("cut=K drops the connection before a JSON reply", async () => {
    await expect(post(chatBody("[[mock:cut=0]]"))).rejects.toThrow();
  });

  it("cached=N reports N cached prompt tokens", async () => {
    const body = chatBody("[[mock:cached=11]] with cache", { stream_options: { include_usage: true } });
    const completion = await complete(body);
    expect(completion.usage).toEqual(expectedUsage(body, completion.choices[0]!.message.content, { cached: 11 }));
    const streamed = await stream(body);
    expect(streamed.chunks.at(-1)!.usage!.prompt_tokens_details.cached_tokens).toBe(11);
  });

  it("reasoning=N counts N reasoning tokens inside completion_tokens", async () => {
    const body = chatBody("[[mock:reasoning=25]][[mock:tokens=4]]");
    const completion = await complete(body);
    expect(completion.usage.completion_tokens).toBe(29);
    expect(completion.usage.completion_tokens_details.reasoning_tokens).toBe(25);
    expect(completion.usage).toEqual(expectedUsage(body, completion.choices[0]!.message.content, { reasoning: 25 }));
  });

  it("max_tokens and max_completion_tokens truncate the reply with finish_reason length", async () => {
    const truncated = await complete(chatBody("a fairly long question about many things", { max_tokens: 3 }));
    expect(truncated.choices[0]!.finish_reason).toBe("length");
    expect(truncated.usage.completion_tokens).toBe(3);
    expect(countTextTokens(truncated.choices[0]!.message.content)).toBe(3);
    expect("Mock reply to: a fairly long".startsWith(truncated.choices[0]!.message.content)).toBe(true);

    const capped = await complete(chatBody("[[mock:tokens=50]]", { max_completion_tokens: 10, max_tokens: 99 }));
    expect(capped.usage.completion_tokens).toBe(10);
    expect(capped.choices[0]!.finish_reason).toBe("length");

    const fits = await complete(chatBody("[[mock:tokens=10]]", { max_tokens: 10 }));
    expect(fits.choices[0]!.finish_reason).toBe("stop");

    const withReasoning = await complete(chatBody("[[mock:reasoning=8]][[mock:tokens=5]]", { max_tokens: 10 }));
    expect(withReasoning.usage.completion_tokens).toBe(10);
    expect(withReasoning.usage.completion_tokens_details.reasoning_tokens).toBe(8);
    expect(withReasoning.choices[0]!.finish_reason).toBe("length");

    const streamed = await stream(
      chatBody("[[mock:tokens=50]]", { max_tokens: 4, stream_options: { include_usage: true } }),
    );
    expect(streamed.chunks.at(-2)!.choices[0]!.finish_reason).toBe("length");
    expect(streamed.chunks.at(-1)!.usage!.completion_tokens).toBe(4);
    expect(streamed.content).toBe(textOfTokens(4));
  });
});

describe("errors", () => {
  async function expectError(res: Response, status: number) {
    expect(res.status).toBe(status);
    const body = (await res.json()) as { error: Record<string, unknown> };
    expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"]);
    return body.error;
  }

  it("404 for anything but POST .../chat/completions", async () => {
    await expectError(await fetch(mock.url + "/v1/chat/completions", { headers: AUTH }), 404);
    await expectError(await post(chatBody("hi"), "/v1/embeddings"), 404);
    await expectError(await post(chatBody("hi"), "/v1/chat/completions/extra"), 404);
  });

  it("400 for a body that is not JSON or lacks model or messages", async () => {
    expect((await expectError(await post("{not json"), 400)).type).toBe("invalid_request_error");
    expect((await expectError(await post({ messages: [{ role: "user", content: "x" }] }), 400)).param).toBe("model");
    expect((await expectError(await post({ model: "m", messages: [] }), 400)).param).toBe("messages");
  });

  it("401 without a bearer credential", async () => {
    await expectError(await post(chatBody("hi"), undefined, { "content-type": "application/json" }), 401);
    await expectError(await post(chatBody("hi"), undefined, { authorization: "Basic abc" }), 401);
    await expectError(await post(chatBody("hi"), undefined, { authorization: "Bearer " }), 401);
  });

  it("401 when the credential is not the one expected for the provider path", async () => {
    const strict = await createMockProvider({ expectedCredentials: { "/v1": "sk-openai", "/v1beta/openai": "g-key" } });
    try {
      const send = (path: string, key: string) =>
        fetch(strict.url + path, {
          method: "POST",
          headers: { authorization: `Bearer ${key}` },
          body: JSON.stringify(chatBody("hi")),
        });
      expect((await send("/v1/chat/completions", "sk-openai")).status).toBe(200);
      expect((await send("/v1beta/openai/chat/completions", "g-key")).status).toBe(200);
      const wrong = await expectError(await send("/v1/chat/completions", "g-key"), 401);
      expect(wrong.code).toBe("invalid_api_key");
      expect(JSON.stringify(wrong)).not.toContain("g-key");
      await expectError(await send("/chat/completions", "sk-openai"), 401); // no entry for this path
    } finally {
      await strict.close();
    }
  });
});

describe("lifecycle", () => {
  it("close() ends in-flight streams instead of waiting for them", async () => {
    const own = await createMockProvider();
    const res = await fetch(own.url + "/v1/chat/completions", {
      method: "POST",
      headers: AUTH,
      body: JSON.stringify(chatBody("[[mock:slow=5000]][[mock:tokens=30]]", { stream: true })),
    });
    const reader = res.body!.getReader();
    await reader.read(); // the role chunk; the next one is 5 s away
    const started = performance.now();
    await own.close();
    expect(performance.now() - started).toBeLessThan(1000);
    await expect(reader.read()).rejects.toThrow();
  });
});

describe("recording", () => {
  it("records method, path, headers and parsed body of every request, and serves them at /_mock/requests", async () => {
    const body = chatBody("record me");
    await post(body, "/v1/chat/completions?trace=1", { ...AUTH, "x-tollgate-decision": "d-123" });
    await post("{broken", "/v1/embeddings");
    expect(mock.requests).toHaveLength(2);
    const [first, second] = mock.requests;
    expect(first).toMatchObject({ method: "POST", path: "/v1/chat/completions?trace=1", body });
    expect(first!.headers["authorization"]).toBe("Bearer sk-test");
    expect(first!.headers["x-tollgate-decision"]).toBe("d-123");
    expect(second).toMatchObject({ path: "/v1/embeddings", body: undefined, rawBody: "{broken" });

    const listed = (await (await fetch(mock.url + "/_mock/requests")).json()) as typeof mock.requests;
    expect(listed).toHaveLength(2); // the control request itself is not recorded
    expect(listed[0]!.headers["x-tollgate-decision"]).toBe("d-123");

    expect((await fetch(mock.url + "/_mock/requests", { method: "DELETE" })).status).toBe(204);
    expect(mock.requests).toHaveLength(0);
    await post(body);
    mock.clear();
    expect(mock.requests).toHaveLength(0);
  });
});

describe("with the official openai client", () => {
  const client = () => new OpenAI({ baseURL: mock.url + "/v1", apiKey: "x", maxRetries: 0 });

  it("parses a JSON completion whose usage matches the tokenizer", async () => {
    const params = { model: "gpt-4o", messages: [{ role: "user" as const, content: "[[mock:cached=3]] hello SDK" }] };
    const completion = await client().chat.completions.create(params);
    const content = completion.choices[0]!.message.content!;
    expect(content).toBe("Mock reply to: hello SDK");
    expect(completion.usage).toEqual(expectedUsage(params, content, { cached: 3 }));
    expect(mock.requests[0]!.headers["authorization"]).toBe("Bearer x");
  });

  it("parses a stream with include_usage whose final usage matches the tokenizer", async () => {
    const params = {
      model: "gpt-4o",
      messages: [{ role: "user" as const, content: "[[mock:tokens=20]][[mock:reasoning=2]]" }],
      stream: true as const,
      stream_options: { include_usage: true },
    };
    const chunks = [];
    for await (const chunk of await client().chat.completions.create(params)) chunks.push(chunk);
    const content = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
    expect(content).toBe(textOfTokens(20));
    expect(chunks.at(-1)!.choices).toEqual([]);
    expect(chunks.at(-1)!.usage).toEqual(expectedUsage(params, content, { reasoning: 2 }));
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe("stop");
  });

  it("surfaces a directive error as an APIError with status and code", async () => {
    const failing = client().chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "[[mock:error=429]]" }],
    });
    await expect(failing).rejects.toMatchObject({ status: 429, code: "mock_error" });
  });
});
