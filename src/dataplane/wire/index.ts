/**
 * The protobuf wire format, by hand, for the data plane's hot paths: a bounded forward-only reader, a reusable
 * writer, and the wire constants both use. Everything else encodes and decodes with protobuf-es.
 */
export { FIXED32, FIXED64, LEN, MAP_KEY, MAP_VALUE, tagOf, VARINT } from "./constants.js";
export { MalformedMessage, WireCursor } from "./reader.js";
export { encodedName, lenFieldSize, utf8Size, varintSize, WireWriter, writeVarint } from "./writer.js";
