import { BlockList, isIP } from "node:net";

// Where a webhook may point. Tollgate is multi-tenant: an account must not be able to make the control plane POST
// into the network it runs in (cloud metadata at 169.254.169.254, the database, Redis, the admin API). So every
// address a delivery would connect to is checked (after DNS resolution, on the address actually dialled), and
// private, loopback, link-local, shared and reserved ranges are refused unless an operator lists them.

/** Longest webhook URL accepted. */
export const MAX_WEBHOOK_URL_LENGTH = 2048;

const PRIVATE_V4: Array<[string, number]> = [
  ["0.0.0.0", 8], // "this network"
  ["10.0.0.0", 8],
  ["100.64.0.0", 10], // carrier-grade NAT
  ["127.0.0.0", 8],
  ["169.254.0.0", 16], // link-local, cloud metadata
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.0.2.0", 24],
  ["192.88.99.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved, broadcast
];
const PRIVATE_V6: Array<[string, number]> = [
  ["::", 128],
  ["::1", 128],
  ["::ffff:0:0:0", 96], // IPv4-translated (SIIT): an IPv4 address in another form
  ["64:ff9b:1::", 48], // local-use NAT64 (RFC 8215): a translator in this network reaches its private IPv4
  ["100::", 64], // discard
  ["2001:db8::", 32], // documentation
  ["fc00::", 7], // unique local
  ["fe80::", 10], // link-local
  ["fec0::", 10], // site-local (deprecated)
  ["ff00::", 8], // multicast
];

function blockList(ranges: Array<[string, number]>, type: "ipv4" | "ipv6"): BlockList {
  const list = new BlockList();
  for (const [net, prefix] of ranges) list.addSubnet(net, prefix, type);
  return list;
}
const privateV4 = blockList(PRIVATE_V4, "ipv4");
const privateV6 = blockList(PRIVATE_V6, "ipv6");

/** The eight 16-bit groups of an IPv6 address (a trailing dotted IPv4 part included). */
function ipv6Groups(address: string): number[] {
  let text = address.toLowerCase().replace(/%.*$/, "");
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted[1]!.split(".").map(Number) as [number, number, number, number];
    text = `${text.slice(0, -dotted[1]!.length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  return groups.map((g) => Number.parseInt(g || "0", 16));
}

/** The IPv4 address an IPv6 address embeds (mapped, IPv4-compatible, NAT64, 6to4), or undefined. */
function embeddedV4(address: string): string | undefined {
  const g = ipv6Groups(address);
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  const zeros = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  if (zeros(0, 5) && g[5] === 0xffff) return v4(g[6]!, g[7]!); // ::ffff:a.b.c.d
  if (zeros(0, 6) && (g[6]! !== 0 || g[7]! > 1)) return v4(g[6]!, g[7]!); // ::a.b.c.d (deprecated)
  if (g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6)) return v4(g[6]!, g[7]!); // NAT64
  if (g[0] === 0x2002) return v4(g[1]!, g[2]!); // 6to4
  return undefined;
}

/** Where webhooks may be delivered: built once from the operator's allow-list. */
export interface TargetPolicy {
  /** Why a delivery must not connect to `address` (an IP literal), or undefined when it may. */
  refusal(address: string): string | undefined;
  /** Why `url` cannot be a webhook URL (the message of an InvalidArgument on `url`), or undefined. */
  checkUrl(url: string): string | undefined;
}

/**
 * Creates the policy. `allowedPrivateNetworks` are CIDRs (e.g. "10.1.0.0/16", "127.0.0.0/8" for tests) an operator
 * opens on purpose; a malformed one throws naming webhooks.allowed_private_networks.
 */
export function createTargetPolicy(options: { allowedPrivateNetworks: readonly string[] }): TargetPolicy {
  const allowed = new BlockList();
  for (const cidr of options.allowedPrivateNetworks) {
    const m = /^([^/]+)\/(\d{1,3})$/.exec(cidr.trim());
    const type = m ? isIP(m[1]!) : 0;
    const prefix = m ? Number(m[2]) : -1;
    if (!m || type === 0 || prefix > (type === 4 ? 32 : 128))
      throw new Error(`webhooks.allowed_private_networks: "${cidr}" is not a CIDR such as 10.1.0.0/16 or fd00::/8`);
    allowed.addSubnet(m[1]!, prefix, type === 4 ? "ipv4" : "ipv6");
  }
  const refusal = (address: string): string | undefined => {
    const type = isIP(address);
    if (type === 0) return `${address} is not an IP address`;
    const v4 = type === 4 ? address : embeddedV4(address);
    const isPrivate = v4 !== undefined ? privateV4.check(v4, "ipv4") : privateV6.check(address, "ipv6");
    if (!isPrivate) return undefined;
    if (v4 !== undefined ? allowed.check(v4, "ipv4") : allowed.check(address, "ipv6")) return undefined;
    return `${address} is in a private or reserved network; an operator may allow it in webhooks.allowed_private_networks`;
  };
  return {
    refusal,
    checkUrl(text) {
      if (text.length > MAX_WEBHOOK_URL_LENGTH) return `must be at most ${MAX_WEBHOOK_URL_LENGTH} characters`;
      let url: URL;
      try {
        url = new URL(text);
      } catch {
        return "must be an absolute https:// URL";
      }
      const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
      const localName = host === "localhost" || host.endsWith(".localhost");
      const ip = isIP(host) !== 0 ? host : localName ? "127.0.0.1" : undefined;
      const loopback = ip !== undefined && (ip === "::1" || (embeddedV4(ip) ?? ip).startsWith("127."));
      if (url.protocol !== "https:" && !(url.protocol === "http:" && loopback))
        return "must be an https:// URL (http:// only to a loopback host, for tests)";
      if (url.username || url.password) return "must not carry credentials (the signature authenticates Tollgate)";
      return ip === undefined ? undefined : refusal(ip);
    },
  };
}
