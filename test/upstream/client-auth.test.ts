// UpstreamClient against fake registries: anonymous, basic-auth and bearer
// upstreams, and Docker Hub's library/ mapping.
import t from 'tap';
import { RegistryError } from '../../src/registry/errors.js';
import { makeClient, send, startFake, text, type Fake, type Teardown } from './fixtures/fakes.js';

const PASSWORD = 'pa55-w0rd!';
const BASIC = `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}`;
const MANIFEST = '{"schemaVersion":2}';
const DIGEST = `sha256:${'a'.repeat(64)}`;
const header = (value: string | string[] | undefined): string | undefined => (typeof value === 'string' ? value : undefined);

t.test('(a) anonymous upstream', async (t) => {
  const fake = await startFake(t, (req, res) => {
    if (req.url === '/v2/team/app/manifests/latest') {
      send(res, 200, req.method === 'HEAD' ? '' : MANIFEST, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'docker-content-digest': DIGEST });
    } else if (req.url?.startsWith('/v2/team/app/tags/list')) {
      send(res, 200, '{"tags":["latest"]}');
    } else {
      send(res, 404, '{"errors":[{"code":"MANIFEST_UNKNOWN"}]}');
    }
  });
  const { client } = makeClient(t, `${fake.url}/`);
  t.equal(client.name, 'fake');

  const got = await client.request({
    method: 'GET',
    repository: 'team/app',
    kind: 'manifests',
    reference: 'latest',
    headers: { Accept: 'application/vnd.oci.image.manifest.v1+json', Authorization: 'Basic client-creds' },
  });
  t.equal(got.status, 200);
  t.equal(got.headers['docker-content-digest'], DIGEST);
  t.equal(got.url, `${fake.url}/v2/team/app/manifests/latest`);
  t.equal(await text(got.body), MANIFEST);
  const seen = fake.seen[0];
  t.equal(seen?.headers['user-agent'], 'stevedore/0.1.0', 'version from package.json');
  t.equal(seen?.headers.accept, 'application/vnd.oci.image.manifest.v1+json', 'caller headers forwarded');
  t.equal(seen?.headers.authorization, undefined, "a client's own credentials are never forwarded");

  const head = await client.request({ method: 'HEAD', repository: 'team/app', kind: 'manifests', reference: 'latest' });
  t.equal(head.status, 200);
  t.equal(await text(head.body), '', 'HEAD has an empty body');

  const missing = await client.request({ method: 'GET', repository: 'team/app', kind: 'manifests', reference: 'nope' });
  t.equal(missing.status, 404);
  t.match(await text(missing.body), /MANIFEST_UNKNOWN/, 'error bodies are kept (already read) for the caller');

  const tags = await client.request({ method: 'GET', repository: 'team/app', kind: 'tags', reference: '', query: { n: '10', last: 'a' } });
  t.equal(tags.status, 200);
  t.equal(fake.seen.at(-1)?.url, '/v2/team/app/tags/list?n=10&last=a');
  await text(tags.body);

  await t.rejects(client.request({ method: 'GET', repository: '../etc', kind: 'blobs', reference: DIGEST }), { code: 'NAME_INVALID' });
  await t.rejects(client.request({ method: 'GET', repository: 'a', kind: 'manifests', reference: 'x/../../y' }), { code: 'TAG_INVALID' });
  t.equal(fake.seen.length, 4, 'invalid names never reach the upstream');
});

t.test('(b) basic-auth upstream', async (t) => {
  const fake = await startFake(t, (req, res) => {
    if (req.headers.authorization !== BASIC) return send(res, 401, '{"errors":[{"code":"UNAUTHORIZED"}]}', { 'www-authenticate': 'Basic realm="Registry Realm"' });
    send(res, 200, MANIFEST);
  });
  const { client, log } = makeClient(t, fake.url, { username: 'alice', password: PASSWORD });
  const first = await client.request({ method: 'GET', repository: 'a', kind: 'manifests', reference: 'v1' });
  t.equal(first.status, 200);
  t.equal(await text(first.body), MANIFEST);
  t.same(fake.seen.map((s) => s.headers.authorization), [undefined, BASIC], 'anonymous, then 401, then credentials');

  const second = await client.request({ method: 'GET', repository: 'b/c', kind: 'manifests', reference: 'v2' });
  await text(second.body);
  t.equal(fake.seen.length, 3, 'the second request costs one round trip');
  t.equal(fake.seen[2]?.headers.authorization, BASIC, 'credentials sent preemptively');
  t.ok(log.messages().includes('upstream authentication scheme'));

  const wrong = makeClient(t, fake.url, { username: 'alice', password: 'not-it' });
  const refused = await wrong.client.request({ method: 'GET', repository: 'a', kind: 'manifests', reference: 'v1' });
  t.equal(refused.status, 401, 'wrong credentials: the 401 goes to the caller (it maps it to DENIED)');
  await text(refused.body);
  t.equal(fake.seen.length, 5, 'one retry only');

  const anonymous = makeClient(t, fake.url);
  const denied = await anonymous.client.request({ method: 'GET', repository: 'a', kind: 'manifests', reference: 'v1' });
  t.equal(denied.status, 401, 'no credentials configured: no retry');
  t.equal(fake.seen.length, 6);
  const logs = [...log.lines, ...wrong.log.lines].join('\n');
  t.notOk(logs.includes(PASSWORD) || logs.includes(BASIC.slice(6)), 'no credentials in logs');
});

interface BearerUpstream {
  registry: Fake;
  tokenServer: Fake;
  tokenFetches: () => number;
}

async function bearerUpstream(t: Teardown, expiresIn = 60): Promise<BearerUpstream> {
  const issued = new Set<string>();
  let fetches = 0;
  const tokenServer = await startFake(t, (req, res) => {
    fetches++;
    if (req.headers.authorization !== BASIC) return send(res, 401, '{"details":"incorrect username or password"}');
    const token = `tok-${fetches}`;
    issued.add(token);
    send(res, 200, JSON.stringify({ token, expires_in: expiresIn }), { 'content-type': 'application/json' });
  });
  const registry = await startFake(t, (req, res) => {
    const auth = header(req.headers.authorization);
    if (auth === undefined || !issued.has(auth.replace(/^Bearer /, ''))) {
      const repo = /^\/v2\/(.+)\/manifests\//.exec(req.url ?? '')?.[1] ?? '';
      return send(res, 401, '{"errors":[{"code":"UNAUTHORIZED"}]}', {
        'www-authenticate': `Bearer realm="${tokenServer.url}/token",service="fake-registry",scope="repository:${repo}:pull"`,
      });
    }
    send(res, 200, MANIFEST);
  });
  return { registry, tokenServer, tokenFetches: () => fetches };
}

t.test('(c) bearer upstream: one token for many requests, until it expires', async (t) => {
  const up = await bearerUpstream(t, 60);
  const clock = { now: 1_700_000_000_000 };
  const { client, log } = makeClient(t, up.registry.url, { username: 'alice', password: PASSWORD, now: () => clock.now });
  const get = async (repository = 'team/app'): Promise<number> => {
    const res = await client.request({ method: 'GET', repository, kind: 'manifests', reference: 'latest' });
    t.equal(await text(res.body), MANIFEST);
    return res.status;
  };

  t.equal(await get(), 200);
  t.equal(up.tokenFetches(), 1);
  t.equal(up.registry.seen.length, 2, 'anonymous 401, then with the token');
  const tokenUrl = new URL(up.tokenServer.seen[0]?.url ?? '', 'http://x');
  t.equal(tokenUrl.searchParams.get('service'), 'fake-registry');
  t.equal(tokenUrl.searchParams.get('scope'), 'repository:team/app:pull');

  for (let i = 0; i < 5; i++) t.equal(await get(), 200);
  t.equal(up.tokenFetches(), 1, 'token reused');
  t.equal(up.registry.seen.length, 7, 'no 401 round trip once the scheme is known');

  clock.now += 61_000;
  t.equal(await get(), 200);
  t.equal(up.tokenFetches(), 2, 'refetched after expires_in');
  t.equal(up.registry.seen.length, 8, 'still no 401: the new token was fetched before the request');

  t.equal(await get('other/repo'), 200);
  t.equal(up.tokenFetches(), 3, 'another repository, another scope');
  t.equal(new URL(up.tokenServer.seen[2]?.url ?? '', 'http://x').searchParams.get('scope'), 'repository:other/repo:pull');
  t.equal(up.registry.seen.length, 9);
  const logs = log.lines.join('\n');
  t.notOk(/tok-\d/.test(logs) || logs.includes(PASSWORD), 'tokens and credentials never logged');
});

t.test('(c) bearer upstream: concurrent first requests share one token fetch', async (t) => {
  const up = await bearerUpstream(t);
  const { client } = makeClient(t, up.registry.url, { username: 'alice', password: PASSWORD });
  const all = await Promise.all(
    Array.from({ length: 10 }, async () => {
      const res = await client.request({ method: 'GET', repository: 'team/app', kind: 'manifests', reference: 'latest' });
      await text(res.body);
      return res.status;
    }),
  );
  t.same(new Set(all), new Set([200]));
  t.equal(up.tokenFetches(), 1);
});

t.test('(c) bearer upstream with invalid credentials: UNAUTHORIZED without the password', async (t) => {
  const up = await bearerUpstream(t);
  const { client, log } = makeClient(t, up.registry.url, { username: 'alice', password: 'wrong-Pa55word' });
  const err = await client.request({ method: 'GET', repository: 'team/app', kind: 'manifests', reference: 'latest' }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof RegistryError);
  t.equal((err as RegistryError).code, 'UNAUTHORIZED');
  const shown = `${(err as RegistryError).message} ${JSON.stringify((err as RegistryError).detail)} ${log.lines.join('\n')}`;
  t.notOk(shown.includes('wrong-Pa55word'), 'the password is not in the message, detail or logs');
  t.notOk(shown.includes(Buffer.from('alice:wrong-Pa55word').toString('base64')), 'nor its base64');
  t.match((err as RegistryError).message, /token server http:\/\/127\.0\.0\.1:\d+\/token of upstream fake refused the configured credentials/);
  t.notOk(client.isOffline(), 'an auth failure is not an outage');
});

t.test('(c) a revoked token is replaced once; insufficient_scope is handed back', async (t) => {
  let fetches = 0;
  const tokenServer = await startFake(t, (_req, res) => send(res, 200, JSON.stringify({ token: `tok-${++fetches}`, expires_in: 3600 })));
  const registry = await startFake(t, (req, res) => {
    const challenge = `Bearer realm="${tokenServer.url}/token",service="svc"`;
    if (req.url?.includes('/secret/')) return send(res, 401, '', { 'www-authenticate': `${challenge},error="insufficient_scope"` });
    if (req.headers.authorization !== `Bearer tok-${fetches}` || fetches < 2) return send(res, 401, '', { 'www-authenticate': challenge });
    send(res, 200, MANIFEST);
  });
  const { client } = makeClient(t, registry.url);
  // tok-1 is refused as if revoked: the client asks for a new token once and retries.
  const first = await client.request({ method: 'GET', repository: 'a', kind: 'manifests', reference: 'v1' });
  t.equal(first.status, 401, 'anonymous → tok-1 → refused: handed back after one retry');
  const second = await client.request({ method: 'GET', repository: 'a', kind: 'manifests', reference: 'v1' });
  t.equal(second.status, 200, 'preemptive tok-1 refused → tok-2 accepted');
  t.equal(fetches, 2);
  await text(second.body);
  const secret = await client.request({ method: 'GET', repository: 'secret/x', kind: 'manifests', reference: 'v1' });
  t.equal(secret.status, 401);
  t.equal(fetches, 3, 'insufficient_scope with a fresh token: no second token fetch');
});

t.test('(f) names go upstream as given (Docker Hub\'s library/ is added by routing), in the URL and the token scope', async (t) => {
  const up = await bearerUpstream(t);
  const { client } = makeClient(t, up.registry.url, { username: 'alice', password: PASSWORD });
  const res = await client.request({ method: 'GET', repository: 'library/alpine', kind: 'manifests', reference: '3.19' });
  t.equal(res.status, 200);
  await text(res.body);
  t.equal(res.url, `${up.registry.url}/v2/library/alpine/manifests/3.19`);
  t.equal(up.registry.seen[0]?.url, '/v2/library/alpine/manifests/3.19');
  t.equal(new URL(up.tokenServer.seen[0]?.url ?? '', 'http://x').searchParams.get('scope'), 'repository:library/alpine:pull');
  const nested = await client.request({ method: 'HEAD', repository: 'bitnami/redis', kind: 'manifests', reference: 'latest' });
  t.equal(nested.status, 200);
  t.equal(up.registry.seen.at(-1)?.url, '/v2/bitnami/redis/manifests/latest', 'names with a / are left alone');

  const plain = await startFake(t, (_req, res) => send(res, 200, ''));
  const notHub = makeClient(t, plain.url);
  await text((await notHub.client.request({ method: 'GET', repository: 'alpine', kind: 'manifests', reference: 'x' })).body);
  t.equal(plain.seen[0]?.url, '/v2/alpine/manifests/x');
});
