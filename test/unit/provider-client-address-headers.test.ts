import { describe, expect, it } from "vitest";
import { PROVIDER_REMOVED_REQUEST_HEADERS } from "../../src/contract/index.js";

// Review finding (uncommitted): the provider virtual host removes x-forwarded-for, x-envoy-external-address, forwarded
// and x-real-ip, but a CDN or load balancer in front of Envoy commonly adds the client's address under other names,
// which then reach every provider (issue 13 point 5: providers must not receive the client's address).
describe("what a provider receives: no client address under any common terminator's header", () => {
  it.each([
    "cf-connecting-ip", // Cloudflare
    "cf-connecting-ipv6",
    "true-client-ip", // Cloudflare Enterprise, Akamai
    "fastly-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "x-original-forwarded-for",
    "x-azure-clientip",
  ])("%s is removed", (name) => {
    expect(PROVIDER_REMOVED_REQUEST_HEADERS).toContain(name);
  });
});
