import { FIXED32, FIXED64, LEN, VARINT } from "./constants.js";

/** Bytes that are not valid protobuf for the message being read. */
export class MalformedMessage extends Error {
  override name = "MalformedMessage";
}

/**
 * A forward-only protobuf reader for hot paths that read a few fields of a large message and skip the rest without
 * decoding it (protobuf-es's full decode builds every object). Every read is bounded by the end of the message it
 * is in (`end`), so a length that overruns its parent is refused, never read past. Errors name the message.
 */
export class WireCursor {
  pos = 0;
  /** Where the payload of the last length-delimited field read by `payload` starts. */
  start = 0;
  private wireType = 0;

  constructor(
    readonly buf: Buffer,
    private readonly what: string,
  ) {}

  /** Reads a tag; returns the field number (the wire type is kept for the read or skip that follows). */
  field(end: number): number {
    const tag = this.varint(end);
    const number = Math.floor(tag / 8);
    this.wireType = tag % 8;
    if (number === 0) throw this.malformed("field number 0");
    return number;
  }

  /** Steps into an embedded message; returns where it ends. */
  enter(end: number): number {
    const inner = this.payload(end);
    this.pos = this.start;
    return inner;
  }

  /** A string field; invalid UTF-8 becomes replacement characters (protobuf-es would refuse the whole message). */
  utf8(end: number): string {
    const stop = this.payload(end);
    return this.buf.toString("utf8", this.start, stop);
  }

  /** A view of the field's bytes (no copy; grpc-js hands each message its own buffer). */
  bytes(end: number): Uint8Array {
    const stop = this.payload(end);
    return new Uint8Array(this.buf.buffer, this.buf.byteOffset + this.start, stop - this.start);
  }

  /** Passes over a length-delimited field: `start` is where its payload starts; returns where it ends. */
  payload(end: number): number {
    this.expect(LEN, "a length-delimited field");
    const length = this.varint(end);
    this.start = this.pos;
    const stop = this.pos + length;
    if (stop > end) throw this.malformed("truncated field");
    this.pos = stop;
    return stop;
  }

  /** An int64 field (two's complement varint), exact within ±2^53. */
  int64(end: number): number {
    this.expect(VARINT, "a varint");
    const [low, high] = this.varint64(end);
    return (high | 0) * 2 ** 32 + low;
  }

  /** An int32 or enum field (negative values arrive sign-extended to 64 bits). */
  int32(end: number): number {
    this.expect(VARINT, "a varint");
    return this.varint64(end)[0] | 0;
  }

  /** A uint32 field. */
  uint32(end: number): number {
    this.expect(VARINT, "a varint");
    return this.varint64(end)[0];
  }

  /** A bool field (any non-zero varint is true, as protobuf decoders read it). */
  bool(end: number): boolean {
    this.expect(VARINT, "a varint");
    const [low, high] = this.varint64(end);
    return low !== 0 || high !== 0;
  }

  /** A double field. */
  double(end: number): number {
    this.expect(FIXED64, "a 64-bit field");
    this.advance(8, end);
    return this.buf.readDoubleLE(this.pos - 8);
  }

  /** Passes over the field whose tag was just read, whatever its wire type. */
  skip(end: number): void {
    switch (this.wireType) {
      case VARINT:
        this.varint(end);
        return;
      case FIXED64:
        this.advance(8, end);
        return;
      case LEN:
        this.payload(end);
        return;
      case FIXED32:
        this.advance(4, end);
        return;
      default:
        throw this.malformed(`unsupported wire type ${this.wireType}`);
    }
  }

  private expect(wireType: number, what: string): void {
    if (this.wireType !== wireType) throw this.malformed(`wire type ${this.wireType} where ${what} belongs`);
  }

  /** A varint (tags, lengths, skipped values); exact up to 2^53, beyond which no length here can be valid anyway. */
  private varint(end: number): number {
    let result = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.pos >= end) throw this.malformed("truncated varint");
      const b = this.buf[this.pos++]!;
      if (shift < 53) result += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return result;
    }
    throw this.malformed("varint longer than 10 bytes");
  }

  /** A varint as its low and high 32 bits (unsigned), for fields whose sign or width matters. */
  private varint64(end: number): [number, number] {
    let low = 0;
    let high = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.pos >= end) throw this.malformed("truncated varint");
      const b = this.buf[this.pos++]!;
      const bits = b & 0x7f;
      if (shift < 28) low |= bits << shift;
      else if (shift === 28) {
        low |= (bits & 0x0f) << 28;
        high |= bits >>> 4;
      } else high |= bits << (shift - 32);
      if (b < 0x80) return [low >>> 0, high >>> 0];
    }
    throw this.malformed("varint longer than 10 bytes");
  }

  private advance(n: number, end: number): void {
    if (this.pos + n > end) throw this.malformed("truncated field");
    this.pos += n;
  }

  private malformed(reason: string): MalformedMessage {
    return new MalformedMessage(`invalid ${this.what}: ${reason}`);
  }
}
