import { describe, expect, it } from "vitest";
import { fromBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { StringValueSchema } from "@bufbuild/protobuf/wkt";
import {
  FIXED32,
  FIXED64,
  LEN,
  MalformedMessage,
  tagOf,
  VARINT,
  varintSize,
  WireCursor,
  WireWriter,
  writeVarint,
} from "../../src/dataplane/wire/index.js";

/** A writer that also writes the field kinds only message-specific writers use. */
class TestWriter extends WireWriter {
  double(field: number, value: number): this {
    this.ensure(9);
    this.doubleField(field, value);
    return this;
  }
  bool(field: number, value: boolean): this {
    this.ensure(2);
    this.boolField(field, value);
    return this;
  }
}

const samples = ["", "a", "decision-0123", "héllo wörld", "日本語", "emoji 🚀", "x".repeat(300)];

describe("protobuf wire module", () => {
  it("uses protobuf's wire types", () => {
    expect([VARINT, FIXED64, LEN, FIXED32]).toEqual([
      WireType.Varint,
      WireType.Bit64,
      WireType.LengthDelimited,
      WireType.Bit32,
    ]);
  });

  it("writes varints and tags byte for byte as protobuf-es does", () => {
    for (const n of [0, 1, 127, 128, 300, 16_383, 16_384, 2 ** 21, 2 ** 31 - 1]) {
      const expected = new BinaryWriter().uint32(n).finish();
      const out = new Uint8Array(10);
      expect(out.subarray(0, writeVarint(out, 0, n))).toEqual(expected);
      expect(varintSize(n)).toBe(expected.length);
    }
    expect(new Uint8Array([tagOf(7, LEN)])).toEqual(new BinaryWriter().tag(7, WireType.LengthDelimited).finish());
  });

  it("writes strings protobuf-es reads back, ASCII and not, and the reader reads every field kind back", () => {
    for (const text of samples) {
      expect(fromBinary(StringValueSchema, new WireWriter().string(1, text).bytes()).value).toBe(text);
    }
    const w = new TestWriter();
    for (const text of samples) w.string(3, text);
    w.double(4, -1.5).bool(5, true).bool(6, false);
    const buf = Buffer.from(w.bytes());
    const r = new WireCursor(buf, "Sample");
    const read: unknown[] = [];
    while (r.pos < buf.length) {
      const field = r.field(buf.length);
      read.push(field === 3 ? r.utf8(buf.length) : field === 4 ? r.double(buf.length) : r.bool(buf.length));
    }
    expect(read).toEqual([...samples, -1.5, true, false]);
  });

  it("refuses a length that overruns its message, naming the message", () => {
    const buf = Buffer.from(new WireWriter().string(1, "hello").bytes());
    const r = new WireCursor(buf, "Sample");
    r.field(buf.length - 1);
    expect(() => r.utf8(buf.length - 1)).toThrow(new MalformedMessage("invalid Sample: truncated field"));
  });

  it("grows past its initial buffer and starts over on reset", () => {
    const w = new WireWriter();
    const long = "y".repeat(10_000);
    expect(fromBinary(StringValueSchema, w.string(1, long).bytes()).value).toBe(long);
    expect(fromBinary(StringValueSchema, w.reset().string(1, "short").bytes()).value).toBe("short");
  });
});
