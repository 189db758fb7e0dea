/**
 * Who is asking, and at which address they reached us: the socket's peer,
 * unless that peer is a trusted reverse proxy (`http.trustedproxies`), whose
 * X-Forwarded-For/-Proto/-Host are then believed. From anyone else those
 * headers are ignored, so a client cannot pick its logged address, dodge a
 * per-client limit, or steer the token realm and `Location` URLs.
 */
import { BlockList, isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';

export interface Origin {
  /** The client's address, for logs and per-client limits. */
  client: string;
  /** `http` or `https`, as the client spoke to the outermost trusted hop. */
  proto: 'http' | 'https';
  /** The Host the client used (host[:port]); '' when it sent none. */
  host: string;
}

/** Strips an IPv4-mapped IPv6 prefix, so `::ffff:10.0.0.1` matches `10.0.0.0/8`. */
const plain = (address: string): string => (address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address);

/**
 * An X-Forwarded-For hop as an address: some proxies write the port too
 * (`1.2.3.4:5678`, `[::1]:80`). undefined for anything else.
 */
function hopAddress(hop: string): string | undefined {
  const address = /^\[([0-9a-fA-F:.]+)\](?::\d{1,5})?$/.exec(hop)?.[1] ?? /^([0-9.]+):\d{1,5}$/.exec(hop)?.[1] ?? hop;
  return isIP(address) === 0 ? undefined : plain(address);
}

/** A host[:port] as a Host header may carry it: nothing that could break out of a URL. */
const HOST = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]{1,253})(?::\d{1,5})?$/;

export class TrustedProxies {
  private readonly list = new BlockList();
  readonly empty: boolean;

  constructor(entries: readonly string[]) {
    for (const entry of entries) {
      const slash = entry.indexOf('/');
      const address = slash < 0 ? entry : entry.slice(0, slash);
      const type = isIP(address) === 6 ? 'ipv6' : 'ipv4';
      if (slash < 0) this.list.addAddress(address, type);
      else this.list.addSubnet(address, Number(entry.slice(slash + 1)), type);
    }
    this.empty = entries.length === 0;
  }

  trusts(address: string): boolean {
    if (this.empty || address === '') return false;
    const a = plain(address);
    return this.list.check(a, isIP(a) === 6 ? 'ipv6' : 'ipv4');
  }

  /** The request's origin; `encrypted` is whether our own socket is TLS. */
  origin(req: IncomingMessage, encrypted: boolean): Origin {
    const peer = plain(req.socket.remoteAddress ?? '');
    const hostHeader = req.headers.host ?? '';
    const own: Origin = { client: peer, proto: encrypted ? 'https' : 'http', host: HOST.test(hostHeader) ? hostHeader : '' };
    if (!this.trusts(peer)) return own;
    // X-Forwarded-For: client, proxy1, proxy2 — walk from the right past our own proxies.
    const hops = headerValue(req.headers['x-forwarded-for'])
      .split(',')
      .map((h) => h.trim())
      .filter((h) => h !== '');
    let client = peer;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hopAddress(hops[i] as string);
      // A hop we cannot read ends the walk: what is left of it may be what the client wrote,
      // so the client is taken to be the last proxy we could read (never a claim of the client's).
      if (hop === undefined) break;
      client = hop;
      if (!this.trusts(client)) break;
    }
    const proto = headerValue(req.headers['x-forwarded-proto']).split(',')[0]?.trim().toLowerCase();
    const host = headerValue(req.headers['x-forwarded-host']).split(',')[0]?.trim() ?? '';
    return {
      client,
      proto: proto === 'https' ? 'https' : proto === 'http' ? 'http' : own.proto,
      host: host !== '' && HOST.test(host) ? host : own.host,
    };
  }
}

const headerValue = (value: string | string[] | undefined): string => (Array.isArray(value) ? value.join(',') : (value ?? ''));
