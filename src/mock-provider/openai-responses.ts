import type { ServerResponse } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { constants as zlibConstants, createGzip } from "node:zlib";
import type { ReplyPlan } from "./reply.js";

/** A planned completion (the error branch is answered before any of this runs). */
export type CompletionPlan = Extract<ReplyPlan, { kind: "completion" }>;

/** Identity shared by every object of one reply, as OpenAI repeats it on each chunk. */
export interface ReplyMeta {
  id: string;
  created: number;
  model: string;
}

const SYSTEM_FINGERPRINT = "fp_mock";

/** OpenAI's error body, the one shape every OpenAI client knows how to surface. */
export function errorBody(message: string, type: string, code: string | null, param: string | null = null): string {
  return JSON.stringify({ error: { message, type, param, code } });
}

/** A `chat.completion` object as OpenAI returns it for a non-streaming request. */
export function completionObject(meta: ReplyMeta, plan: CompletionPlan): Record<string, unknown> {
  return {
    id: meta.id,
    object: "chat.completion",
    created: meta.created,
    model: meta.model,
    system_fingerprint: SYSTEM_FINGERPRINT,
    choices: [
      {
        index: 0,
        message: { role: "assistant", content: plan.text, refusal: null },
        logprobs: null,
        finish_reason: plan.finishReason,
      },
    ],
    usage: plan.usage,
  };
}

/**
 * Writes the reply as OpenAI's SSE sequence, one write per event so readers see real streaming: role chunk, content
 * chunks, finish chunk, usage chunk (only when asked for), `[DONE]`. Honours `slow` between events and `cut` (a reset).
 */
export async function streamCompletion(
  res: ServerResponse,
  meta: ReplyMeta,
  plan: CompletionPlan,
  includeUsage: boolean,
  gzip = false,
): Promise<void> {
  const headers: Record<string, string> = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    connection: "keep-alive",
  };
  if (gzip) headers["content-encoding"] = "gzip";
  res.writeHead(200, headers);
  res.flushHeaders();
  // gzip: every event is flushed (Z_SYNC_FLUSH) so it still reaches the reader as it is written.
  const compressor = gzip ? createGzip() : undefined;
  compressor?.pipe(res);
  const write = (data: string, done: (err?: Error | null) => void) => {
    if (!compressor) return res.write(data, done);
    compressor.write(data);
    compressor.flush(zlibConstants.Z_SYNC_FLUSH, () => done());
    return true;
  };
  // OpenAI sends `usage: null` on every chunk when usage was requested, then the usage-only chunk last.
  const usageField = includeUsage ? { usage: null } : {};
  const chunk = (delta: Record<string, unknown>, finishReason: string | null) => ({
    id: meta.id,
    object: "chat.completion.chunk",
    created: meta.created,
    model: meta.model,
    system_fingerprint: SYSTEM_FINGERPRINT,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    ...usageField,
  });

  const gone = new AbortController();
  const closed = new Promise<false>((resolve) => res.once("close", () => resolve(false)));
  void closed.then(() => gone.abort());
  let first = true;
  // Resolves once the event reached the socket (so a following cut cannot drop it), or false if the peer left.
  const send = async (data: string): Promise<boolean> => {
    if (!first && plan.slowMs > 0) {
      const waited = await sleep(plan.slowMs, true, { signal: gone.signal }).catch(() => false);
      if (!waited) return false;
    }
    first = false;
    if (res.destroyed) return false;
    const written = new Promise<boolean>((resolve) => write(`data: ${data}\n\n`, (err) => resolve(!err)));
    return Promise.race([written, closed]);
  };

  if (!(await send(JSON.stringify(chunk({ role: "assistant", content: "", refusal: null }, null))))) return;
  let sent = 0;
  for (const content of plan.chunks) {
    if (plan.cutAfter !== undefined && sent >= plan.cutAfter) break;
    if (!(await send(JSON.stringify(chunk({ content }, null))))) return;
    sent++;
  }
  if (plan.cutAfter !== undefined) {
    // An upstream reset: no finish chunk, no usage, no [DONE], no clean end of the chunked body.
    res.socket?.destroy();
    return;
  }
  if (!(await send(JSON.stringify(chunk({}, plan.finishReason))))) return;
  if (includeUsage) {
    const usageChunk = { ...chunk({}, null), choices: [], usage: plan.usage };
    if (!(await send(JSON.stringify(usageChunk)))) return;
  }
  if (!(await send("[DONE]"))) return;
  if (compressor) compressor.end();
  else res.end();
}
