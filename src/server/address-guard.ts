// Addresses someone else chose: Web Push endpoints come from devices, relay
// addresses from clients (SNEW). Dialled as given, they would aim the server
// at its own network (SSRF: probing internal hosts and ports). Unless told
// otherwise, loopback, private, link-local and other non-public addresses are
// refused, checked on the addresses actually connected to, after DNS
// resolution; an address literal is connected to without a lookup, so it is
// checked before. Node-only.
import dns from 'node:dns';
import net from 'node:net';

const blocked = new net.BlockList();
for (const [prefix, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 3],
] as const)
  blocked.addSubnet(prefix, bits, 'ipv4');
for (const [prefix, bits] of [
  ['::', 127],
  ['64:ff9b::', 96],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const)
  blocked.addSubnet(prefix, bits, 'ipv6');
// (no ::ffff:0:0/96 rule: BlockList would match every IPv4 address against it; mapped addresses are checked as IPv4 below)

/** An IPv4-mapped IPv6 address as IPv4, anything else as it is. */
const unmapped = (ip: string) => /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)?.[1] ?? ip;

/** True for an address on the public internet. */
export function isPublicAddress(ip: string): boolean {
  const a = unmapped(ip);
  const family = net.isIP(a);
  if (family === 0) return false;
  return !blocked.check(a, family === 4 ? 'ipv4' : 'ipv6');
}

export const NOT_PUBLIC = 'EHUSHNOTPUBLIC';

/**
 * A net `lookup` that resolves like dns.lookup, but fails with NOT_PUBLIC
 * unless `admit` accepts the host name with every address it resolved to.
 */
export function guardedLookup(admit: (hostname: string, addresses: string[]) => boolean): net.LookupFunction {
  return (hostname, options, callback) =>
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '');
      if (addresses.length === 0 || !admit(hostname, addresses.map((a) => a.address))) {
        const e: NodeJS.ErrnoException = new Error(`${hostname} resolves to an address not admitted`);
        e.code = NOT_PUBLIC;
        return callback(e, '');
      }
      if (options.all) callback(null, addresses);
      else callback(null, addresses[0]!.address, addresses[0]!.family);
    });
}

/** Resolves like dns.lookup, but fails with NOT_PUBLIC for any non-public address. */
export const publicOnlyLookup = guardedLookup((_, addresses) => addresses.every(isPublicAddress));

/** Which hosts may be connected to (ntf.json `relays`). */
export interface AddressRules {
  /** Admit non-public addresses too, when there is no allow list. */
  allowPrivate?: boolean;
  /** When not empty, only these (see isAddressRule), public or not. */
  allow?: readonly string[];
  /** Never these; wins over the rest. */
  deny?: readonly string[];
}

const HOST_NAME = /^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$/;
/** Lower case, without IPv6 brackets or a final dot: how host names and rules compare. */
const normal = (host: string) => unmapped(host.toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, ''));

/** A host name (matched exactly, any case), an IPv4 or IPv6 address, or a CIDR block (address/bits). */
export function isAddressRule(rule: string): boolean {
  try {
    new RuleSet([rule]);
    return true;
  } catch {
    return false;
  }
}

class RuleSet {
  readonly names = new Set<string>();
  readonly blocks = new net.BlockList();
  hasBlocks = false;

  constructor(readonly rules: readonly string[]) {
    for (const rule of rules) {
      const [ip, bits, ...rest] = normal(rule).split('/');
      const family = net.isIP(ip!);
      if (family === 0 && bits === undefined && HOST_NAME.test(ip!)) {
        this.names.add(ip!);
        continue;
      }
      const max = family === 4 ? 32 : 128;
      const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
      if (family === 0 || rest.length > 0 || !(prefix <= max)) throw new RangeError(`not a host name, address or CIDR block: ${rule}`);
      this.blocks.addSubnet(ip!, prefix, family === 4 ? 'ipv4' : 'ipv6');
      this.hasBlocks = true;
    }
  }

  /** `ip`: a normal() address. */
  has(ip: string): boolean {
    return this.hasBlocks && this.blocks.check(ip, net.isIP(ip) === 4 ? 'ipv4' : 'ipv6');
  }
}

/**
 * Rules for hosts to connect to. A host is refused when a deny rule names it
 * or one of its addresses. With an allow list, it is admitted only when a rule
 * names it or covers every address it has, private or not; without one, when
 * every address is public, or with allowPrivate, any.
 */
export class AddressPolicy {
  private readonly allow: RuleSet;
  private readonly deny: RuleSet;

  /** Throws a RangeError for a rule that is not one (isAddressRule). */
  constructor(private readonly rules: AddressRules = {}) {
    this.allow = new RuleSet(rules.allow ?? []);
    this.deny = new RuleSet(rules.deny ?? []);
  }

  /** Before any lookup: true when `host` (a name or an address literal) is refused whatever a name resolves to. */
  refusesHost(host: string): boolean {
    const h = normal(host);
    if (net.isIP(h)) return !this.admits(h, [h]);
    if (this.deny.names.has(h)) return true;
    return this.allow.rules.length > 0 && !this.allow.names.has(h) && !this.allow.hasBlocks;
  }

  /** After the lookup: `host` with the addresses it resolved to. */
  admits(host: string, addresses: readonly string[]): boolean {
    const h = normal(host);
    if (this.deny.names.has(h) || addresses.length === 0) return false;
    const named = this.allow.names.has(h);
    return addresses.every((address) => {
      const ip = normal(address);
      if (!net.isIP(ip) || this.deny.has(ip)) return false;
      if (named || this.allow.has(ip)) return true;
      return this.allow.rules.length === 0 && (this.rules.allowPrivate === true || isPublicAddress(ip));
    });
  }
}
