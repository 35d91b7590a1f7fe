import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { startControlPlane } from "../../src/app/control-plane.js";
import { checkPlaintextListeners, ConfigError, isLoopbackHost, loadConfig } from "../../src/config/config.js";
import { createLogger } from "../../src/logging.js";
import { sqliteTarget, type StoreTarget } from "../support/services.js";
import { TEST_SIGNING_SECRET } from "../support/als-client.js";

// authz hands provider credentials to whoever calls it and the meter bills what it is sent. Both served plaintext
// on whatever address they were given, with no word about it: on 0.0.0.0, anyone on the network could take the
// credentials or write dead letters. Off loopback they now need tls.* or an explicit tls.allow_plaintext.

const env = (extra: Record<string, string>) => ({ TOLLGATE_SIGNING_SECRET: TEST_SIGNING_SECRET, ...extra });
const TLS = {
  TOLLGATE_TLS_CERT_FILE: "/etc/tollgate/tls/role.crt",
  TOLLGATE_TLS_KEY_FILE: "/etc/tollgate/tls/role.key",
  TOLLGATE_TLS_CLIENT_CA_FILE: "/etc/tollgate/tls/ca.crt",
};

describe("authz and the meter refuse plaintext on a non-loopback address", () => {
  let target: StoreTarget | undefined;
  afterEach(async () => {
    await target?.cleanup();
    target = undefined;
  });

  for (const [role, variable] of [
    ["authz", "TOLLGATE_AUTHZ_LISTEN"],
    ["meter", "TOLLGATE_METER_LISTEN"],
  ] as const) {
    it(`refuses to start ${role} on 0.0.0.0 without tls.*, naming tls.cert_file and the opt-out, before anything listens`, async () => {
      target = sqliteTarget();
      const config = loadConfig({ env: env({ TOLLGATE_DATABASE_URL: target.url, [variable]: "0.0.0.0:0" }) });
      const lines: string[] = [];
      const logger = createLogger({
        level: "debug",
        destination: new Writable({ write: (c, _e, done) => done(void lines.push(String(c))) }),
      });
      const started = startControlPlane(config, { roles: [role], logger, mockProviders: true });
      await expect(started).rejects.toBeInstanceOf(ConfigError);
      await expect(started).rejects.toThrow(
        /^config: tls\.cert_file: required when .+ listens on 0\.0\.0\.0:0, which is not loopback: .*TOLLGATE_TLS_ALLOW_PLAINTEXT=true/,
      );
      expect(lines.join("")).not.toContain("listening");
    });
  }

  it("refuses every non-loopback form (any address, IPv6 any, a private address, a host name) and only for the roles this process runs", () => {
    for (const listen of ["0.0.0.0:9001", "[::]:9001", "10.1.2.3:9001", "authz:9001", "128.0.0.1:9001"]) {
      expect(
        () => checkPlaintextListeners(loadConfig({ env: env({ TOLLGATE_AUTHZ_LISTEN: listen }) }), ["authz"]),
        listen,
      ).toThrow(ConfigError);
    }
    const exposed = loadConfig({
      env: env({ TOLLGATE_AUTHZ_LISTEN: "0.0.0.0:9001", TOLLGATE_METER_LISTEN: "0.0.0.0:9002" }),
    });
    expect(checkPlaintextListeners(exposed, ["admin"])).toEqual([]);
    expect(() => checkPlaintextListeners(exposed, ["meter"])).toThrow(/meter listens on 0\.0\.0\.0:9002/);
  });

  it("accepts loopback addresses in plaintext (the defaults, `serve` for development)", () => {
    for (const host of ["127.0.0.1", "127.8.9.10", "localhost", "::1", "::ffff:127.0.0.1"])
      expect(isLoopbackHost(host), host).toBe(true);
    expect(checkPlaintextListeners(loadConfig({ env: {} }), ["authz", "meter", "admin"])).toEqual([]);
    expect(
      checkPlaintextListeners(
        loadConfig({ env: env({ TOLLGATE_AUTHZ_LISTEN: "[::1]:9001", TOLLGATE_METER_LISTEN: "localhost:9002" }) }),
        ["authz", "meter"],
      ),
    ).toEqual([]);
  });

  it("accepts 0.0.0.0 with tls.* (shared or the role's own), and with tls.allow_plaintext returns the exposed listeners to warn about", () => {
    expect(
      checkPlaintextListeners(
        loadConfig({
          env: env({ TOLLGATE_AUTHZ_LISTEN: "0.0.0.0:9001", TOLLGATE_METER_LISTEN: "0.0.0.0:9002", ...TLS }),
        }),
        ["authz", "meter"],
      ),
    ).toEqual([]);
    const ownTls = loadConfig({
      env: env({ TOLLGATE_METER_LISTEN: "0.0.0.0:9002" }),
      overrides: { "tls.meter": { cert_file: "m.crt", key_file: "m.key", client_ca_file: "ca.crt" } },
    });
    expect(checkPlaintextListeners(ownTls, ["meter"])).toEqual([]);
    const allowed = loadConfig({
      env: env({
        TOLLGATE_AUTHZ_LISTEN: "0.0.0.0:9001",
        TOLLGATE_METER_LISTEN: "0.0.0.0:9002",
        TOLLGATE_TLS_ALLOW_PLAINTEXT: "true",
      }),
    });
    expect(allowed.tls.allow_plaintext).toBe(true);
    expect(checkPlaintextListeners(allowed, ["authz", "meter"])).toEqual(["authz 0.0.0.0:9001", "meter 0.0.0.0:9002"]);
  });
});
