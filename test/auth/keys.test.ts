// Key identities: the libtrust key ID (a fixed vector, and the same rule
// written out independently here), the JWS algorithms a key can check, and
// PEM certificate bundles.
import { createHash, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';

import t from 'tap';

import { algorithmsFor, libtrustKeyId, parseCertificates, signingAlgorithm } from '../../src/auth/keys.js';
import { selfSignedKey } from '../helpers/jwt-issuer.js';

/** An EC P-256 public key made once with openssl. */
const FIXED_PEM = `-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKcro7crGZgWttj89yEackCTcPo8E
3k9yM5afbtFfMqFqVuZFSljDnyhbAo7738DmrmXEOaNDMhJcvvc/9TtD6Q==
-----END PUBLIC KEY-----
`;
/** Its key ID as Python's base64.b32encode spells it (of sha256(DER SPKI)[:30], grouped by four). */
const FIXED_KID = 'P4OB:N5VG:U3QT:CUBI:UXT5:RISG:YK5U:JFOI:SIKM:ZFMG:FX3M:JCBE';

/** RFC 4648 base32, written out bit by bit from the alphabet, without padding. */
function rfc4648Base32(bytes: Uint8Array): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const bits = [...bytes].map((b) => b.toString(2).padStart(8, '0')).join('');
  let out = '';
  for (let i = 0; i < bits.length; i += 5) out += alphabet[parseInt(bits.slice(i, i + 5).padEnd(5, '0'), 2)];
  return out;
}

/** Docker's libtrust KeyID, independently of src/auth/keys.ts. */
function expectedKid(key: KeyObject): string {
  const der = key.export({ type: 'spki', format: 'der' });
  const truncated = createHash('sha256').update(der).digest().subarray(0, 30);
  const encoded = rfc4648Base32(truncated);
  const groups: string[] = [];
  for (let i = 0; i < encoded.length; i += 4) groups.push(encoded.slice(i, i + 4));
  return groups.join(':');
}

const KID_FORMAT = /^(?:[A-Z2-7]{4}:){11}[A-Z2-7]{4}$/;

t.test('libtrustKeyId: the fixed vector', async (t) => {
  const key = createPublicKey(FIXED_PEM);
  t.equal(expectedKid(key), FIXED_KID, 'the test’s own computation agrees with Python’s');
  t.equal(libtrustKeyId(key), FIXED_KID);
  t.match(FIXED_KID, KID_FORMAT);
});

t.test('libtrustKeyId: twelve groups of four base32 characters, for every key type', async (t) => {
  const keys: Array<[string, KeyObject]> = [
    ['P-256', generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey],
    ['P-384', generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey],
    ['RSA', generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey],
    ['Ed25519', generateKeyPairSync('ed25519').publicKey],
  ];
  for (const [name, key] of keys) {
    const kid = libtrustKeyId(key);
    t.match(kid, KID_FORMAT, name);
    t.equal(kid, expectedKid(key), name);
  }
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  t.equal(libtrustKeyId(createPublicKey(privateKey)), libtrustKeyId(publicKey), 'the ID of a key pair is its public half’s');
});

t.test('algorithmsFor: what each key type can check', async (t) => {
  const ec = (namedCurve: string) => generateKeyPairSync('ec', { namedCurve }).publicKey;
  t.same(algorithmsFor(ec('P-256')), ['ES256']);
  t.same(algorithmsFor(ec('P-384')), ['ES384']);
  t.same(algorithmsFor(ec('P-521')), ['ES512']);
  t.same(algorithmsFor(ec('secp256k1')), [], 'other curves: none');
  t.same(algorithmsFor(generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey), ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']);
  t.same(algorithmsFor(generateKeyPairSync('rsa-pss', { modulusLength: 2048 }).publicKey), ['PS256', 'PS384', 'PS512']);
  t.same(algorithmsFor(generateKeyPairSync('ed25519').publicKey), ['EdDSA']);
  t.same(algorithmsFor(generateKeyPairSync('ed448').publicKey), [], 'Ed448: none');
  t.same(algorithmsFor(generateKeyPairSync('x25519').publicKey), [], 'a key-agreement key: none');
  t.same(algorithmsFor(generateKeyPairSync('dsa', { modulusLength: 2048, divisorLength: 256 }).publicKey), []);
});

t.test('signingAlgorithm: the first usable one, or a clear refusal', async (t) => {
  t.equal(signingAlgorithm(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey), 'ES256');
  t.equal(signingAlgorithm(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey), 'RS256');
  t.equal(signingAlgorithm(generateKeyPairSync('ed25519').privateKey), 'EdDSA');
  t.throws(() => signingAlgorithm(generateKeyPairSync('x25519').privateKey), /keys of type x25519 cannot sign tokens: use EC P-256, RSA or Ed25519/);
});

t.test('parseCertificates: every certificate of a bundle, in order', async (t) => {
  const dir = t.testdir();
  const [one, two] = await Promise.all([selfSignedKey(dir, 'one'), selfSignedKey(dir, 'two', 'rsa')]);
  const bundle = `# a comment openssl would ignore\n${one.certPem}\n${two.certPem}`;
  const certs = parseCertificates(bundle);
  t.same(certs.map((c) => c.subject), ['CN=one', 'CN=two']);
  t.equal(libtrustKeyId(certs[0]?.publicKey as KeyObject), one.kid);
  t.equal(libtrustKeyId(certs[1]?.publicKey as KeyObject), two.kid);
  t.same(parseCertificates(bundle.replaceAll('\n', '\r\n')).length, 2, 'CRLF');
});

t.test('parseCertificates: garbage', async (t) => {
  t.same(parseCertificates(''), []);
  t.same(parseCertificates('not a certificate at all'), []);
  t.same(parseCertificates(FIXED_PEM), [], 'a public key is no certificate');
  t.throws(() => parseCertificates('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'), 'a block that does not decode throws');
});
