import type { JsonObject } from "@bufbuild/protobuf";
import type { HeaderValueOption } from "../gen/envoy/config/core/v3/base_pb.js";
import { HeaderValueOption_HeaderAppendAction } from "../gen/envoy/config/core/v3/base_pb.js";
import type { CheckResponse } from "../gen/envoy/service/auth/v3/external_auth_pb.js";

/** One header mutation as Envoy applies it: `set` replaces every existing value, `add` appends another. */
export interface HeaderEdit {
  name: string;
  value: string;
  mode: "set" | "add" | "add_if_absent";
}

/** What a CheckResponse tells the data plane to do, in plain data. */
export type CheckResult =
  | {
      kind: "allow";
      requestHeaders: HeaderEdit[];
      removeHeaders: string[];
      responseHeaders: HeaderEdit[];
      metadata: JsonObject;
    }
  | { kind: "deny"; status: number; headers: HeaderEdit[]; body: string; metadata: JsonObject };

/** The ext_authz gRPC status of an allowed request; anything else is a denial. */
const GRPC_OK = 0;

/** Envoy's interpretation of HeaderValueOption: append_action wins when set, else the deprecated `append` (default true). */
function edit(option: HeaderValueOption): HeaderEdit | undefined {
  const header = option.header;
  if (!header) return undefined;
  const name = header.key.toLowerCase();
  const value = header.value !== "" ? header.value : new TextDecoder("latin1").decode(header.rawValue);
  if (option.append !== undefined) return { name, value, mode: option.append ? "add" : "set" };
  switch (option.appendAction) {
    case HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD:
      return { name, value, mode: "set" };
    case HeaderValueOption_HeaderAppendAction.ADD_IF_ABSENT:
      return { name, value, mode: "add_if_absent" };
    default:
      // append unset means true for ext_authz headers: Envoy appends.
      return { name, value, mode: "add" };
  }
}

function edits(options: readonly HeaderValueOption[]): HeaderEdit[] {
  return options.map(edit).filter((e): e is HeaderEdit => e !== undefined);
}

/**
 * Reads a CheckResponse the way Envoy's ext_authz filter does: OK with an ok_response is an allow with header
 * mutations, anything else is a denial answered from denied_response (403 when it names no status).
 * Dynamic metadata is kept either way, as Envoy emits it for both.
 */
export function readCheckResponse(response: CheckResponse): CheckResult {
  const metadata = (response.dynamicMetadata ?? {}) as JsonObject;
  const http = response.httpResponse;
  if ((response.status?.code ?? GRPC_OK) === GRPC_OK) {
    const ok = http.case === "okResponse" ? http.value : undefined;
    return {
      kind: "allow",
      requestHeaders: edits(ok?.headers ?? []),
      removeHeaders: (ok?.headersToRemove ?? []).map((h) => h.toLowerCase()),
      responseHeaders: edits(ok?.responseHeadersToAdd ?? []),
      metadata,
    };
  }
  const denied = http.case === "deniedResponse" ? http.value : undefined;
  const status = denied?.status?.code ?? 0;
  return {
    kind: "deny",
    status: status > 0 ? status : 403,
    headers: edits(denied?.headers ?? []),
    body: denied?.body ?? "",
    metadata,
  };
}

/** A header map keyed by lower-case name; repeated headers keep every value. */
export type HeaderMap = Map<string, string[]>;

/** Applies header edits in order, as Envoy's header mutation does. */
export function applyHeaderEdits(headers: HeaderMap, list: readonly HeaderEdit[]): void {
  for (const e of list) {
    const existing = headers.get(e.name);
    if (e.mode === "set") headers.set(e.name, [e.value]);
    else if (e.mode === "add_if_absent") {
      if (!existing) headers.set(e.name, [e.value]);
    } else headers.set(e.name, [...(existing ?? []), e.value]);
  }
}
