import { describe, expect, it } from "vitest";
import { PROVIDER_REMOVED_REQUEST_HEADERS } from "../../src/contract/index.js";

// Review finding: the console's session cookie (tollgate_session, Path=/, no __Host- prefix) is sent by a
// browser to every port of the admin host, the data plane's included when it shares the host name (cookies are not
// port-scoped, and SameSite=Strict allows same-site). A credentialed browser request to the data plane then carries
// the admin session secret, and the provider virtual host forwards Cookie to OpenAI, Anthropic, Google, ...
describe("what a provider receives: no cookie of the client's", () => {
  it("cookie is removed", () => {
    expect(PROVIDER_REMOVED_REQUEST_HEADERS).toContain("cookie");
  });
});
