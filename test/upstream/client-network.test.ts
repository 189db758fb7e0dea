// UpstreamClient and the network: blob redirects to a CDN, socket reuse,
// unreachable upstreams and the circuit breaker, timeouts, aborts.
import t from 'tap';
import { RegistryError } from '../../src/registry/errors.js';
import { failure, makeClient, send, startFake, text } from './fixtures/fakes.js';

const PASSWORD = 'pa55-w0rd!';
const BASIC = `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}`;
const DIGEST = `sha256:${'b'.repeat(64)}`;
const BLOB = 'blob-bytes-0123456789';


t.test('(d) blob redirects: followed, without the registry Authorization on another host', async (t) => {
  const cdn = await startFake(t, (req, res) => {
    if (req.headers.authorization !== undefined) return send(res, 400, 'authorization leaked to the CDN');
    const range = req.headers.range;
    if (req.method === 'HEAD') return send(res, 200, '', { 'content-length': String(BLOB.length) });
    if (range === 'bytes=5-') return send(res, 206, BLOB.slice(5), { 'content-range': `bytes 5-${BLOB.length - 1}/${BLOB.length}` });
    send(res, 200, BLOB);
  });
  const registry = await startFake(t, (req, res) => {
    if (req.headers.authorization !== BASIC) return send(res, 401, '', { 'www-authenticate': 'Basic realm="r"' });
    if (req.url === `/v2/a/blobs/${DIGEST}`) return send(res, 307, 'moved', { location: `/internal/${DIGEST}` });
    if (req.url === `/internal/${DIGEST}`) return send(res, 302, '', { location: `${cdn.url}/data/${DIGEST}?X-Signature=s3cr3t` });
    if (req.url === '/v2/loop/blobs/' + DIGEST) return send(res, 307, '', { location: `/v2/loop/blobs/${DIGEST}` });
    if (req.url === '/v2/nowhere/blobs/' + DIGEST) return send(res, 307, '');
    if (req.url === '/v2/ftp/blobs/' + DIGEST) return send(res, 307, '', { location: 'ftp://example.com/x' });
    if (req.url === '/v2/a/manifests/moved') return send(res, 301, '', { location: `${cdn.url}/elsewhere` });
    send(res, 404, '');
  });
  const { client, log } = makeClient(t, registry.url, { username: 'alice', password: PASSWORD });

  const got = await client.request({ method: 'GET', repository: 'a', kind: 'blobs', reference: DIGEST, headers: { range: 'bytes=5-' } });
  t.equal(got.status, 206);
  t.equal(await text(got.body), BLOB.slice(5));
  t.equal(got.url, `${registry.url}/v2/a/blobs/${DIGEST}`, 'the signed redirect URL is not handed out');
  t.same(
    registry.seen.map((s) => [s.url, s.headers.authorization]),
    [
      [`/v2/a/blobs/${DIGEST}`, undefined],
      [`/v2/a/blobs/${DIGEST}`, BASIC],
      [`/internal/${DIGEST}`, BASIC],
    ],
    'same-origin hops keep the credentials',
  );
  t.equal(cdn.seen.length, 1);
  t.equal(cdn.seen[0]?.headers.authorization, undefined, 'the CDN received no Authorization header');
  t.equal(cdn.seen[0]?.headers.range, 'bytes=5-', 'Range is forwarded');
  t.equal(cdn.seen[0]?.headers['user-agent'], 'stevedore/0.1.0');

  const head = await client.request({ method: 'HEAD', repository: 'a', kind: 'blobs', reference: DIGEST });
  t.equal(head.status, 200, 'HEAD follows too, with HEAD');
  t.equal(cdn.seen.at(-1)?.method, 'HEAD');

  const again = await client.request({ method: 'GET', repository: 'a', kind: 'blobs', reference: DIGEST });
  t.equal(await text(again.body), BLOB);
  t.equal(registry.seen.at(-2)?.url, `/v2/a/blobs/${DIGEST}`, 'the redirect is asked for again: never cached');

  const loop = await failure(client.request({ method: 'GET', repository: 'loop', kind: 'blobs', reference: DIGEST }));
  t.equal(loop.code, 'UPSTREAM_ERROR');
  t.match(loop.message, /more than 5 redirects/);
  t.equal(registry.seen.filter((s) => s.url === `/v2/loop/blobs/${DIGEST}`).length, 6, 'the request and five hops');
  t.match((await failure(client.request({ method: 'GET', repository: 'nowhere', kind: 'blobs', reference: DIGEST }))).message, /without a Location/);
  t.match((await failure(client.request({ method: 'GET', repository: 'ftp', kind: 'blobs', reference: DIGEST }))).message, /ftp: Location/);

  const manifest = await client.request({ method: 'GET', repository: 'a', kind: 'manifests', reference: 'moved' });
  t.equal(manifest.status, 301, 'only blob redirects are followed');
  t.equal(manifest.headers.location, `${cdn.url}/elsewhere`);
  t.notOk(log.lines.join('\n').includes('s3cr3t'), 'signed URLs are not logged');
});

t.test('non-2xx bodies are consumed: the socket is reused', async (t) => {
  const fake = await startFake(t, (req, res) => {
    if (req.url?.includes('/blobs/')) return send(res, 404, 'x'.repeat(2_000_000));
    // Larger than undici's buffer: an unread body would pin its socket.
    send(res, 401, 'y'.repeat(200_000), { 'www-authenticate': 'Basic realm="r"' });
  });
  const { client } = makeClient(t, fake.url);
  for (let i = 0; i < 10; i++) {
    const res = await client.request({ method: 'GET', repository: 'a', kind: 'manifests', reference: 'latest' });
    t.equal(res.status, 401); // body deliberately not read
  }
  // undici may open a second socket while the first is being released; a held body would pin one socket per request.
  t.ok(fake.connections() <= 2, `ten requests, ${fake.connections()} connection(s)`);
  const big = await client.request({ method: 'GET', repository: 'a', kind: 'blobs', reference: DIGEST });
  t.equal(big.status, 404);
  t.equal((await text(big.body)).length, 64 * 1024, 'a large error body is cut at 64 KiB');
  t.equal(fake.seen.length, 11);
});

t.test('(e) unreachable upstream: UNAVAILABLE, then the breaker opens and fails fast', async (t) => {
  const gone = await startFake(t, () => undefined);
  await gone.close();
  const clock = { now: 5_000_000 };
  const { client, log } = makeClient(t, gone.url, { now: () => clock.now, username: 'alice', password: PASSWORD });
  const get = (): Promise<RegistryError> => failure(client.request({ method: 'GET', repository: 'a', kind: 'manifests', reference: 'latest' }));

  for (let i = 0; i < 3; i++) {
    const err = await get();
    t.equal(err.code, 'UNAVAILABLE');
    t.match(err.message, /^upstream fake unreachable: .*ECONNREFUSED/);
  }
  t.ok(client.isOffline());
  t.ok(log.messages().includes('upstream offline'));

  // Something listens on the port now, but the breaker keeps requests off the network.
  const back = await startFake(t, (_req, res) => send(res, 200, '{}'), gone.port);
  const fast = await get();
  t.equal(fast.code, 'UNAVAILABLE');
  t.match(fast.message, /offline after repeated failures, next attempt in 30s/);
  t.equal(fast.retryAfter, '30');
  t.equal(back.seen.length, 0, 'no request reached the network');

  clock.now += 30_000;
  const probe = await client.request({ method: 'GET', repository: 'a', kind: 'manifests', reference: 'latest' });
  t.equal(probe.status, 200);
  await text(probe.body);
  t.notOk(client.isOffline());
  t.equal(back.seen.length, 1);
  t.ok(log.messages().includes('upstream back online'));
  t.notOk(log.lines.join('\n').includes(PASSWORD));
});

t.test('a 5xx about one object is tried once more and passed on; only a failing base takes the upstream offline', async (t) => {
  let status = 429;
  let base = 200;
  const fake = await startFake(t, (req, res) => {
    if (req.url === '/v2/') return send(res, base, '{}');
    send(res, status, '', status === 429 ? { 'retry-after': '7' } : {});
  });
  const clock = { now: 1_000_000 };
  const { client, log } = makeClient(t, fake.url, { breaker: { maxFails: 2, failTimeoutMs: 10_000 }, now: () => clock.now });
  const req = { method: 'GET', repository: 'a', kind: 'manifests', reference: 'latest' } as const;
  const objects = (): number => fake.seen.filter((s) => s.url !== '/v2/').length;
  const baseChecks = (): number => fake.seen.filter((s) => s.url === '/v2/').length;
  const settled = async (want: () => boolean): Promise<void> => {
    const deadline = Date.now() + 5_000;
    while (!want() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  };

  const limited = await client.request(req);
  t.equal(limited.status, 429);
  t.equal(limited.headers['retry-after'], '7', '429 is passed on with Retry-After');
  for (let i = 0; i < 3; i++) {
    const refused = await failure(client.request(req));
    t.equal(refused.code, 'TOOMANYREQUESTS', 'then refused here, without asking, until Retry-After has passed');
    t.match(refused.retryAfter, /^[1-7]$/);
  }
  t.equal(objects(), 1, '429 is not retried, and not asked again');
  t.notOk(client.isOffline(), '429 is no failure of the upstream');
  clock.now += 7_000;
  t.equal((await client.request(req)).status, 429, 'after Retry-After it asks again');
  t.equal(objects(), 2);
  clock.now += 7_000;

  status = 503;
  for (let i = 0; i < 5; i++) {
    t.equal((await client.request(req)).status, 503, 'a 5xx is passed on: the caller decides what it means');
    clock.now += 6_000;
    await settled(() => baseChecks() >= i + 1);
  }
  t.equal(objects(), 2 + 10, 'each 5xx was tried once more');
  t.equal(baseChecks(), 5, 'and made the client look at /v2/');
  t.notOk(client.isOffline(), '/v2/ answers: the upstream is up, one object is failing');

  base = 502;
  t.equal((await client.request(req)).status, 503);
  await settled(() => baseChecks() === 6);
  clock.now += 6_000;
  t.equal((await client.request(req)).status, 503);
  await settled(() => client.isOffline());
  t.ok(client.isOffline(), 'the base failing too takes the upstream offline');
  t.ok(log.messages().includes('upstream offline'));
  const fast = await failure(client.request(req));
  t.equal(fast.code, 'UNAVAILABLE', 'requests fail fast while offline');
  t.match(fast.retryAfter, /^\d+$/);

  base = 200;
  status = 200;
  clock.now += 10_000;
  t.equal((await client.request(req)).status, 200, 'after the probe interval a request goes through as the probe');
  t.notOk(client.isOffline(), 'and its success brings the upstream back');
  t.ok(log.messages().includes('upstream back online'));
});

t.test('timeouts become UNAVAILABLE; aborts are passed through and do not count', async (t) => {
  const fake = await startFake(t, () => undefined); // accepts, never answers
  const { client } = makeClient(t, fake.url, { timeouts: { connectMs: 1000, headersMs: 150, bodyMs: 1000 }, breaker: { maxFails: 1 } });
  const controller = new AbortController();
  const pending = client.request({ method: 'GET', repository: 'a', kind: 'manifests', reference: 'x', signal: controller.signal });
  controller.abort();
  const aborted = await pending.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.notOk(aborted instanceof RegistryError, 'an abort is not an upstream error');
  t.notOk(client.isOffline(), 'nor a breaker failure');

  const err = await failure(client.request({ method: 'GET', repository: 'a', kind: 'manifests', reference: 'x' }));
  t.equal(err.code, 'UNAVAILABLE');
  t.match(err.message, /^upstream fake unreachable: .*[Tt]imeout/);
  t.ok(client.isOffline());
});
