/**
 * Key identities of Docker's token world: the libtrust key ID Distribution
 * matches a token's `kid` against (SHA-256 of the DER SubjectPublicKeyInfo,
 * first 240 bits, base32 without padding, in groups of four joined by `:`),
 * the JWS algorithms a key can verify, and PEM bundles of certificates.
 */
import { createHash, type KeyObject, X509Certificate } from 'node:crypto';

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function base32(bytes: Buffer): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

export function libtrustKeyId(key: KeyObject): string {
  const spki = key.export({ type: 'spki', format: 'der' });
  const encoded = base32(createHash('sha256').update(spki).digest().subarray(0, 30));
  return encoded.match(/.{4}/g)?.join(':') ?? encoded;
}

/** The asymmetric JWS algorithms a public key can check; never `none` or an HMAC. */
export function algorithmsFor(key: KeyObject): string[] {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
    case 'rsa-pss':
      return ['PS256', 'PS384', 'PS512'];
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      return curve === 'prime256v1' ? ['ES256'] : curve === 'secp384r1' ? ['ES384'] : curve === 'secp521r1' ? ['ES512'] : [];
    }
    case 'ed25519':
      return ['EdDSA'];
    default:
      return [];
  }
}

/** The algorithm Stevedore signs with for a private key of this type. */
export function signingAlgorithm(key: KeyObject): string {
  const algs = algorithmsFor(key);
  if (algs[0] === undefined) throw new Error(`keys of type ${key.asymmetricKeyType ?? 'unknown'} cannot sign tokens: use EC P-256, RSA or Ed25519`);
  return algs[0];
}

/** Every certificate of a PEM bundle, in order. */
export function parseCertificates(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((block) => new X509Certificate(block));
}
