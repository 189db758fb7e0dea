// TrustedProxies: who a request is from, and the scheme and host it used;
// X-Forwarded-* believed only from the configured reverse proxies.
import type { IncomingMessage } from 'node:http';

import t from 'tap';

import { TrustedProxies } from '../../src/http/forwarded.js';

function request(remoteAddress: string | undefined, headers: Record<string, string | string[]> = {}): IncomingMessage {
  return { socket: { remoteAddress }, headers } as unknown as IncomingMessage;
}

const FORWARDED = {
  host: 'stevedore:5000',
  'x-forwarded-for': '203.0.113.9',
  'x-forwarded-proto': 'https',
  'x-forwarded-host': 'mirror.example.com',
};

t.test('an empty list trusts nobody', async (t) => {
  const proxies = new TrustedProxies([]);
  t.equal(proxies.empty, true);
  for (const address of ['127.0.0.1', '::1', '10.0.0.1', '']) t.equal(proxies.trusts(address), false, address);
  t.same(proxies.origin(request('10.0.0.1', FORWARDED), false), { client: '10.0.0.1', proto: 'http', host: 'stevedore:5000' });
  t.same(proxies.origin(request('10.0.0.1', FORWARDED), true), { client: '10.0.0.1', proto: 'https', host: 'stevedore:5000' }, 'our own TLS');
});

t.test('X-Forwarded-* from an untrusted peer are ignored', async (t) => {
  const proxies = new TrustedProxies(['10.0.0.0/8']);
  t.equal(proxies.empty, false);
  t.same(proxies.origin(request('192.0.2.7', FORWARDED), false), { client: '192.0.2.7', proto: 'http', host: 'stevedore:5000' });
  t.same(proxies.origin(request('192.0.2.7', { ...FORWARDED, 'x-forwarded-proto': 'http' }), true).proto, 'https', 'nor can it downgrade');
  t.same(proxies.origin(request(undefined, FORWARDED), false), { client: '', proto: 'http', host: 'stevedore:5000' }, 'a socket without an address');
});

t.test('from a trusted peer, the rightmost untrusted X-Forwarded-For hop is the client', async (t) => {
  const proxies = new TrustedProxies(['10.0.0.0/8']);
  t.same(proxies.origin(request('10.1.2.3', FORWARDED), false), { client: '203.0.113.9', proto: 'https', host: 'mirror.example.com' });
  // The client wrote the first two itself; the proxy appended the address it saw.
  const spoofed = request('10.1.2.3', { 'x-forwarded-for': '1.1.1.1, 10.9.9.9, 198.51.100.4' });
  t.equal(proxies.origin(spoofed, false).client, '198.51.100.4');
  t.equal(proxies.origin(request('10.1.2.3', { 'x-forwarded-for': ['1.1.1.1', '198.51.100.4'] }), false).client, '198.51.100.4', 'repeated headers');
  t.equal(proxies.origin(request('10.1.2.3'), false).client, '10.1.2.3', 'no header: the proxy itself');
  t.equal(proxies.origin(request('10.1.2.3', { 'x-forwarded-for': '' }), false).client, '10.1.2.3');
  t.equal(proxies.origin(request('10.1.2.3', { 'x-forwarded-for': 'unknown' }), false).client, '10.1.2.3', 'nothing readable: the proxy');
});

t.test('a chain of trusted proxies', async (t) => {
  const proxies = new TrustedProxies(['10.0.0.0/8', '172.16.0.1']);
  const chained = request('10.0.0.2', { 'x-forwarded-for': '6.6.6.6, 203.0.113.9, 172.16.0.1, 10.0.0.1' });
  t.equal(proxies.origin(chained, false).client, '203.0.113.9', 'walks past every trusted hop, stops at the first untrusted one');
  const allTrusted = request('10.0.0.2', { 'x-forwarded-for': '10.0.0.5, 172.16.0.1' });
  t.equal(proxies.origin(allTrusted, false).client, '10.0.0.5', 'all hops trusted: the leftmost');
});

t.test('hops a trusted proxy wrote with a port, and hops nobody can read', async (t) => {
  const proxies = new TrustedProxies(['10.0.0.0/8']);
  t.equal(proxies.origin(request('10.0.0.2', { 'x-forwarded-for': '203.0.113.9:51234' }), false).client, '203.0.113.9');
  t.equal(proxies.origin(request('10.0.0.2', { 'x-forwarded-for': '[2001:db8::7]:443' }), false).client, '2001:db8::7');
  t.equal(proxies.origin(request('10.0.0.2', { 'x-forwarded-for': '[2001:db8::7]' }), false).client, '2001:db8::7');
  // The client sent `6.6.6.6`; what the proxy appended cannot be read: the client's claim is not taken instead.
  const unreadable = request('10.0.0.2', { 'x-forwarded-for': '6.6.6.6, client.example' });
  t.equal(proxies.origin(unreadable, false).client, '10.0.0.2');
  const behindTrusted = request('10.0.0.2', { 'x-forwarded-for': '6.6.6.6, garbage, 10.0.0.1' });
  t.equal(proxies.origin(behindTrusted, false).client, '10.0.0.1');
  t.equal(proxies.origin(request('10.0.0.2', { 'x-forwarded-for': '6.6.6.6,, 203.0.113.9 ,' }), false).client, '203.0.113.9', 'empty entries are skipped');
});

t.test('IPv4-mapped IPv6 peers match IPv4 blocks', async (t) => {
  const proxies = new TrustedProxies(['10.0.0.0/8', '127.0.0.1']);
  t.equal(proxies.trusts('::ffff:10.0.0.1'), true);
  t.equal(proxies.trusts('::ffff:127.0.0.1'), true);
  t.equal(proxies.trusts('::ffff:192.0.2.1'), false);
  const origin = proxies.origin(request('::ffff:10.0.0.1', { 'x-forwarded-for': '::ffff:203.0.113.9' }), false);
  t.equal(origin.client, '203.0.113.9', 'hops are written plain too');
  t.equal(proxies.origin(request('::ffff:192.0.2.1', FORWARDED), false).client, '192.0.2.1', 'an untrusted peer, written plain');
});

t.test('IPv6 blocks and addresses', async (t) => {
  const proxies = new TrustedProxies(['fd00::/8', '::1']);
  t.equal(proxies.trusts('fd12:3456::1'), true);
  t.equal(proxies.trusts('::1'), true);
  t.equal(proxies.trusts('fe80::1'), false);
  t.equal(proxies.trusts('10.0.0.1'), false);
  t.equal(proxies.origin(request('fd00::5', { 'x-forwarded-for': '2001:db8::1, fd00::9' }), false).client, '2001:db8::1');
  t.equal(proxies.origin(request('2001:db8::2', FORWARDED), false).client, '2001:db8::2');
});

t.test('X-Forwarded-Proto: only http or https', async (t) => {
  const proxies = new TrustedProxies(['10.0.0.1']);
  const proto = (value: string, encrypted = false) => proxies.origin(request('10.0.0.1', { 'x-forwarded-proto': value }), encrypted).proto;
  t.equal(proto('https'), 'https');
  t.equal(proto('HTTPS'), 'https');
  t.equal(proto('http', true), 'http', 'a TLS-terminating proxy may speak plain http to the client… as it says');
  t.equal(proto('https, http'), 'https', 'the outermost hop');
  t.equal(proto('javascript'), 'http', 'anything else: our own socket');
  t.equal(proto('ftp', true), 'https');
  t.equal(proto(''), 'http');
});

t.test('X-Forwarded-Host with garbage falls back to the Host header', async (t) => {
  const proxies = new TrustedProxies(['10.0.0.1']);
  const host = (forwarded: string, own = 'stevedore:5000') =>
    proxies.origin(request('10.0.0.1', { host: own, 'x-forwarded-host': forwarded }), false).host;
  t.equal(host('mirror.example.com'), 'mirror.example.com');
  t.equal(host('mirror.example.com:8443'), 'mirror.example.com:8443');
  t.equal(host('[2001:db8::1]:443'), '[2001:db8::1]:443');
  t.equal(host('first.example, second.example'), 'first.example');
  for (const garbage of ['evil.com/path', 'a b', '"x"', 'evil.com?x=1', 'evil.com#x', 'user@evil.com', 'evil.com:99999x', 'a\\b', '']) {
    t.equal(host(garbage), 'stevedore:5000', JSON.stringify(garbage));
  }
  t.equal(host('evil.com/path', 'bad host'), '', 'both bad: none');
});

t.test('a Host header that is garbage is no host', async (t) => {
  const proxies = new TrustedProxies([]);
  const host = (value: string | undefined) => proxies.origin(request('192.0.2.1', value === undefined ? {} : { host: value }), false).host;
  t.equal(host('registry.example:5000'), 'registry.example:5000');
  t.equal(host('[::1]:5000'), '[::1]:5000');
  t.equal(host('127.0.0.1'), '127.0.0.1');
  t.equal(host(undefined), '');
  for (const garbage of ['evil.com/path', 'a b', '"x"', 'x:y', '[::1', 'host:123456', `${'a'.repeat(254)}`, 'ex<ample']) {
    t.equal(host(garbage), '', JSON.stringify(garbage));
  }
});
