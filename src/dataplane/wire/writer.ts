import { FIXED64, LEN, tagOf, VARINT } from "./constants.js";

const utf8 = new TextEncoder();

/**
 * UTF-8 size of a string. Ids, numbers and header names are ASCII, where it is the length: a char-code loop beats
 * TextEncoder, whose per-call cost dominates on strings this short. Anything else is measured by TextEncoder.
 */
export function utf8Size(text: string): number {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return utf8.encode(text).length;
  return text.length;
}

/** Names (header names, Struct keys) are the caller's constants: encoded once each, in a bounded cache. */
const nameBytes = new Map<string, Uint8Array>();
const NAME_BYTES_MAX = 256;

/** The UTF-8 bytes of a string a caller writes again and again (bounded anyway, should a caller pass dynamic names). */
export function encodedName(name: string): Uint8Array {
  let bytes = nameBytes.get(name);
  if (!bytes) {
    bytes = utf8.encode(name);
    if (nameBytes.size < NAME_BYTES_MAX) nameBytes.set(name, bytes);
  }
  return bytes;
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

/** Bytes of a length-delimited field carrying `length` bytes, including its tag (for field numbers up to 15). */
export function lenFieldSize(length: number): number {
  return 1 + varintSize(length) + length;
}

/**
 * A growable, reusable protobuf writer for hot paths that write a few small messages per request, where building
 * protobuf-es objects would cost more than the bytes. Callers size each message first (lenFieldSize, varintSize),
 * `ensure` room once, then write tags and payloads; message-specific writers extend it.
 */
export class WireWriter {
  protected buf = new Uint8Array(4096);
  protected view = new DataView(this.buf.buffer);
  protected pos = 0;

  /** Starts a new message in the reused buffer. */
  reset(): this {
    this.pos = 0;
    return this;
  }

  /** The bytes written since `reset`, as a view (copy it before the next reset). */
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }

  /** Makes room for `extra` more bytes. */
  protected ensure(extra: number): void {
    if (this.pos + extra <= this.buf.length) return;
    const grown = new Uint8Array(Math.max(this.buf.length * 2, this.pos + extra));
    grown.set(this.buf.subarray(0, this.pos));
    this.buf = grown;
    this.view = new DataView(grown.buffer);
  }

  /** A raw varint (a length, or a value after its tag). */
  protected varint(n: number): void {
    this.pos = writeVarint(this.buf, this.pos, n);
  }

  /** A field's tag. */
  protected tag(field: number, wireType: number): void {
    this.varint(tagOf(field, wireType));
  }

  /** A string field (tag, length, UTF-8 bytes) of `size` bytes, as `utf8Size` measured it. */
  protected stringField(field: number, text: string, size: number): void {
    this.tag(field, LEN);
    this.varint(size);
    if (size === text.length) {
      // Only ASCII has as many UTF-8 bytes as UTF-16 units.
      for (let i = 0; i < size; i++) this.buf[this.pos + i] = text.charCodeAt(i);
    } else {
      utf8.encodeInto(text, this.buf.subarray(this.pos, this.pos + size));
    }
    this.pos += size;
  }

  /** A bytes field (tag, length, bytes): a name from `encodedName`. */
  protected bytesField(field: number, bytes: Uint8Array): void {
    this.tag(field, LEN);
    this.varint(bytes.length);
    for (let i = 0; i < bytes.length; i++) this.buf[this.pos + i] = bytes[i]!;
    this.pos += bytes.length;
  }

  /** A double field. */
  protected doubleField(field: number, value: number): void {
    this.tag(field, FIXED64);
    this.view.setFloat64(this.pos, value, true);
    this.pos += 8;
  }

  /** A bool field. */
  protected boolField(field: number, value: boolean): void {
    this.tag(field, VARINT);
    this.buf[this.pos++] = value ? 1 : 0;
  }

  /** One occurrence of a string field (repeated fields are written one occurrence per call). */
  string(field: number, value: string): this {
    const size = utf8Size(value);
    this.ensure(lenFieldSize(size));
    this.stringField(field, value, size);
    return this;
  }
}
