import { StructSchema, ValueSchema } from "@bufbuild/protobuf/wkt";
import { HeaderValueOptionSchema, HeaderValueSchema } from "../../gen/envoy/config/core/v3/base_pb.js";

// Field numbers come from the generated descriptors (never retyped), so a proto change cannot silently desync this.
const HVO_HEADER = HeaderValueOptionSchema.field.header!.number;
const HVO_APPEND = HeaderValueOptionSchema.field.append!.number;
const HV_KEY = HeaderValueSchema.field.key!.number;
const HV_VALUE = HeaderValueSchema.field.value!.number;
const STRUCT_FIELDS = StructSchema.field.fields!.number;
const VALUE_NUMBER = ValueSchema.field.numberValue!.number;
const VALUE_STRING = ValueSchema.field.stringValue!.number;
const VALUE_BOOL = ValueSchema.field.boolValue!.number;
const MAP_KEY = 1;
const MAP_VALUE = 2;
const VARINT = 0;
const FIXED64 = 1;
/** Wire type of length-delimited fields (strings, bytes, embedded messages). */
export const LEN = 2;

const utf8 = new TextEncoder();

/** A string ready to write: its UTF-8 size, and its bytes when it is not ASCII (ASCII is copied char by char). */
interface Prepared {
  text: string;
  size: number;
  bytes: Uint8Array | undefined;
}

/**
 * Ids, numbers and header names are ASCII: for them a char-code loop beats TextEncoder, whose per-call cost
 * dominates on strings this short. Anything else goes through TextEncoder.
 */
function prepare(text: string): Prepared {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0x7f) {
      const bytes = utf8.encode(text);
      return { text, size: bytes.length, bytes };
    }
  }
  return { text, size: text.length, bytes: undefined };
}

/** Field names are the caller's constants: prepared once each (bounded anyway, should a caller pass dynamic names). */
const preparedNames = new Map<string, Prepared>();
const PREPARED_NAMES_MAX = 256;

function preparedName(name: string): Prepared {
  let p = preparedNames.get(name);
  if (!p) {
    p = prepare(name);
    if (preparedNames.size < PREPARED_NAMES_MAX) preparedNames.set(name, p);
  }
  return p;
}

/** Bytes of `n` as a protobuf varint (n is a non-negative 32-bit length or tag). */
export function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n >>>= 7;
    size++;
  }
  return size;
}

/** Writes `n` as a varint into `out` at `at` (room already ensured); returns the position after it. */
export function writeVarint(out: Uint8Array, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  out[at++] = n;
  return at;
}

/** Bytes of a length-delimited field carrying `length` bytes, including its tag (tags here are one byte). */
function lenFieldSize(length: number): number {
  return 1 + varintSize(length) + length;
}

/**
 * A growable buffer for the two message shapes the allow fast path writes per request: header options
 * (`HeaderValueOption{header{key,value}, append: BoolValue{}}`) and Struct entries with string, number and bool
 * values. Everything else in a CheckResponse is encoded by protobuf-es; `test/unit/check-encoding.test.ts` decodes
 * this writer's output with protobuf-es and requires it to equal the message path, for random strings too.
 */
export class AllowWireWriter {
  private buf = new Uint8Array(4096);
  private view = new DataView(this.buf.buffer);
  private pos = 0;

  /** Starts a new message in the reused buffer. */
  reset(): this {
    this.pos = 0;
    return this;
  }

  /** The bytes written since `reset`, as a view (copy it before the next reset). */
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }

  private ensure(extra: number): void {
    if (this.pos + extra <= this.buf.length) return;
    const grown = new Uint8Array(Math.max(this.buf.length * 2, this.pos + extra));
    grown.set(this.buf.subarray(0, this.pos));
    this.buf = grown;
    this.view = new DataView(grown.buffer);
  }

  private varint(n: number): void {
    this.pos = writeVarint(this.buf, this.pos, n);
  }

  private tag(field: number, wireType: number): void {
    this.varint((field << 3) | wireType);
  }

  private stringField(field: number, s: Prepared): void {
    this.tag(field, LEN);
    this.varint(s.size);
    if (s.bytes) this.buf.set(s.bytes, this.pos);
    else for (let i = 0; i < s.size; i++) this.buf[this.pos + i] = s.text.charCodeAt(i);
    this.pos += s.size;
  }

  /** One occurrence of a repeated HeaderValueOption field, with `append: false` sent explicitly. */
  headerOption(field: number, key: string, value: string): this {
    const k = preparedName(key);
    const v = prepare(value);
    // proto3 strings are omitted when empty, as protobuf-es does.
    const header = lenFieldSize(k.size) + (v.size > 0 ? lenFieldSize(v.size) : 0);
    const option = lenFieldSize(header) + lenFieldSize(0);
    this.ensure(lenFieldSize(option));
    this.tag(field, LEN);
    this.varint(option);
    this.tag(HVO_HEADER, LEN);
    this.varint(header);
    this.stringField(HV_KEY, k);
    if (v.size > 0) this.stringField(HV_VALUE, v);
    // BoolValue{value: false}: present, empty.
    this.tag(HVO_APPEND, LEN);
    this.varint(0);
    return this;
  }

  /** One entry of Struct.fields: a string, a finite number, or a boolean value. */
  structEntry(key: string, value: string | number | boolean): this {
    const k = preparedName(key);
    let valueSize: number;
    let s: Prepared | undefined;
    if (typeof value === "string") valueSize = lenFieldSize((s = prepare(value)).size);
    else if (typeof value === "number") valueSize = 1 + 8;
    else valueSize = 1 + 1;
    const entry = lenFieldSize(k.size) + lenFieldSize(valueSize);
    this.ensure(lenFieldSize(entry));
    this.tag(STRUCT_FIELDS, LEN);
    this.varint(entry);
    this.stringField(MAP_KEY, k);
    this.tag(MAP_VALUE, LEN);
    this.varint(valueSize);
    if (s !== undefined) this.stringField(VALUE_STRING, s);
    else if (typeof value === "number") {
      this.tag(VALUE_NUMBER, FIXED64);
      this.view.setFloat64(this.pos, value, true);
      this.pos += 8;
    } else {
      this.tag(VALUE_BOOL, VARINT);
      this.buf[this.pos++] = value ? 1 : 0;
    }
    return this;
  }

  /** A repeated string field occurrence (headers_to_remove). */
  string(field: number, value: string): this {
    const s = prepare(value);
    this.ensure(lenFieldSize(s.size));
    this.stringField(field, s);
    return this;
  }
}
