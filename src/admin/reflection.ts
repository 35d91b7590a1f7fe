import { create, toBinary, type DescFile, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import * as v1 from "../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** What reflection answers from: each served service's file, its dependencies, and every symbol in them. */
interface ReflectionIndex {
  services: string[];
  files: Map<string, DescFile>;
  symbols: Map<string, DescFile>;
}

function indexOf(services: readonly DescService[]): ReflectionIndex {
  const files = new Map<string, DescFile>();
  const symbols = new Map<string, DescFile>();
  const addMessage = (file: DescFile, m: DescMessage) => {
    symbols.set(m.typeName, file);
    for (const e of m.nestedEnums) symbols.set(e.typeName, file);
    for (const n of m.nestedMessages) addMessage(file, n);
  };
  const addFile = (file: DescFile) => {
    if (files.has(file.proto.name)) return;
    files.set(file.proto.name, file);
    for (const dep of file.dependencies) addFile(dep);
    for (const m of file.messages) addMessage(file, m);
    for (const e of file.enums) symbols.set(e.typeName, file);
    for (const s of file.services) {
      symbols.set(s.typeName, file);
      for (const method of s.methods) symbols.set(`${s.typeName}.${method.name}`, file);
    }
  };
  for (const s of services) addFile(s.file);
  return { services: services.map((s) => s.typeName), files, symbols };
}

/** The file and everything it imports, serialised as FileDescriptorProto bytes (what grpcurl and buf curl expect). */
function withDependencies(file: DescFile): Uint8Array[] {
  const seen = new Set<string>();
  const out: Uint8Array[] = [];
  const visit = (f: DescFile) => {
    if (seen.has(f.proto.name)) return;
    seen.add(f.proto.name);
    out.push(toBinary(FileDescriptorProtoSchema, f.proto));
    for (const dep of f.dependencies) visit(dep);
  };
  visit(file);
  return out;
}

type Request = v1.ServerReflectionRequest | v1alpha.ServerReflectionRequest;
type Answer =
  | { case: "fileDescriptorResponse"; files: Uint8Array[] }
  | { case: "listServicesResponse"; names: string[] }
  | { case: "errorResponse"; code: number; message: string };

const NOT_FOUND = 5;
const UNIMPLEMENTED = 12;

function answer(index: ReflectionIndex, req: Request): Answer {
  const r = req.messageRequest;
  switch (r.case) {
    case "listServices":
      return { case: "listServicesResponse", names: index.services };
    case "fileByFilename": {
      const file = index.files.get(r.value);
      return file
        ? { case: "fileDescriptorResponse", files: withDependencies(file) }
        : { case: "errorResponse", code: NOT_FOUND, message: `file "${r.value}" not found` };
    }
    case "fileContainingSymbol": {
      const file = index.symbols.get(r.value.replace(/^\./, ""));
      return file
        ? { case: "fileDescriptorResponse", files: withDependencies(file) }
        : { case: "errorResponse", code: NOT_FOUND, message: `symbol "${r.value}" not found` };
    }
    case "fileContainingExtension":
    case "allExtensionNumbersOfType":
      // Our API defines no extensions.
      return { case: "errorResponse", code: NOT_FOUND, message: "no extensions are served" };
    default:
      return { case: "errorResponse", code: UNIMPLEMENTED, message: "unknown reflection request" };
  }
}

/**
 * Registers grpc.reflection.v1 and v1alpha (grpcurl still asks v1alpha first; buf curl asks v1) answering from the
 * protobuf-es descriptors compiled into the code, so clients can list and call `services` without proto files.
 */
export function registerReflection(router: ConnectRouter, services: readonly DescService[]): void {
  const index = indexOf(services);
  const all = [...services.map((s) => s.typeName), v1.ServerReflection.typeName, v1alpha.ServerReflection.typeName];
  index.services = all;
  router.service(v1.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests)
        yield create(v1.ServerReflectionResponseSchema, {
          originalRequest: req,
          messageResponse: v1Response(answer(index, req)),
        });
    },
  });
  router.service(v1alpha.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests)
        yield create(v1alpha.ServerReflectionResponseSchema, {
          originalRequest: req,
          messageResponse: v1alphaResponse(answer(index, req)),
        });
    },
  });
  // Reflection's own descriptors are served too, so `grpcurl describe grpc.reflection.v1.ServerReflection` works.
  for (const s of [v1.ServerReflection, v1alpha.ServerReflection]) {
    for (const [name, file] of indexOf([s]).files) index.files.set(name, file);
    for (const [name, file] of indexOf([s]).symbols) index.symbols.set(name, file);
  }
}

function v1Response(a: Answer): v1.ServerReflectionResponse["messageResponse"] {
  if (a.case === "fileDescriptorResponse")
    return { case: a.case, value: create(v1.FileDescriptorResponseSchema, { fileDescriptorProto: a.files }) };
  if (a.case === "listServicesResponse")
    return {
      case: a.case,
      value: create(v1.ListServiceResponseSchema, {
        service: a.names.map((name) => create(v1.ServiceResponseSchema, { name })),
      }),
    };
  return {
    case: "errorResponse",
    value: create(v1.ErrorResponseSchema, { errorCode: a.code, errorMessage: a.message }),
  };
}

function v1alphaResponse(a: Answer): v1alpha.ServerReflectionResponse["messageResponse"] {
  if (a.case === "fileDescriptorResponse")
    return { case: a.case, value: create(v1alpha.FileDescriptorResponseSchema, { fileDescriptorProto: a.files }) };
  if (a.case === "listServicesResponse")
    return {
      case: a.case,
      value: create(v1alpha.ListServiceResponseSchema, {
        service: a.names.map((name) => create(v1alpha.ServiceResponseSchema, { name })),
      }),
    };
  return {
    case: "errorResponse",
    value: create(v1alpha.ErrorResponseSchema, { errorCode: a.code, errorMessage: a.message }),
  };
}
