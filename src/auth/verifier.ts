/**
 * Checks bearer tokens the way Distribution's `auth: token` does: a JWS
 * signed by a key we trust, `iss` = issuer, `aud` ∋ service, `exp` required
 * and `nbf` honoured within the clock skew, and an `access` claim listing
 * what it grants. Keys we trust:
 *
 * - certificates of `rootcertbundle`: named by the token's `x5c` header (a
 *   chain whose last certificate is, or is issued by, a bundle certificate,
 *   every one within its validity) or by `kid` (the libtrust key ID, or the
 *   RFC 7638 JWK thumbprint, of a bundle certificate's key);
 * - keys of a JWKS (file or URL), named by `kid`;
 * - Stevedore's own issuing key, when it issues tokens itself.
 *
 * Verified tokens are remembered until they expire (bounded), so a client
 * reusing its token costs a map lookup, not a signature check.
 */
import { KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { calculateJwkThumbprint, createLocalJWKSet, createRemoteJWKSet, exportJWK, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { Caller } from './caller.js';
import { grantsOf } from './caller.js';
import { algorithmsFor, libtrustKeyId, parseCertificates } from './keys.js';
import { WatchedFile } from './watched.js';
import { boundedCache } from '../registry/bounded-cache.js';

export interface VerifierOptions {
  issuer: string;
  service: string;
  clockSkewMs: number;
  groupsClaim: string;
  rootCertBundle?: string;
  jwks?: string;
  /** Stevedore's own issuing key (its public half). */
  ownKey?: { key: KeyObject; kid: string };
  log: Logger;
  now?: () => number;
}

/** Why a token was refused, for the log and the `error_description` of the challenge. */
export class TokenRejected extends Error {}

interface TrustedKey {
  key: KeyObject;
  /** For x5c chains: the certificate itself. */
  cert?: X509Certificate;
}

const ALL_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

export class TokenVerifier {
  private readonly byKid = new Map<string, TrustedKey>();
  private readonly bundle: X509Certificate[] = [];
  private readonly jwksFile: WatchedFile<JWTVerifyGetKey> | undefined;
  private readonly jwksRemote: JWTVerifyGetKey | undefined;
  /** Verified tokens → their caller, until `exp` plus the skew (by `now`, so an injected clock is honoured too). */
  private readonly verified: LRUCache<string, { caller: Caller; until: number }>;
  /** The JWKS file's version the cached verdicts were reached with. */
  private jwksVersion = 0;
  private readonly now: () => number;

  private constructor(private readonly options: VerifierOptions) {
    this.now = options.now ?? Date.now;
    this.verified = boundedCache({ entries: 10_000 });
    if (options.jwks !== undefined && /^https?:\/\//i.test(options.jwks)) {
      this.jwksRemote = createRemoteJWKSet(new URL(options.jwks), { timeoutDuration: 10_000, cacheMaxAge: 300_000, cooldownDuration: 30_000 });
    } else if (options.jwks !== undefined) {
      this.jwksFile = new WatchedFile(options.jwks, (text) => createLocalJWKSet(JSON.parse(text) as Parameters<typeof createLocalJWKSet>[0]), options.log, 'JWKS file');
    }
  }

  static async create(options: VerifierOptions): Promise<TokenVerifier> {
    const verifier = new TokenVerifier(options);
    if (options.rootCertBundle !== undefined) {
      const certs = parseCertificates(readFileSync(options.rootCertBundle, 'utf8'));
      if (certs.length === 0) throw new Error(`auth.token.rootcertbundle ${options.rootCertBundle} holds no PEM certificate`);
      for (const cert of certs) {
        verifier.bundle.push(cert);
        const key = cert.publicKey;
        verifier.byKid.set(libtrustKeyId(key), { key, cert });
        verifier.byKid.set(await calculateJwkThumbprint(await exportJWK(key)), { key, cert });
      }
    }
    if (options.ownKey !== undefined) verifier.byKid.set(options.ownKey.kid, { key: options.ownKey.key });
    await verifier.jwksFile?.load();
    return verifier;
  }

  /** The caller a token speaks for; throws TokenRejected. */
  async verify(token: string): Promise<Caller> {
    if (this.jwksFile !== undefined) {
      // A changed file may have dropped a key: what it verified is verified again.
      await this.jwksFile.get();
      if (this.jwksFile.version !== this.jwksVersion) {
        this.verified.clear();
        this.jwksVersion = this.jwksFile.version;
      }
    }
    const cached = this.verified.get(token);
    if (cached !== undefined && cached.until > this.now()) return cached.caller;
    if (token.length > 16_384 || !COMPACT_JWS.test(token)) throw new TokenRejected('not a compact JWS');
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, (header, t) => this.keyFor(header, t), {
        issuer: this.options.issuer,
        audience: this.options.service,
        requiredClaims: ['exp'],
        clockTolerance: Math.round(this.options.clockSkewMs / 1000),
        currentDate: new Date(this.now()),
        algorithms: ALL_ALGORITHMS,
      }));
    } catch (err) {
      if (err instanceof TokenRejected) throw err;
      throw new TokenRejected((err as Error).message);
    }
    const groupsClaim = payload[this.options.groupsClaim];
    const caller: Caller = {
      ...(typeof payload.sub === 'string' && payload.sub !== '' ? { user: payload.sub } : {}),
      groups: Array.isArray(groupsClaim) ? groupsClaim.filter((g): g is string => typeof g === 'string') : [],
      via: 'bearer',
      grants: grantsOf(payload.access),
    };
    const until = (payload.exp as number) * 1000 + this.options.clockSkewMs;
    const ttl = until - this.now();
    if (ttl > 0) this.verified.set(token, { caller, until }, { ttl });
    return caller;
  }

  private async keyFor(header: Parameters<JWTVerifyGetKey>[0], token: Parameters<JWTVerifyGetKey>[1]): Promise<KeyObject> {
    const alg = header.alg ?? '';
    if (Array.isArray(header.x5c) && header.x5c.length > 0) return this.chainKey(header.x5c, alg);
    if (typeof header.kid === 'string') {
      const trusted = this.byKid.get(header.kid);
      if (trusted !== undefined) return this.usable(trusted.key, alg);
      const jwks = this.jwksRemote ?? (this.jwksFile === undefined ? undefined : await this.jwksFile.get());
      if (jwks !== undefined) {
        const key = await jwks(header, token);
        if (key instanceof Uint8Array) throw new TokenRejected('symmetric keys are not accepted');
        return this.usable(key instanceof KeyObject ? key : KeyObject.from(key as Parameters<typeof KeyObject.from>[0]), alg);
      }
      throw new TokenRejected(`no trusted key has kid ${header.kid.slice(0, 64)}`);
    }
    throw new TokenRejected('the token names no key (no x5c, no kid)');
  }

  private usable(key: KeyObject, alg: string): KeyObject {
    if (!algorithmsFor(key).includes(alg)) throw new TokenRejected(`algorithm ${alg.slice(0, 16)} does not fit the key`);
    return key;
  }

  /** An x5c chain: each certificate signed by the next, the last one a bundle certificate or signed by one, all valid now. */
  private chainKey(x5c: readonly string[], alg: string): KeyObject {
    if (this.bundle.length === 0) throw new TokenRejected('x5c chains need auth.token.rootcertbundle');
    if (x5c.length > 8) throw new TokenRejected('x5c chain too long');
    let chain: X509Certificate[];
    try {
      chain = x5c.map((der) => new X509Certificate(Buffer.from(der, 'base64')));
    } catch {
      throw new TokenRejected('x5c holds something that is not a certificate');
    }
    const now = this.now();
    for (const cert of chain) {
      if (Date.parse(cert.validFrom) > now || Date.parse(cert.validTo) < now) throw new TokenRejected('a certificate of the x5c chain is not valid now');
    }
    const inBundle = (cert: X509Certificate): boolean => this.bundle.some((root) => root.fingerprint256 === cert.fingerprint256);
    for (let i = 0; i + 1 < chain.length; i++) {
      const [child, parent] = [chain[i] as X509Certificate, chain[i + 1] as X509Certificate];
      if (!child.checkIssued(parent) || !child.verify(parent.publicKey)) throw new TokenRejected('the x5c chain is broken');
      // As Go's x509 (so Distribution): an intermediate must be a CA; a bundle certificate is trusted as it is.
      if (!parent.ca && !inBundle(parent)) throw new TokenRejected('a certificate of the x5c chain signs another but is not a CA');
    }
    const last = chain[chain.length - 1] as X509Certificate;
    const anchored = inBundle(last) || this.bundle.some((root) => last.checkIssued(root) && last.verify(root.publicKey));
    if (!anchored) throw new TokenRejected('the x5c chain does not end at a certificate of the root bundle');
    return this.usable((chain[0] as X509Certificate).publicKey, alg);
  }
}
