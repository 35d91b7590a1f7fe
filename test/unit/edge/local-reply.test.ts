// The edge's reading of local_reply_config: Envoy's rules for the first matching mapper and for content-type and
// content-length, and a loud start-up failure for any part of the API it does not implement (so the edge never
// silently answers differently from Envoy).
import { describe, expect, it } from "vitest";
import { compileLocalReply, LocalReplyConfigError } from "../../../src/edge/local-reply.js";

const reply = (status: number, body = "", headers: Array<[string, string]> = [], flags: string[] = []) => ({
  status,
  body,
  flags,
  headers: new Map(headers.map(([k, v]) => [k, [v]])),
  metadata: {},
});

describe("local_reply_config in the edge", () => {
  it("without a config, replies keep their body; a body gets text/plain only when it has no content-type", () => {
    const lr = compileLocalReply(undefined);
    const plain = lr.rewrite(reply(503, "upstream connect error"));
    expect(plain.headers.get("content-type")).toEqual(["text/plain"]);
    expect(plain.headers.get("content-length")).toEqual(["22"]);
    const json = lr.rewrite(reply(401, "{}", [["content-type", "application/json"]]));
    expect(json.headers.get("content-type")).toEqual(["application/json"]);
    const empty = lr.rewrite(reply(503, "", [["content-type", "application/json"]]));
    expect(empty.headers.has("content-type")).toBe(false);
    expect(empty.headers.has("content-length")).toBe(false);
  });

  it("the first matching mapper wins; its status, body, headers and format apply", () => {
    const lr = compileLocalReply({
      mappers: [
        {
          filter: { status_code_filter: { comparison: { op: "EQ", value: { default_value: 404, runtime_key: "k" } } } },
          status_code: 410,
          body: { inline_string: "gone" },
          headers_to_add: [{ header: { key: "x-a", value: "1" }, append_action: "OVERWRITE_IF_EXISTS_OR_ADD" }],
          body_format_override: { text_format_source: { inline_string: "[%LOCAL_REPLY_BODY% %RESPONSE_CODE%]" } },
        },
        { filter: { response_flag_filter: { flags: [] } }, status_code: 418 },
      ],
    });
    const out = lr.rewrite(reply(404, "nope", [], ["NR"]));
    expect(out).toMatchObject({ status: 410, body: "[gone 410]" });
    expect(out.headers.get("x-a")).toEqual(["1"]);
    expect(lr.rewrite(reply(500, "", [], ["UF"])).status).toBe(418);
    expect(lr.rewrite(reply(500, "")).status).toBe(500);
  });

  it("fails on a part of the API it does not implement, naming where", () => {
    expect(() =>
      compileLocalReply({ mappers: [{ filter: { duration_filter: {} } }] }, "envoy.local.yaml local_reply_config"),
    ).toThrow(
      new LocalReplyConfigError(
        "envoy.local.yaml local_reply_config.mappers[0].filter: filter kind duration_filter is not supported by the local edge",
      ),
    );
    expect(() =>
      compileLocalReply({
        mappers: [
          {
            filter: { response_flag_filter: { flags: ["UF"] } },
            body_format_override: { text_format_source: { inline_string: "%REQ(X-REQUEST-ID)%" } },
          },
        ],
      }),
    ).toThrow(
      "local_reply_config.mappers[0].body_format_override: command operator %REQ(X-REQUEST-ID)% is not supported",
    );
    expect(() => compileLocalReply({ body_format: { json_format: { a: "b" } } })).toThrow(
      "local_reply_config.body_format: json_format is not supported by the local edge",
    );
  });
});
