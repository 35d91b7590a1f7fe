import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Throwaway PEM files: a CA, a server certificate for 127.0.0.1/localhost, and client certificates. */
export interface TestPki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  /** Signed by the CA: what Envoy presents. */
  clientCert: string;
  clientKey: string;
  /** Signed by another CA: a stranger's certificate. */
  strangerCert: string;
  strangerKey: string;
  read(file: string): Buffer;
  cleanup(): void;
}

function openssl(dir: string, args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

function keyAndCsr(dir: string, name: string, cn: string): void {
  openssl(dir, [
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
    "-subj",
    `/CN=${cn}`,
  ]);
}

function selfSigned(dir: string, name: string, cn: string): void {
  openssl(dir, [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.crt`,
    "-subj",
    `/CN=${cn}`,
    "-days",
    "2",
  ]);
}

function sign(dir: string, name: string, ca: string, ext: string): void {
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    `${ca}.crt`,
    "-CAkey",
    `${ca}.key`,
    "-CAcreateserial",
    "-out",
    `${name}.crt`,
    "-days",
    "2",
    "-extfile",
    `${name}.ext`,
  ]);
}

/** Creates the files with the openssl CLI (Node cannot create X.509 certificates). */
export function createTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), "tollgate-pki-"));
  selfSigned(dir, "ca", "tollgate test CA");
  selfSigned(dir, "other-ca", "someone else's CA");
  keyAndCsr(dir, "server", "localhost");
  sign(dir, "server", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  keyAndCsr(dir, "client", "envoy");
  sign(dir, "client", "ca", "extendedKeyUsage=clientAuth\n");
  keyAndCsr(dir, "stranger", "envoy");
  sign(dir, "stranger", "other-ca", "extendedKeyUsage=clientAuth\n");
  const at = (f: string) => join(dir, f);
  return {
    dir,
    caCert: at("ca.crt"),
    serverCert: at("server.crt"),
    serverKey: at("server.key"),
    clientCert: at("client.crt"),
    clientKey: at("client.key"),
    strangerCert: at("stranger.crt"),
    strangerKey: at("stranger.key"),
    read: (file) => readFileSync(file),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
