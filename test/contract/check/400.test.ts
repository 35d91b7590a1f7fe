import { describe, expect, it } from "vitest";
import { bearer, chat, check, useCheckPlane } from "./setup.js";

const plane = useCheckPlane();

describe("400 / 413: bad request bodies", () => {
  const cases: Array<{
    name: string;
    body?: string | Uint8Array;
    asBytes?: boolean;
    partialBody?: boolean;
    status?: number;
    code?: string;
    param?: string | null;
    message: RegExp;
  }> = [
    { name: "not JSON", body: "{model: gpt-5.5}", message: /not valid JSON/ },
    { name: "not JSON (as raw bytes)", body: "model=gpt-5.5", asBytes: true, message: /not valid JSON/ },
    { name: "not UTF-8", body: new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), message: /not valid UTF-8/ },
    { name: "empty", body: "", message: /empty/ },
    { name: "absent", message: /empty/ },
    { name: "whitespace only", body: "  \n ", message: /empty/ },
    {
      name: "truncated by the partial-body limit",
      body: '{"model":"gpt-5.5","messages":[{"role":"user","content":"aaaa',
      partialBody: true,
      status: 413,
      code: "request_too_large",
      message: /body limit/,
    },
    { name: "a JSON array", body: "[1,2]", message: /JSON object/ },
    { name: "JSON null", body: "null", message: /JSON object/ },
    {
      name: "model missing",
      body: JSON.stringify({ messages: [{ role: "user", content: "hi" }] }),
      param: "model",
      message: /Missing required parameter: 'model'/,
    },
    {
      name: "model a number",
      body: JSON.stringify({ model: 5, messages: [] }),
      param: "model",
      message: /expected a non-empty string/,
    },
    {
      name: "model an empty string",
      body: JSON.stringify({ model: "", messages: [] }),
      param: "model",
      message: /expected a non-empty string/,
    },
    {
      name: "model null",
      body: JSON.stringify({ model: null }),
      param: "model",
      message: /expected a non-empty string/,
    },
    { name: "messages missing", body: JSON.stringify({ model: "gpt-5.5" }), param: "messages", message: /messages/ },
    { name: "messages empty", body: chat("gpt-5.5", { messages: [] }), param: "messages", message: /non-empty array/ },
    { name: "stream a string", body: chat("gpt-5.5", { stream: "yes" }), param: "stream", message: /boolean/ },
    {
      name: "max_tokens negative",
      body: chat("gpt-5.5", { max_tokens: -1 }),
      param: "max_tokens",
      message: /positive integer/,
    },
    {
      name: "max_tokens fractional",
      body: chat("gpt-5.5", { max_tokens: 1.5 }),
      param: "max_tokens",
      message: /positive integer/,
    },
    {
      name: "max_completion_tokens a string",
      body: chat("gpt-5.5", { max_completion_tokens: "10" }),
      param: "max_completion_tokens",
      message: /positive integer/,
    },
    {
      name: "max_tokens above the model's cap",
      body: chat("deepseek-v4-flash", { max_tokens: 100000 }),
      param: "max_tokens",
      message: /at most 8192/,
    },
  ];

  for (const c of cases) {
    it(`refuses a body that is ${c.name}`, async () => {
      const { secret } = await plane().account("scale");
      const res = await check(plane(), {
        headers: bearer(secret),
        body: c.body,
        asBytes: c.asBytes,
        partialBody: c.partialBody,
      });
      expect(res.allowed).toBe(false);
      expect(res.httpStatus).toBe(c.status ?? 400);
      expect(res.grpcCode).toBe(7);
      expect(res.error).toMatchObject({
        code: c.code ?? "invalid_request",
        type: "invalid_request_error",
        param: c.param ?? null,
      });
      expect(res.error?.message).toMatch(c.message);
    });
  }
});
