// Envoy's HttpConnectionManager `local_reply_config`, as the local edge applies it to its own replies (authz
// denials, authz failures, refused mutations, buffer overflows, upstream failures, the no-route answer). The edge
// reads the mappers from envoy.local.yaml instead of copying them, so a reply Envoy would rewrite is rewritten the
// same way here. Only the parts of the API the YAML uses are implemented; anything else fails start-up, naming the
// mapper, so the edge can never silently disagree with the file.
//
// Semantics (source/common/local_reply/local_reply.cc, source/common/http/utility.cc prepareLocalReply):
// the first mapper whose filter matches applies its body, headers_to_add, status_code and body_format_override;
// the body is then formatted by that override or the top-level body_format (default: the body as is, text/plain).
// A non-empty body gets content-length and, when the reply had no content-type or the rewrite changed the body
// without setting one, the formatter's content type; an empty body loses both.
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { HeaderMap } from "./check-result.js";

/** A local reply as the edge is about to send it, with the stream facts Envoy's filters see. */
export interface LocalReplyInput {
  status: number;
  headers: HeaderMap;
  body: string;
  /** Short response flags set so far (UAEX, UF, NR, …). */
  flags: readonly string[];
  /** Dynamic metadata by namespace (`envoy.filters.http.ext_authz` → the CheckResponse's metadata). */
  metadata: Readonly<Record<string, JsonObject>>;
}

/** The reply after local_reply_config: what goes on the wire. */
export interface LocalReplyOutput {
  status: number;
  headers: HeaderMap;
  body: string;
}

/** A compiled local_reply_config. */
export interface LocalReply {
  rewrite(reply: LocalReplyInput): LocalReplyOutput;
}

type Filter = (reply: LocalReplyInput) => boolean;

interface Formatter {
  format(body: string, status: number): string;
  contentType: string;
}

interface Mapper {
  filter: Filter;
  status?: number;
  body?: string;
  headers: Array<{ name: string; value: string; action: string }>;
  formatter?: Formatter;
}

/** Thrown when envoy.local.yaml uses a part of local_reply_config the edge does not implement. */
export class LocalReplyConfigError extends Error {}

const DEFAULT_FORMATTER: Formatter = { format: (body) => body, contentType: "text/plain" };

/** Compiles `local_reply_config` (the YAML's snake_case object; undefined = Envoy's default: replies unchanged). */
export function compileLocalReply(config: JsonValue | undefined, where = "local_reply_config"): LocalReply {
  const root = config === undefined || config === null ? {} : object(config, where);
  known(root, ["mappers", "body_format"], where);
  const mappers = array(root.mappers ?? [], `${where}.mappers`).map((m, i) => mapper(m, `${where}.mappers[${i}]`));
  const fallback =
    root.body_format === undefined ? DEFAULT_FORMATTER : formatter(root.body_format, `${where}.body_format`);
  return {
    rewrite(reply) {
      let { status, body } = reply;
      const headers: HeaderMap = new Map([...reply.headers].map(([k, v]) => [k, [...v]]));
      const contentTypeBefore = headers.get("content-type")?.join(",");
      let chosen: Formatter | undefined;
      for (const m of mappers) {
        if (!m.filter({ ...reply, status })) continue;
        if (m.body !== undefined) body = m.body;
        for (const h of m.headers) addHeader(headers, h);
        if (m.status !== undefined) status = m.status;
        chosen = m.formatter;
        break;
      }
      const f = chosen ?? fallback;
      const formatted = f.format(body, status);
      if (formatted.length > 0) {
        headers.set("content-length", [String(Buffer.byteLength(formatted))]);
        const customContentType = headers.get("content-type")?.join(",") !== contentTypeBefore;
        if (!headers.has("content-type") || (formatted !== reply.body && !customContentType)) {
          headers.set("content-type", [f.contentType]);
        }
      } else {
        headers.delete("content-length");
        headers.delete("content-type");
      }
      return { status, headers, body: formatted };
    },
  };
}

function mapper(value: JsonValue, where: string): Mapper {
  const m = object(value, where);
  known(m, ["filter", "status_code", "body", "headers_to_add", "body_format_override"], where);
  if (m.filter === undefined) throw new LocalReplyConfigError(`${where}: a mapper needs a filter`);
  const status = m.status_code === undefined ? undefined : Number(m.status_code);
  let body: string | undefined;
  if (m.body !== undefined) {
    const source = object(m.body, `${where}.body`);
    known(source, ["inline_string"], `${where}.body`);
    body = String(source.inline_string);
  }
  const headers = array(m.headers_to_add ?? [], `${where}.headers_to_add`).map((h, i) => {
    const option = object(h, `${where}.headers_to_add[${i}]`);
    known(option, ["header", "append_action"], `${where}.headers_to_add[${i}]`);
    const header = object(option.header ?? null, `${where}.headers_to_add[${i}].header`);
    known(header, ["key", "value"], `${where}.headers_to_add[${i}].header`);
    return {
      name: String(header.key).toLowerCase(),
      value: String(header.value ?? ""),
      action: String(option.append_action ?? "APPEND_IF_EXISTS_OR_ADD"),
    };
  });
  return {
    filter: filter(m.filter, `${where}.filter`),
    status,
    body,
    headers,
    formatter:
      m.body_format_override === undefined
        ? undefined
        : formatter(m.body_format_override, `${where}.body_format_override`),
  };
}

/** The AccessLogFilter kinds local_reply_config uses here; evaluated on the reply's status, flags and metadata. */
function filter(value: JsonValue, where: string): Filter {
  const f = object(value, where);
  const kinds = Object.keys(f);
  if (kinds.length !== 1) throw new LocalReplyConfigError(`${where}: expected exactly one filter kind`);
  const kind = kinds[0]!;
  const spec = f[kind]!;
  switch (kind) {
    case "and_filter":
    case "or_filter": {
      const inner = object(spec, `${where}.${kind}`);
      known(inner, ["filters"], `${where}.${kind}`);
      const parts = array(inner.filters ?? [], `${where}.${kind}.filters`).map((p, i) =>
        filter(p, `${where}.${kind}.filters[${i}]`),
      );
      return kind === "and_filter" ? (r) => parts.every((p) => p(r)) : (r) => parts.some((p) => p(r));
    }
    case "status_code_filter": {
      const comparison = object(object(spec, `${where}.${kind}`).comparison ?? null, `${where}.${kind}.comparison`);
      const op = String(comparison.op ?? "EQ");
      const target = Number(object(comparison.value ?? null, `${where}.${kind}.comparison.value`).default_value ?? 0);
      if (op === "EQ") return (r) => r.status === target;
      if (op === "GE") return (r) => r.status >= target;
      if (op === "LE") return (r) => r.status <= target;
      if (op === "NE") return (r) => r.status !== target;
      throw new LocalReplyConfigError(`${where}.${kind}: comparison op ${op} is not supported by the local edge`);
    }
    case "response_flag_filter": {
      const inner = object(spec, `${where}.${kind}`);
      known(inner, ["flags"], `${where}.${kind}`);
      const flags = array(inner.flags ?? [], `${where}.${kind}.flags`).map(String);
      // No flags listed: any flag matches.
      return flags.length === 0 ? (r) => r.flags.length > 0 : (r) => r.flags.some((fl) => flags.includes(fl));
    }
    case "metadata_filter":
      return metadataFilter(object(spec, `${where}.${kind}`), `${where}.${kind}`);
    default:
      throw new LocalReplyConfigError(`${where}: filter kind ${kind} is not supported by the local edge`);
  }
}

/**
 * access_log_impl.cc MetadataFilter: a key that is present matches when the value matcher matches it; a key that
 * is absent matches when `match_if_key_not_found` (default true).
 */
function metadataFilter(spec: JsonObject, where: string): Filter {
  known(spec, ["matcher", "match_if_key_not_found"], where);
  const matcher = object(spec.matcher ?? null, `${where}.matcher`);
  known(matcher, ["filter", "path", "value"], `${where}.matcher`);
  const namespace = String(matcher.filter);
  const path = array(matcher.path ?? [], `${where}.matcher.path`).map((s) => String(object(s, where).key));
  const valueSpec = object(matcher.value ?? null, `${where}.matcher.value`);
  known(valueSpec, ["present_match", "string_match"], `${where}.matcher.value`);
  const whenAbsent = spec.match_if_key_not_found !== false;
  const matches = (v: JsonValue): boolean => {
    if (valueSpec.present_match !== undefined) return valueSpec.present_match === true;
    const exact = object(valueSpec.string_match ?? null, `${where}.matcher.value.string_match`).exact;
    return typeof v === "string" && v === exact;
  };
  return (r) => {
    let v: JsonValue | undefined = r.metadata[namespace];
    for (const key of path) v = v !== null && typeof v === "object" && !Array.isArray(v) ? v[key] : undefined;
    if (v === undefined || v === null) return whenAbsent;
    return matches(v);
  };
}

/** SubstitutionFormatString: literal text, where %LOCAL_REPLY_BODY% and %RESPONSE_CODE% are the only operators. */
function formatter(value: JsonValue, where: string): Formatter {
  const f = object(value, where);
  known(f, ["text_format_source", "text_format", "content_type"], where);
  const text =
    f.text_format !== undefined
      ? String(f.text_format)
      : String(object(f.text_format_source ?? null, `${where}.text_format_source`).inline_string ?? "");
  const operators = text.match(/%[A-Z_]+(\([^)]*\))?%/g) ?? [];
  for (const op of operators) {
    if (op !== "%LOCAL_REPLY_BODY%" && op !== "%RESPONSE_CODE%") {
      throw new LocalReplyConfigError(`${where}: command operator ${op} is not supported by the local edge`);
    }
  }
  return {
    format: (body, status) => text.replaceAll("%LOCAL_REPLY_BODY%", body).replaceAll("%RESPONSE_CODE%", String(status)),
    contentType: f.content_type !== undefined ? String(f.content_type) : "text/plain",
  };
}

/** HeaderValueOption.append_action on a response header map. */
function addHeader(headers: HeaderMap, h: { name: string; value: string; action: string }): void {
  const existing = headers.get(h.name);
  switch (h.action) {
    case "OVERWRITE_IF_EXISTS_OR_ADD":
      headers.set(h.name, [h.value]);
      return;
    case "ADD_IF_ABSENT":
      if (!existing) headers.set(h.name, [h.value]);
      return;
    case "OVERWRITE_IF_EXISTS":
      if (existing) headers.set(h.name, [h.value]);
      return;
    default:
      headers.set(h.name, [...(existing ?? []), h.value]);
  }
}

function object(value: JsonValue, where: string): JsonObject {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new LocalReplyConfigError(`${where}: expected an object`);
  }
  return value;
}

function array(value: JsonValue, where: string): JsonValue[] {
  if (!Array.isArray(value)) throw new LocalReplyConfigError(`${where}: expected a list`);
  return value;
}

function known(value: JsonObject, fields: readonly string[], where: string): void {
  for (const key of Object.keys(value)) {
    if (!fields.includes(key)) throw new LocalReplyConfigError(`${where}: ${key} is not supported by the local edge`);
  }
}
