import * as grpc from "@grpc/grpc-js";
import { readPem } from "./grpc-server.js";

/** PEM files for the client side of mutual TLS (what Envoy presents to authz and the meter). */
export interface ClientTlsFiles {
  certFile: string;
  keyFile: string;
  /** The CA the server's certificate must chain to. */
  caFile: string;
  /** The name the server's certificate must carry, when it is not the host dialled. */
  serverName?: string;
}

/** Channel credentials and options for a client of an Envoy-facing role. */
export interface ClientChannel {
  credentials: grpc.ChannelCredentials;
  options: grpc.ChannelOptions;
}

const CERTIFICATE = /-----BEGIN CERTIFICATE-----/;
const PRIVATE_KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;

/**
 * mTLS channel credentials from tls.edge's files (read once, here, so a bad file fails start-up naming its
 * field), or plaintext without files: the roles serve plaintext unless tls.* is set.
 */
export function clientChannel(tls: ClientTlsFiles | undefined): ClientChannel {
  if (!tls) return { credentials: grpc.credentials.createInsecure(), options: {} };
  const ca = readPem(tls.caFile, "edge.ca_file", CERTIFICATE);
  const key = readPem(tls.keyFile, "edge.key_file", PRIVATE_KEY);
  const cert = readPem(tls.certFile, "edge.cert_file", CERTIFICATE);
  const options: grpc.ChannelOptions = tls.serverName
    ? { "grpc.ssl_target_name_override": tls.serverName, "grpc.default_authority": tls.serverName }
    : {};
  return { credentials: grpc.credentials.createSsl(ca, key, cert), options };
}
