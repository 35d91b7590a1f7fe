import { spawn, type ChildProcess } from "node:child_process";
import { envoyCheckRequest } from "./authz-client.js";

/** A chat request on a basic-tier model with a small, fixed output cap. */
export function chatCheck(secret: string, maxTokens = 16) {
  return envoyCheckRequest({
    headers: { authorization: `Bearer ${secret}` },
    body: JSON.stringify({
      model: "claude-haiku-4.5",
      messages: [{ role: "user", content: "Say hello" }],
      max_tokens: maxTokens,
    }),
  });
}

/** Starts a private redis-server (no persistence) on `port` and waits until it accepts connections. */
export async function startRedisServer(port: number, extraArgs: readonly string[] = []): Promise<ChildProcess> {
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...extraArgs],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  await new Promise<void>((resolve, reject) => {
    let seen = "";
    child.stdout!.on("data", (chunk) => {
      seen += String(chunk);
      if (seen.includes("Ready to accept connections")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`redis-server exited (${code}): ${seen}`)));
  });
  return child;
}

/** Stops a redis-server started by startRedisServer and waits for it to exit. */
export async function stopRedisServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}
