// The bearer token cache against a fake token server: the request it sends,
// expiry on an injected clock, single flight, and errors free of secrets.
import t from 'tap';
import { Agent } from 'undici';
import { RegistryError } from '../../src/registry/errors.js';
import { parseTokenResponse, REFUSAL_MEMORY_MS, TokenCache, type TokenCacheOptions } from '../../src/upstream/tokens.js';
import { captureLogger, failure, send, startFake, type Teardown } from './fixtures/fakes.js';

const PASSWORD = 's3cret-Pa55';
const BASIC = `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}`;
const T0 = Date.parse('2024-01-01T00:00:00Z');

interface Setup {
  cache: TokenCache;
  clock: { now: number };
  fetches: () => number;
  realm: string;
  seen: Array<{ url: string; authorization: string | undefined }>;
  log: ReturnType<typeof captureLogger>;
}

type Answer = (count: number) => { status: number; body: string } | Promise<{ status: number; body: string }>;

async function setup(t: Teardown, answer: Answer, options: Partial<TokenCacheOptions> = {}): Promise<Setup> {
  let count = 0;
  const fake = await startFake(t, (_req, res) => {
    count++;
    void Promise.resolve(answer(count)).then(({ status, body }) => send(res, status, body, { 'content-type': 'application/json' }));
  });
  const dispatcher = new Agent();
  t.teardown(() => dispatcher.close());
  const clock = { now: T0 };
  const log = captureLogger();
  const cache = new TokenCache({
    upstream: 'hub',
    dispatcher,
    userAgent: 'stevedore/test',
    logger: log.logger,
    credentials: { username: 'alice', password: PASSWORD },
    allowInsecureRealm: true,
    now: () => clock.now,
    ...options,
  });
  const seen = (): Setup['seen'] =>
    fake.seen.map((s) => ({ url: s.url, authorization: typeof s.headers.authorization === 'string' ? s.headers.authorization : undefined }));
  return {
    cache,
    clock,
    fetches: () => count,
    realm: `${fake.url}/token`,
    get seen() {
      return seen();
    },
    log,
  };
}


const ok = (token: string, extra: Record<string, unknown> = {}): { status: number; body: string } => ({
  status: 200,
  body: JSON.stringify({ token, ...extra }),
});

t.test('the token request follows the Docker token spec', async (t) => {
  const s = await setup(t, (n) => ok(`tok-${n}`));
  const token = await s.cache.get({ realm: s.realm, service: 'registry.example', scopes: ['repository:a/b:pull', 'repository:c:pull'] });
  t.equal(token, 'tok-1');
  const [first] = s.seen;
  const url = new URL(first?.url ?? '', 'http://x');
  t.equal(url.pathname, '/token');
  t.equal(url.searchParams.get('service'), 'registry.example');
  t.same(url.searchParams.getAll('scope'), ['repository:a/b:pull', 'repository:c:pull'], 'one scope parameter per scope');
  t.equal(url.searchParams.get('account'), 'alice');
  t.equal(first?.authorization, BASIC, 'basic credentials sent to the realm');
  t.notOk(s.log.lines.some((l) => l.includes('tok-1') || l.includes(PASSWORD) || l.includes(BASIC.slice(6))), 'no secret in logs');
  t.ok(s.log.messages().includes('fetched upstream token'));
});

t.test('access_token is accepted, and a realm with its own query keeps it', async (t) => {
  const s = await setup(t, () => ({ status: 200, body: JSON.stringify({ access_token: 'oauth-tok' }) }));
  t.equal(await s.cache.get({ realm: `${s.realm}?x=1`, scopes: ['repository:a:pull'] }), 'oauth-tok');
  const url = new URL(s.seen[0]?.url ?? '', 'http://x');
  t.equal(url.searchParams.get('x'), '1');
  t.equal(url.searchParams.get('service'), null, 'no service parameter when the challenge had none');
});

t.test('tokens are reused until shortly before expires_in passes', async (t) => {
  const s = await setup(t, (n) => ok(`tok-${n}`, { expires_in: 300 }));
  const key = { realm: s.realm, service: 'svc', scopes: ['repository:a:pull'] };
  t.equal(await s.cache.get(key), 'tok-1');
  s.clock.now = T0 + 200_000;
  t.equal(await s.cache.get(key), 'tok-1', 'still valid after 200 s');
  t.equal(await s.cache.get({ ...key, scopes: ['repository:a:pull'] }), 'tok-1', 'same key, new object');
  s.clock.now = T0 + 295_000;
  t.equal(await s.cache.get(key), 'tok-2', 'refetched within the margin before expiry');
  t.equal(s.fetches(), 2);
  t.equal(await s.cache.get({ ...key, scopes: ['repository:b:pull'] }), 'tok-3', 'another scope is another token');
});

t.test('expires_in defaults to 60 s', async (t) => {
  const s = await setup(t, (n) => ok(`tok-${n}`));
  const key = { realm: s.realm, scopes: ['repository:a:pull'] };
  await s.cache.get(key);
  s.clock.now = T0 + 50_000;
  t.equal(await s.cache.get(key), 'tok-1');
  s.clock.now = T0 + 61_000;
  t.equal(await s.cache.get(key), 'tok-2');
});

t.test('issued_at may shorten the lifetime, but clock skew is ignored', async (t) => {
  const early = await setup(t, (n) => ok(`tok-${n}`, { expires_in: 100, issued_at: new Date(T0 - 10_000).toISOString() }));
  const key = { realm: early.realm, scopes: ['repository:a:pull'] };
  await early.cache.get(key);
  early.clock.now = T0 + 85_000;
  t.equal(await early.cache.get(key), 'tok-2', 'issued 10 s before we asked: expires 10 s earlier');

  const skewed = await setup(t, (n) => ok(`tok-${n}`, { expires_in: 100, issued_at: new Date(T0 - 3_600_000).toISOString() }));
  const key2 = { realm: skewed.realm, scopes: ['repository:a:pull'] };
  await skewed.cache.get(key2);
  skewed.clock.now = T0 + 85_000;
  t.equal(await skewed.cache.get(key2), 'tok-1', 'a server clock an hour behind does not make every token stale');
});

t.test('single flight: 10 concurrent requests cost one fetch', async (t) => {
  const s = await setup(t, (n) => ok(`tok-${n}`));
  const key = { realm: s.realm, service: 'svc', scopes: ['repository:a:pull'] };
  const tokens = await Promise.all(Array.from({ length: 10 }, () => s.cache.get(key)));
  t.same(new Set(tokens), new Set(['tok-1']));
  t.equal(s.fetches(), 1);
});

t.test('a caller giving up does not cancel the shared fetch', async (t) => {
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const s = await setup(t, async (n) => {
    await gate;
    return ok(`tok-${n}`);
  });
  const key = { realm: s.realm, scopes: ['repository:a:pull'] };
  const controller = new AbortController();
  const impatient = s.cache.get(key, { signal: controller.signal });
  const patient = s.cache.get(key);
  controller.abort(new Error('client went away'));
  await t.rejects(impatient, { message: 'client went away' });
  release();
  t.equal(await patient, 'tok-1');
  t.equal(s.fetches(), 1);
});

t.test('a rejected token is replaced, a newer one is kept', async (t) => {
  const s = await setup(t, (n) => ok(`tok-${n}`));
  const key = { realm: s.realm, scopes: ['repository:a:pull'] };
  await s.cache.get(key);
  t.equal(await s.cache.get(key, { rejected: 'tok-1' }), 'tok-2');
  t.equal(await s.cache.get(key, { rejected: 'tok-1' }), 'tok-2', 'a stale rejection does not throw away the new token');
  t.equal(s.fetches(), 2);
});

t.test('token server errors', async (t) => {
  const refuse = await setup(t, () => ({ status: 401, body: '{"details":"incorrect username or password"}' }));
  const key = { realm: refuse.realm, service: 'svc', scopes: ['repository:a:pull'] };
  const err = await refuse.cache.get(key).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof RegistryError);
  const e = err as RegistryError;
  t.equal(e.code, 'UNAUTHORIZED');
  t.match(e.message, /refused the configured credentials for scope "repository:a:pull" \(status 401\)/);
  const everything = `${e.message} ${JSON.stringify(e.detail)} ${refuse.log.lines.join('\n')}`;
  t.notOk(everything.includes(PASSWORD) || everything.includes(BASIC.slice(6)), 'no credentials in the error or the logs');
  await t.rejects(refuse.cache.get(key), { code: 'UNAUTHORIZED' });
  t.equal(refuse.fetches(), 1, 'a refusal is remembered (see below), not asked again at once');

  const down = await setup(t, () => ({ status: 503, body: '' }));
  await t.rejects(down.cache.get({ realm: down.realm, scopes: ['x'] }), { code: 'UNAVAILABLE' }, '5xx: the token server is down');
  const limited = await setup(t, () => ({ status: 429, body: '' }));
  await t.rejects(limited.cache.get({ realm: limited.realm, scopes: ['x'] }), { code: 'TOOMANYREQUESTS' });
  const junk = await setup(t, () => ({ status: 200, body: '<html>' }));
  await t.rejects(junk.cache.get({ realm: junk.realm, scopes: ['x'] }), { code: 'UNAUTHORIZED', message: /without a usable token/ });
  const crlf = await setup(t, () => ({ status: 200, body: JSON.stringify({ token: 'a\r\nx-evil: 1' }) }));
  await t.rejects(crlf.cache.get({ realm: crlf.realm, scopes: ['x'] }), { code: 'UNAUTHORIZED' }, 'a token must be header-safe');
  await t.rejects(junk.cache.get({ realm: 'file:///etc/passwd', scopes: ['x'] }), { code: 'UNAUTHORIZED', message: /unusable token realm/ });
  const userinfo = `http://bob:hunter2@127.0.0.1:${new URL(junk.realm).port}/token`;
  const e2 = await failure(junk.cache.get({ realm: userinfo, scopes: ['x'] }));
  t.notMatch(`${e2.message} ${JSON.stringify(e2.detail)}`, /hunter2/, 'userinfo in a realm never shows');

  const gone = await startFake(t, () => undefined);
  await gone.close();
  const unreachable = await failure(junk.cache.get({ realm: `${gone.url}/token`, scopes: ['x'] }));
  t.equal(unreachable.code, 'UNAVAILABLE');
  t.match(unreachable.message, /unreachable: .*ECONNREFUSED/);
});

t.test('credentials are not sent to a plain-http realm unless the upstream is plain http', async (t) => {
  const s = await setup(t, (n) => ok(`tok-${n}`), { allowInsecureRealm: false });
  await s.cache.get({ realm: s.realm, scopes: ['repository:a:pull'] });
  t.equal(s.seen[0]?.authorization, undefined);
  t.notOk(new URL(s.seen[0]?.url ?? '', 'http://x').searchParams.has('account'));
  t.ok(s.log.messages().includes('not sending upstream credentials to a token realm over plain http'));
});

t.test('the cache is bounded', async (t) => {
  const s = await setup(t, (n) => ok(`tok-${n}`), { maxEntries: 2 });
  const key = (repo: string): { realm: string; scopes: string[] } => ({ realm: s.realm, scopes: [`repository:${repo}:pull`] });
  await s.cache.get(key('a'));
  await s.cache.get(key('b'));
  await s.cache.get(key('c'));
  t.equal(await s.cache.get(key('c')), 'tok-3');
  t.equal(await s.cache.get(key('a')), 'tok-4', 'the least recently used entry was evicted');
});

t.test('parseTokenResponse', async (t) => {
  t.same(parseTokenResponse('{"token":"a","access_token":"b","expires_in":30}'), { token: 'a', expiresInS: 30 });
  t.same(parseTokenResponse('{"token":"","access_token":"b"}'), { token: 'b', expiresInS: 60 });
  t.same(parseTokenResponse('{"token":"a","expires_in":-5}'), { token: 'a', expiresInS: 60 });
  t.same(parseTokenResponse('{"token":"a","expires_in":"300"}'), { token: 'a', expiresInS: 60 }, 'not a number');
  t.same(parseTokenResponse('{"token":"a","issued_at":"2024-01-01T00:00:00Z"}'), { token: 'a', expiresInS: 60, issuedAt: T0 });
  t.same(parseTokenResponse('{"token":"a","issued_at":"yesterday"}'), { token: 'a', expiresInS: 60 });
  for (const bad of ['', 'null', '[]', '"tok"', '{}', '{"token":42}', '{"token":"a b"}']) t.equal(parseTokenResponse(bad), undefined, bad);
});

t.test('a refusal is remembered for a while, so a wrong password does not hammer the token server', async (t) => {
  const s = await setup(t, () => ({ status: 401, body: '{"errors":[{"code":"UNAUTHORIZED"}]}' }));
  const request = { realm: s.realm, service: 'registry', scopes: ['repository:a/b:pull'] };
  for (let i = 0; i < 5; i++) t.equal((await failure(s.cache.get(request))).code, 'UNAUTHORIZED');
  t.equal(s.fetches(), 1, 'five requests, one refusal fetched');
  s.clock.now += REFUSAL_MEMORY_MS + 1;
  t.equal((await failure(s.cache.get(request))).code, 'UNAUTHORIZED');
  t.equal(s.fetches(), 2, 'asked again once the refusal is forgotten');
});
