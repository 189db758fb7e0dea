/**
 * Stevedore's own token issuer: signs Docker registry tokens for the users
 * of an htpasswd file, granting of each requested scope exactly the actions
 * the access rules allow. The key is read from a PEM file, or created there
 * (EC P-256, mode 0600) when the file does not exist yet.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { SignJWT } from 'jose';
import type { Logger } from 'pino';
import { libtrustKeyId, signingAlgorithm } from './keys.js';

/** One scope a client asks for: `repository:team/app:pull,push`, `registry:catalog:*`. */
export interface Scope {
  type: string;
  name: string;
  actions: string[];
}

const SCOPE = /^([a-z0-9]+)(?:\(([a-z0-9]+)\))?:(.+):([a-z*]+(?:,[a-z*]+)*)$/;

/** Scopes from `scope` parameters (each may hold several, space-separated); malformed ones are dropped. */
export function parseScopes(values: readonly string[]): Scope[] {
  const scopes: Scope[] = [];
  for (const value of values) {
    for (const item of value.split(' ')) {
      if (item === '' || item.length > 512) continue;
      const match = SCOPE.exec(item);
      if (match === null) continue;
      scopes.push({ type: match[1] as string, name: match[3] as string, actions: [...new Set((match[4] as string).split(','))] });
      if (scopes.length >= 32) return scopes;
    }
  }
  return scopes;
}

export interface IssuedToken {
  token: string;
  access_token: string;
  expires_in: number;
  issued_at: string;
}

export class TokenIssuer {
  readonly publicKey: KeyObject;
  readonly kid: string;
  private readonly alg: string;

  private constructor(
    private readonly key: KeyObject,
    private readonly options: { issuer: string; service: string; expiryMs: number; now: () => number },
  ) {
    this.publicKey = createPublicKey(key);
    this.kid = libtrustKeyId(this.publicKey);
    this.alg = signingAlgorithm(key);
  }

  static open(path: string, options: { issuer: string; service: string; expiryMs: number; log: Logger; now?: () => number }): TokenIssuer {
    let key: KeyObject;
    try {
      key = createPrivateKey(readFileSync(path));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`auth.token.issue.key ${path}: ${(err as Error).message}`);
      const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      try {
        writeFileSync(path, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
        key = pair.privateKey;
        options.log.info({ path }, 'created a new token signing key (EC P-256)');
      } catch (writeErr) {
        // Another replica created it first: use theirs.
        if ((writeErr as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`auth.token.issue.key ${path}: ${(writeErr as Error).message}`);
        key = createPrivateKey(readFileSync(path));
      }
    }
    return new TokenIssuer(key, { issuer: options.issuer, service: options.service, expiryMs: options.expiryMs, now: options.now ?? Date.now });
  }

  async issue(subject: string | undefined, access: readonly Scope[]): Promise<IssuedToken> {
    const now = this.options.now();
    const iat = Math.floor(now / 1000);
    const expiresIn = Math.max(1, Math.floor(this.options.expiryMs / 1000));
    const token = await new SignJWT({ access: access.map((a) => ({ type: a.type, name: a.name, actions: a.actions })) })
      .setProtectedHeader({ alg: this.alg, typ: 'JWT', kid: this.kid })
      .setIssuer(this.options.issuer)
      .setSubject(subject ?? '')
      .setAudience(this.options.service)
      .setIssuedAt(iat)
      .setNotBefore(iat - 1)
      .setExpirationTime(iat + expiresIn)
      .setJti(randomBytes(16).toString('base64url'))
      .sign(this.key);
    return { token, access_token: token, expires_in: expiresIn, issued_at: new Date(iat * 1000).toISOString() };
  }
}
