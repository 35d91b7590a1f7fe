import { describe, expect, it } from "vitest";
import { createTargetPolicy } from "../../src/domain/webhook-targets.js";

const strict = createTargetPolicy({ allowedPrivateNetworks: [] });

describe("webhook targets: an account cannot make the control plane POST into a private network (SSRF)", () => {
  it("refuses every private, loopback, link-local, metadata, shared and reserved address by default", () => {
    for (const address of [
      "127.0.0.1",
      "127.255.0.9",
      "10.0.0.5",
      "172.16.0.1",
      "172.31.255.255",
      "192.168.1.1",
      "169.254.169.254", // cloud metadata
      "100.64.0.1", // carrier-grade NAT
      "0.0.0.0",
      "224.0.0.1",
      "255.255.255.255",
      "198.18.0.1",
      "::1",
      "::",
      "fe80::1",
      "fd00::1",
      "fc00::1",
      "ff02::1",
      "::ffff:127.0.0.1", // IPv4-mapped
      "::ffff:a9fe:a9fe", // 169.254.169.254, mapped, hex form
      "64:ff9b::a00:1", // NAT64 of 10.0.0.1
      "2002:a00:1::1", // 6to4 of 10.0.0.1
      "64:ff9b:1::a00:1", // local-use NAT64 (RFC 8215): a translator in this network reaches its private IPv4
      "::ffff:0:a00:1", // IPv4-translated (SIIT, RFC 2765) form of 10.0.0.1
    ])
      expect(strict.refusal(address), address).toMatch(/private|reserved|webhooks\.allowed_private_networks/);
  });

  it("allows public addresses", () => {
    for (const address of ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
      expect(strict.refusal(address), address).toBeUndefined();
  });

  it("allows only the private networks an operator lists", () => {
    const policy = createTargetPolicy({ allowedPrivateNetworks: ["127.0.0.0/8", "10.1.0.0/16"] });
    expect(policy.refusal("127.0.0.1")).toBeUndefined();
    expect(policy.refusal("::ffff:127.0.0.1")).toBeUndefined();
    expect(policy.refusal("10.1.2.3")).toBeUndefined();
    expect(policy.refusal("10.2.0.1")).toMatch(/private/);
    expect(policy.refusal("169.254.169.254")).toMatch(/private/);
  });

  it("validates URLs with field-named reasons: https only (http only to loopback), no credentials, no private literal", () => {
    const check = (url: string) => strict.checkUrl(url);
    expect(check("https://hooks.example.com/tollgate")).toBeUndefined();
    expect(check("http://hooks.example.com/x")).toMatch(/https/);
    expect(check("ftp://hooks.example.com/x")).toMatch(/https/);
    expect(check("not a url")).toMatch(/absolute/);
    expect(check("https://user:pw@hooks.example.com/")).toMatch(/credentials/);
    expect(check("https://10.0.0.5/hook")).toMatch(/private/);
    expect(check("https://[::1]/hook")).toMatch(/private/);
    expect(check("http://127.0.0.1:8080/hook")).toMatch(/private/);
    expect(check("https://localhost/hook")).toMatch(/private/);
    expect(check("https://metadata.google.internal/x")).toBeUndefined(); // a name: checked when resolved, at delivery
    expect(check(`https://example.com/${"a".repeat(2048)}`)).toMatch(/2048/);
    const loopback = createTargetPolicy({ allowedPrivateNetworks: ["127.0.0.0/8"] });
    expect(loopback.checkUrl("http://127.0.0.1:8080/hook")).toBeUndefined();
    expect(loopback.checkUrl("http://localhost:8080/hook")).toBeUndefined();
  });

  it("refuses a malformed allow-list entry at start-up, naming it", () => {
    expect(() => createTargetPolicy({ allowedPrivateNetworks: ["10.0.0.0/33"] })).toThrow(
      /webhooks\.allowed_private_networks.*10\.0\.0\.0\/33/,
    );
  });
});
