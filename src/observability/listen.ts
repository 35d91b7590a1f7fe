import type net from "node:net";
import { splitListen } from "../config/config.js";

/** Binds a server to a `host:port` listen address and resolves with the bound port (the real one when 0 was asked). */
export async function listenOn(server: net.Server, address: string): Promise<number> {
  const { host, port } = splitListen(address);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return (server.address() as net.AddressInfo).port;
}
