/** Wire type of varints: int32, int64, uint32, bool, enum. */
export const VARINT = 0;
/** Wire type of 64-bit fixed-width fields: double, fixed64. */
export const FIXED64 = 1;
/** Wire type of length-delimited fields: strings, bytes, embedded messages, packed repeated fields. */
export const LEN = 2;
/** Wire type of 32-bit fixed-width fields: float, fixed32. */
export const FIXED32 = 5;

/** Field numbers of a protobuf map entry (map fields are repeated messages with these two fields). */
export const MAP_KEY = 1;
export const MAP_VALUE = 2;

/** A field's tag as written on the wire: its number and wire type in one varint. */
export function tagOf(field: number, wireType: number): number {
  return (field << 3) | wireType;
}
