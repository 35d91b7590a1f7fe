import { afterAll, describe, expect, it } from "vitest";
import type { ServableModels } from "../../src/domain/admission.js";
import { readChat, type RequestBody } from "../../src/domain/chat-request.js";
import { createChatReaderPool } from "../../src/dataplane/authz/chat-reader-pool.js";
import { liftCheckRequest } from "../../src/dataplane/authz/check-request.js";
import { BODY_LIMIT, bodyOfSize, encodedCheck } from "./authz-support.js";

const SERVABLE: ServableModels = { has: (model) => model === "gpt-5.5", ids: () => ["gpt-5.5"] };
const LARGEST = BODY_LIMIT - 1;
const bytes = (text: string): RequestBody => ({ kind: "bytes", bytes: new TextEncoder().encode(text) });

/** Large bodies of every outcome: admitted shapes, a model not servable, refusals of each kind. */
function largeBodies(): Record<string, RequestBody> {
  const open = '{"model":"gpt-5.5","messages":[{"role":"user","content":"';
  const invalid = new TextEncoder().encode(bodyOfSize(200_000, open, "a", '"}]}'));
  invalid[100_000] = 0xff;
  return {
    "one character": bytes(bodyOfSize(LARGEST, open, "a", '"}]}')),
    "words, as text": { kind: "text", text: bodyOfSize(300_000, open, "the quick brown fox ", '"}]}') },
    "many messages": bytes(
      `{"model":"gpt-5.5","messages":[${Array.from({ length: 5000 }, (_, i) => `{"role":"user","content":"message ${i} ${"x".repeat(i % 50)}"}`).join(",")}]}`,
    ),
    "model not servable": bytes(
      bodyOfSize(200_000, '{"model":"claude-opus-4.8","messages":[{"role":"user","content":"', "b", '"}]}'),
    ),
    "too many elements": bytes(
      `{"model":"gpt-5.5","messages":[{"role":"user","content":"x","x":[${"{},".repeat(40_000)}{}]}]}`,
    ),
    "nested too deep": bytes(bodyOfSize(200_000, '{"model":"gpt-5.5","x":', "[", "")),
    "not UTF-8": { kind: "bytes", bytes: invalid },
    "not JSON": bytes(`{"model":"gpt-5.5",${" ".repeat(100_000)}`),
    "proto string, not decoded yet": {
      kind: "utf8",
      bytes: new TextEncoder().encode(bodyOfSize(300_000, open, "中文 ", '"}]}')),
    },
    "proto string with a BOM": {
      kind: "utf8",
      bytes: new TextEncoder().encode(`\uFEFF${bodyOfSize(300_000, open, "x", '"}]}')}`),
    },
  };
}

/**
 * A read with its token bounds replaced by whether they are there: a budgeted estimate of text past the budget
 * depends on which pieces the reading thread has cached, so two threads may give two (valid) upper bounds.
 */
function shape(read: unknown): unknown {
  if (read === null || typeof read !== "object" || !("tokens" in read)) return read;
  return { ...read, tokens: "counted" };
}

describe("authz: large chat bodies are read on worker threads", () => {
  // Ten bodies at once on two workers: a loaded machine must not make one wait past the bound and be refused.
  const pool = createChatReaderPool({ workers: 2, maxWaitMs: 60_000 });
  afterAll(() => pool.close());

  it("a large body read on a worker gets the same answer as read in line, for every outcome", async () => {
    const bodies = largeBodies();
    const answers = await Promise.all(Object.values(bodies).map((body, i) => pool.read(body, SERVABLE, `acct_${i}`)));
    Object.keys(bodies).forEach((name, i) => {
      expect(shape(answers[i]), name).toEqual(shape(readChat(Object.values(bodies)[i]!, SERVABLE.has)));
    });
    // One run of one character is one pre-tokenizer piece, counted as its bytes by any thread.
    expect(answers[0]).toEqual(readChat(bodies["one character"]!, SERVABLE.has));
    expect(answers[0]).toMatchObject({ model: "gpt-5.5", tokens: { prompt: expect.any(Number) } });
    expect(answers[3]).not.toHaveProperty("tokens");
  });

  it("a large body sent as a proto string is decoded where it is read, as the same text (a BOM kept)", () => {
    const text = bodyOfSize(300_000, '{"model":"gpt-5.5","messages":[{"role":"user","content":"', "中文 ", '"}]}');
    for (const sent of [text, `\uFEFF${text}`]) {
      const lifted = liftCheckRequest(encodedCheck("tg_x", sent, "/v1/chat/completions", "POST", false)).admission.body;
      expect(lifted.kind).toBe("utf8");
      expect(shape(readChat(lifted, SERVABLE.has))).toEqual(
        shape(readChat({ kind: "text", text: sent }, SERVABLE.has)),
      );
    }
    expect(readChat({ kind: "utf8", bytes: new TextEncoder().encode(`\uFEFF${text}`) }, SERVABLE.has)).toMatchObject({
      kind: "deny",
      message: "Request body is not valid JSON.",
    });
  });

  it("a small body is read in line, with no hop to a worker", () => {
    const read = pool.read(
      bytes('{"model":"gpt-5.5","messages":[{"role":"user","content":"hi"}]}'),
      SERVABLE,
      "acct_1",
    );
    expect(read).not.toBeInstanceOf(Promise);
    expect(read).toMatchObject({ model: "gpt-5.5", tokens: { prompt: 8 } });
  });

  it("a worker that dies (out of heap) is replaced and its body is still answered, never refused", async () => {
    const faults: unknown[] = [];
    // A heap this small cannot even load the reader: every worker dies, and each body is answered all the same.
    const starved = createChatReaderPool({
      workers: 1,
      maxWaitMs: 60_000,
      maxHeapMb: 1,
      onFault: (error) => faults.push(error),
    });
    try {
      const bodies = Object.values(largeBodies()).slice(0, 3);
      const answers = await Promise.all(bodies.map((body) => starved.read(body, SERVABLE, "acct_1")));
      for (const [i, answer] of answers.entries())
        expect(shape(answer)).toEqual(shape(readChat(bodies[i]!, SERVABLE.has)));
      expect(faults.length).toBeGreaterThan(0);
    } finally {
      await starved.close();
    }
  });

  it("after five worker deaths in a row, bodies are read in line only for a backoff, then a worker is tried again", async () => {
    const faults: unknown[] = [];
    const starved = createChatReaderPool({
      workers: 1,
      maxWaitMs: 60_000,
      maxHeapMb: 1,
      retryBackoffMs: 2000,
      onFault: (error) => faults.push(error),
    });
    try {
      const body = largeBodies()["one character"]!;
      // Every worker dies (its heap cannot load the reader): read until the pool gives up on workers for a while.
      let read = starved.read(body, SERVABLE, "acct_1");
      for (let i = 0; i < 10 && read instanceof Promise; i++) {
        expect(await read).toEqual(readChat(body, SERVABLE.has));
        read = starved.read(body, SERVABLE, "acct_1");
      }
      expect(read).not.toBeInstanceOf(Promise);
      const before = faults.length;
      expect(before).toBeGreaterThanOrEqual(5);
      await new Promise((resolve) => setTimeout(resolve, 2500));
      const retried = starved.read(body, SERVABLE, "acct_1");
      expect(retried).toBeInstanceOf(Promise);
      expect(await retried).toEqual(readChat(body, SERVABLE.has));
      expect(faults.length).toBeGreaterThan(before);
    } finally {
      await starved.close();
    }
  });

  it("after close, bodies are read in line", async () => {
    const closing = createChatReaderPool({ workers: 1 });
    const body = largeBodies()["one character"]!;
    const pending = closing.read(body, SERVABLE, "acct_1");
    await closing.close();
    expect(await pending).toEqual(readChat(body, SERVABLE.has));
    expect(closing.read(body, SERVABLE, "acct_1")).not.toBeInstanceOf(Promise);
  });
});
