import { createWriteStream, mkdirSync, type WriteStream } from "node:fs";
import { dirname } from "node:path";

/** The JSON-lines file access log (`tollgate reconcile` replays it); appends never block a response. */
export interface FileLog {
  append(line: string): void;
  close(): Promise<void>;
}

/** Opens `path` for appending, creating its folder, like Envoy's file access logger. */
export function createFileLog(path: string, onError: (error: Error) => void = () => {}): FileLog {
  mkdirSync(dirname(path), { recursive: true });
  const stream: WriteStream = createWriteStream(path, { flags: "a" });
  stream.on("error", onError);
  return {
    append(line) {
      stream.write(line + "\n");
    },
    close: () => new Promise<void>((resolve) => stream.end(() => resolve())),
  };
}
