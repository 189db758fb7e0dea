/**
 * Content digests (`<algorithm>:<hex>`), as the OCI image spec defines them.
 * Only the registered algorithms a registry must verify are accepted:
 * sha256 (64 hex chars) and sha512 (128 hex chars). Everything that leaves
 * this module as a Digest has been validated, so paths built from it are safe.
 */
import { createHash, type Hash } from 'node:crypto';
import { RegistryError, truncate } from './errors.js';
import { memoize } from './memo.js';

export type DigestAlgorithm = 'sha256' | 'sha512';

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };

/** A validated digest. Construct with parseDigest or digestOf. */
export interface Digest {
  readonly algorithm: DigestAlgorithm;
  readonly hex: string;
  /** `algorithm:hex`, the canonical form written to link files and headers. */
  readonly value: string;
}

const DIGEST_GRAMMAR = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export function isDigestLike(reference: string): boolean {
  return reference.includes(':');
}

/**
 * Parses and validates a digest string; throws DIGEST_INVALID, also for
 * algorithms other than sha256 and sha512. Each distinct text is parsed
 * once (a Digest is immutable, so one object serves every request).
 */
export const parseDigest: (input: string) => Digest = memoize(4096, (input) => validDigest(input));

function validDigest(input: string): Digest {
  if (!DIGEST_GRAMMAR.test(input)) {
    throw new RegistryError('DIGEST_INVALID', 'invalid digest format', { detail: { digest: truncate(input) } });
  }
  const colon = input.indexOf(':');
  const algorithm = input.slice(0, colon);
  const hex = input.slice(colon + 1);
  if (algorithm !== 'sha256' && algorithm !== 'sha512') {
    throw new RegistryError('DIGEST_INVALID', `unsupported digest algorithm ${truncate(algorithm, 32)}: sha256 and sha512 are supported`, {
      detail: { digest: truncate(input) },
    });
  }
  if (hex.length !== HEX_LENGTH[algorithm] || !/^[a-f0-9]+$/.test(hex)) {
    throw new RegistryError('DIGEST_INVALID', `invalid ${algorithm} digest: want ${HEX_LENGTH[algorithm]} lowercase hex characters`, {
      detail: { digest: truncate(input) },
    });
  }
  return { algorithm, hex, value: input };
}

export function tryParseDigest(input: string): Digest | undefined {
  try {
    return parseDigest(input);
  } catch {
    return undefined;
  }
}

export function digestOf(data: Uint8Array | string, algorithm: DigestAlgorithm = 'sha256'): Digest {
  const hex = createHash(algorithm).update(data).digest('hex');
  return { algorithm, hex, value: `${algorithm}:${hex}` };
}

/** Incremental digest computation for streamed content. */
export class Digester {
  readonly algorithm: DigestAlgorithm;
  private readonly hash: Hash;
  private bytes = 0;

  constructor(algorithm: DigestAlgorithm = 'sha256') {
    this.algorithm = algorithm;
    this.hash = createHash(algorithm);
  }

  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.bytes += chunk.byteLength;
  }

  get size(): number {
    return this.bytes;
  }

  digest(): Digest {
    const hex = this.hash.digest('hex');
    return { algorithm: this.algorithm, hex, value: `${this.algorithm}:${hex}` };
  }
}

export const sameDigest = (a: Digest, b: Digest): boolean => a.value === b.value;
