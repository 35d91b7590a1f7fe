import { StructSchema, ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  HeaderValueOption_HeaderAppendAction,
  HeaderValueOptionSchema,
  HeaderValueSchema,
} from "../../gen/envoy/config/core/v3/base_pb.js";
import {
  encodedName,
  LEN,
  lenFieldSize,
  MAP_KEY,
  MAP_VALUE,
  utf8Size,
  VARINT,
  varintSize,
  WireWriter,
} from "../wire/index.js";

// Field numbers come from the generated descriptors (never retyped), so a proto change cannot silently desync this.
const HVO_HEADER = HeaderValueOptionSchema.field.header!.number;
const HVO_APPEND_ACTION = HeaderValueOptionSchema.field.appendAction!.number;
const OVERWRITE_IF_EXISTS_OR_ADD = HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD;
const HV_KEY = HeaderValueSchema.field.key!.number;
const HV_VALUE = HeaderValueSchema.field.value!.number;
const STRUCT_FIELDS = StructSchema.field.fields!.number;
const VALUE_NUMBER = ValueSchema.field.numberValue!.number;
const VALUE_STRING = ValueSchema.field.stringValue!.number;
const VALUE_BOOL = ValueSchema.field.boolValue!.number;

/**
 * The two message shapes the allow fast path writes per request: header options
 * (`HeaderValueOption{header{key,value}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}`) and Struct entries with string, number and bool
 * values. Everything else in a CheckResponse is encoded by protobuf-es; `test/unit/check-encoding.test.ts` decodes
 * this writer's output with protobuf-es and requires it to equal the message path, for random strings too.
 */
export class AllowWireWriter extends WireWriter {
  /** One occurrence of a repeated HeaderValueOption field that replaces any existing value (see check-response `set`). */
  headerOption(field: number, key: string, value: string): this {
    const k = encodedName(key);
    const v = utf8Size(value);
    // proto3 strings are omitted when empty, as protobuf-es does.
    const header = lenFieldSize(k.length) + (v > 0 ? lenFieldSize(v) : 0);
    const option = lenFieldSize(header) + 1 + varintSize(OVERWRITE_IF_EXISTS_OR_ADD);
    this.ensure(lenFieldSize(option));
    this.tag(field, LEN);
    this.varint(option);
    this.tag(HVO_HEADER, LEN);
    this.varint(header);
    this.bytesField(HV_KEY, k);
    if (v > 0) this.stringField(HV_VALUE, value, v);
    this.tag(HVO_APPEND_ACTION, VARINT);
    this.varint(OVERWRITE_IF_EXISTS_OR_ADD);
    return this;
  }

  /** One entry of Struct.fields: a string, a finite number, or a boolean value. */
  structEntry(key: string, value: string | number | boolean): this {
    const k = encodedName(key);
    const size = typeof value === "string" ? utf8Size(value) : 0;
    const valueSize = typeof value === "string" ? lenFieldSize(size) : typeof value === "number" ? 1 + 8 : 1 + 1;
    const entry = lenFieldSize(k.length) + lenFieldSize(valueSize);
    this.ensure(lenFieldSize(entry));
    this.tag(STRUCT_FIELDS, LEN);
    this.varint(entry);
    this.bytesField(MAP_KEY, k);
    this.tag(MAP_VALUE, LEN);
    this.varint(valueSize);
    if (typeof value === "string") this.stringField(VALUE_STRING, value, size);
    else if (typeof value === "number") this.doubleField(VALUE_NUMBER, value);
    else this.boolField(VALUE_BOOL, value);
    return this;
  }
}
