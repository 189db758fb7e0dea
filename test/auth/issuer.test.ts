// Stevedore's own token issuer: scopes as clients ask for them, the signing
// key (created, reused, refused), and tokens that verify with jose.
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { decodeProtectedHeader, jwtVerify } from 'jose';
import t from 'tap';

import { parseScopes, TokenIssuer } from '../../src/auth/issuer.js';
import { libtrustKeyId } from '../../src/auth/keys.js';
import { parseRepositoryName } from '../../src/registry/names.js';
import { captureLogger } from '../upstream/fixtures/fakes.js';

const T0 = Date.parse('2024-06-01T12:00:00.750Z');

t.test('parseScopes: one scope, several in one parameter, repeated parameters', async (t) => {
  t.same(parseScopes(['repository:library/alpine:pull']), [{ type: 'repository', name: 'library/alpine', actions: ['pull'] }]);
  t.same(parseScopes(['repository:a:pull,push repository:b/c:pull']), [
    { type: 'repository', name: 'a', actions: ['pull', 'push'] },
    { type: 'repository', name: 'b/c', actions: ['pull'] },
  ]);
  t.same(parseScopes(['repository:a:pull', 'repository:b:push', 'registry:catalog:*']), [
    { type: 'repository', name: 'a', actions: ['pull'] },
    { type: 'repository', name: 'b', actions: ['push'] },
    { type: 'registry', name: 'catalog', actions: ['*'] },
  ]);
  t.same(parseScopes(['  repository:a:pull   repository:b:pull ']).map((s) => s.name), ['a', 'b'], 'runs of spaces');
  t.same(parseScopes(['repository:a:pull,pull,push,pull']), [{ type: 'repository', name: 'a', actions: ['pull', 'push'] }], 'actions once each');
  t.same(parseScopes([]), []);
  t.same(parseScopes(['']), []);
});

t.test('parseScopes: a resource class is accepted and dropped', async (t) => {
  t.same(parseScopes(['repository(plugin):vieux/sshfs:pull']), [{ type: 'repository', name: 'vieux/sshfs', actions: ['pull'] }]);
  t.same(parseScopes(['repository(Plugin):x:pull']), [], 'the class is lower-case letters and digits');
});

t.test('parseScopes: malformed scopes are dropped, the good ones kept', async (t) => {
  const malformed = [
    'repository',
    'repository:a',
    'repository:a:',
    'repository::pull',
    ':a:pull',
    'Repository:a:pull',
    'repository:a:PULL',
    'repository:a:pull,',
    'repository:a:,pull',
    'repository:a:pull;push',
    'repo-sitory:a:pull',
    `repository:${'a'.repeat(600)}:pull`,
  ];
  for (const scope of malformed) t.same(parseScopes([scope]), [], JSON.stringify(scope.slice(0, 40)));
  t.same(parseScopes([`${malformed.join(' ')} repository:ok:pull`]), [{ type: 'repository', name: 'ok', actions: ['pull'] }]);
  t.same(parseScopes(['repository:a:delete,*']), [{ type: 'repository', name: 'a', actions: ['delete', '*'] }], 'any lower-case action word parses');
});

t.test('parseScopes: at most 32 scopes', async (t) => {
  const many = Array.from({ length: 40 }, (_, i) => `repository:r${i}:pull`);
  const scopes = parseScopes([many.slice(0, 20).join(' '), ...many.slice(20)]);
  t.equal(scopes.length, 32);
  t.equal(scopes[31]?.name, 'r31', 'the first 32, in order');
});

t.test('parseScopes: names with a port or a colon are parsed, then fail as repository names', async (t) => {
  const [withPort] = parseScopes(['repository:localhost:5000/x:pull']);
  t.same(withPort, { type: 'repository', name: 'localhost:5000/x', actions: ['pull'] }, 'the last colon separates the actions');
  t.same(parseScopes(['repository:a:b:c:pull,push']), [{ type: 'repository', name: 'a:b:c', actions: ['pull', 'push'] }]);
  t.throws(() => parseRepositoryName(withPort?.name ?? ''), { code: 'NAME_INVALID' }, 'not a valid repository name: the token endpoint grants nothing for it');
});

const log = () => captureLogger();

t.test('open creates an EC P-256 key, mode 0600, when the file is missing', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'token.pem');
  const captured = log();
  const issuer = TokenIssuer.open(path, { issuer: 'stevedore', service: 'stevedore', expiryMs: 900_000, log: captured.logger });
  t.equal(statSync(path).mode & 0o777, 0o600);
  t.match(readFileSync(path, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
  t.equal(issuer.publicKey.asymmetricKeyType, 'ec');
  t.equal(issuer.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  t.equal(issuer.kid, libtrustKeyId(issuer.publicKey));
  t.match(captured.lines.map((l) => JSON.parse(l) as unknown), [{ msg: 'created a new token signing key (EC P-256)', path }]);

  const again = TokenIssuer.open(path, { issuer: 'stevedore', service: 'stevedore', expiryMs: 900_000, log: log().logger });
  t.equal(again.kid, issuer.kid, 'the next open reuses the key');
  const token = (await issuer.issue('alice', [])).token;
  await t.resolves(jwtVerify(token, again.publicKey), "tokens of one verify with the other's key");
});

t.test('open refuses a file that holds no private key, or a place it cannot write', async (t) => {
  const dir = t.testdir({ 'garbage.pem': 'not a key\n', 'public.pem': generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }) as string });
  const options = { issuer: 'i', service: 's', expiryMs: 60_000, log: log().logger };
  t.throws(() => TokenIssuer.open(join(dir, 'garbage.pem'), options), /^auth\.token\.issue\.key .*garbage\.pem: /);
  t.equal(readFileSync(join(dir, 'garbage.pem'), 'utf8'), 'not a key\n', 'and leaves it alone');
  t.throws(() => TokenIssuer.open(join(dir, 'public.pem'), options), /auth\.token\.issue\.key/, 'a public key cannot sign');
  t.throws(() => TokenIssuer.open(join(dir, 'no-such-dir', 'key.pem'), options), /auth\.token\.issue\.key .*ENOENT/);
  const x25519 = join(dir, 'x25519.pem');
  writeFileSync(x25519, generateKeyPairSync('x25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  t.throws(() => TokenIssuer.open(x25519, options), /cannot sign tokens/);
});

/** A token issued with `key` (PEM written to a file) on the clock T0, and what jose makes of it. */
async function issued(dir: string, name: string, pem: string | undefined, subject: string | undefined) {
  const path = join(dir, name);
  if (pem !== undefined) writeFileSync(path, pem, { mode: 0o600 });
  const issuer = TokenIssuer.open(path, { issuer: 'stevedore-issuer', service: 'registry.example', expiryMs: 600_000, log: log().logger, now: () => T0 });
  const answer = await issuer.issue(subject, [
    { type: 'repository', name: 'library/alpine', actions: ['pull'] },
    { type: 'registry', name: 'catalog', actions: ['*'] },
  ]);
  const { payload, protectedHeader } = await jwtVerify(answer.token, issuer.publicKey, {
    issuer: 'stevedore-issuer',
    audience: 'registry.example',
    currentDate: new Date(T0),
  });
  return { issuer, answer, payload, protectedHeader };
}

t.test('issued tokens verify with jose, with the claims Distribution reads', async (t) => {
  const { issuer, answer, payload, protectedHeader } = await issued(t.testdir(), 'ec.pem', undefined, 'alice');
  t.same(protectedHeader, { alg: 'ES256', typ: 'JWT', kid: issuer.kid });
  const iat = Math.floor(T0 / 1000);
  t.match(payload, { iss: 'stevedore-issuer', aud: 'registry.example', sub: 'alice', iat, nbf: iat - 1, exp: iat + 600 });
  t.match(payload.jti, /^[A-Za-z0-9_-]{22}$/);
  t.same(payload.access, [
    { type: 'repository', name: 'library/alpine', actions: ['pull'] },
    { type: 'registry', name: 'catalog', actions: ['*'] },
  ]);
  t.same(answer, { token: answer.token, access_token: answer.token, expires_in: 600, issued_at: new Date(iat * 1000).toISOString() });
  t.equal(answer.issued_at, '2024-06-01T12:00:00.000Z');
  await t.rejects(
    jwtVerify(answer.token, issuer.publicKey, { currentDate: new Date(T0 + 601_000) }),
    { code: 'ERR_JWT_EXPIRED' },
    'expired after expiry',
  );
  const other = await issued(t.testdir(), 'ec.pem', undefined, undefined);
  t.equal(other.payload.sub, '', 'an anonymous token has an empty subject');
  t.not(other.payload.jti, payload.jti);
});

t.test('an RSA key signs RS256, an Ed25519 key EdDSA', async (t) => {
  const dir = t.testdir();
  const rsaPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const rsa = await issued(dir, 'rsa.pem', rsaPem, 'bob');
  t.equal(rsa.protectedHeader.alg, 'RS256');
  t.equal(rsa.protectedHeader.kid, rsa.issuer.kid);
  t.equal(rsa.payload.sub, 'bob');
  const pkcs1 = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs1', format: 'pem' }) as string;
  t.equal((await issued(dir, 'rsa1.pem', pkcs1, 'bob')).protectedHeader.alg, 'RS256', 'a PKCS#1 "RSA PRIVATE KEY" file too');
  const edPem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const ed = await issued(dir, 'ed.pem', edPem, 'carol');
  t.equal(ed.protectedHeader.alg, 'EdDSA');
  t.equal(decodeProtectedHeader(ed.answer.token).kid, ed.issuer.kid);
  const sec1 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'sec1', format: 'pem' }) as string;
  t.equal((await issued(dir, 'p384.pem', sec1, 'dave')).protectedHeader.alg, 'ES384', 'an "EC PRIVATE KEY" of another curve');
});

t.test('the expiry is at least one second', async (t) => {
  const issuer = TokenIssuer.open(join(t.testdir(), 'k.pem'), { issuer: 'i', service: 's', expiryMs: 10, log: log().logger, now: () => T0 });
  t.equal((await issuer.issue('a', [])).expires_in, 1);
});
