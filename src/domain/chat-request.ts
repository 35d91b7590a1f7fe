import { deny, type Deny } from "./verdict.js";

/** The fields of an OpenAI chat-completions body that admission decides on. */
export interface ChatRequest {
  model: string;
  stream: boolean;
  /** max_completion_tokens, else max_tokens; undefined when the client set neither. */
  maxOutputTokens: number | undefined;
  body: Record<string, unknown>;
}

/** The request body as the data plane handed it over. */
export type RequestBody =
  | { kind: "absent" }
  | { kind: "partial" }
  | { kind: "text"; text: string }
  | { kind: "bytes"; bytes: Uint8Array };

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/** Parses and validates a chat-completions body; every refusal names what is wrong and, where it is a field, which. */
export function parseChatRequest(body: RequestBody): ChatRequest | Deny {
  if (body.kind === "partial") {
    return deny("request_too_large", "Request body exceeds the gateway's body limit and cannot be inspected.");
  }
  let text: string;
  if (body.kind === "absent") text = "";
  else if (body.kind === "text") text = body.text;
  else {
    try {
      text = utf8.decode(body.bytes);
    } catch {
      return deny("invalid_request", "Request body is not valid UTF-8.");
    }
  }
  if (text.trim().length === 0) return deny("invalid_request", "Request body is empty; expected a JSON object.");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return deny("invalid_request", "Request body is not valid JSON.");
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    return deny("invalid_request", "Request body must be a JSON object.");
  }
  const fields = parsed as Record<string, unknown>;
  if (!("model" in fields)) return deny("invalid_request", "Missing required parameter: 'model'.", { param: "model" });
  if (typeof fields.model !== "string" || fields.model.length === 0) {
    return deny("invalid_request", "Invalid type for 'model': expected a non-empty string.", { param: "model" });
  }
  if (!Array.isArray(fields.messages) || fields.messages.length === 0) {
    return deny("invalid_request", "Invalid 'messages': expected a non-empty array.", { param: "messages" });
  }
  if (fields.stream !== undefined && fields.stream !== null && typeof fields.stream !== "boolean") {
    return deny("invalid_request", "Invalid type for 'stream': expected a boolean.", { param: "stream" });
  }
  let maxOutputTokens: number | undefined;
  for (const param of ["max_tokens", "max_completion_tokens"] as const) {
    const value = fields[param];
    if (value === undefined || value === null) continue;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
      return deny("invalid_request", `Invalid '${param}': expected a positive integer.`, { param });
    }
    maxOutputTokens = param === "max_completion_tokens" || maxOutputTokens === undefined ? value : maxOutputTokens;
  }
  return { model: fields.model, stream: fields.stream === true, maxOutputTokens, body: fields };
}
