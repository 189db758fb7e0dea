/**
 * Schema1 signed manifests in storage: the canonical payload is the revision
 * blob (what Distribution 2.8 stores) and every signature ever seen is kept
 * apart, beside the revision. A GET rebuilds the pretty JWS with all of them,
 * so signatures that arrived at different times or from different sources
 * are served together, and the digest (of the payload) never changes.
 * A revision with no stored signature (as Distribution 2.8 leaves them) is
 * signed with this process's own key, as Distribution does on every GET.
 */
import { exportJWK, generateKeyPair } from 'jose';
import type { Digest } from '../registry/digest.js';
import { digestInvalid } from '../registry/errors.js';
import type { RepositoryName } from '../registry/names.js';
import {
  buildPrettySignature,
  parseSignedManifest,
  type Schema1SigningKey,
  signCanonical,
  verifySignatures,
} from '../registry/schema1.js';
import type { BlobStore } from './blobs.js';
import type { LinkStore } from './links.js';
import type { SignatureStore } from './signatures.js';

export interface IngestedSchema1 {
  digest: Digest;
  /** Signatures that were not stored before. */
  added: number;
}

export class Schema1Store {
  private key: Promise<Schema1SigningKey> | undefined;

  constructor(
    private readonly blobs: BlobStore,
    private readonly revisions: LinkStore,
    private readonly signatures: SignatureStore,
  ) {}

  /**
   * Verifies every signature (refusing the whole document if one fails) and,
   * when given, that the payload has the `expected` digest (DIGEST_INVALID);
   * only then stores payload and signatures apart.
   */
  async ingest(name: RepositoryName, document: Buffer, expected?: Digest): Promise<IngestedSchema1> {
    const parsed = parseSignedManifest(document);
    await verifySignatures(parsed);
    if (expected !== undefined && expected.value !== parsed.digest.value) {
      throw digestInvalid(expected.value, `the schema1 payload hashes to ${parsed.digest.value}`);
    }
    await this.blobs.put(parsed.canonical);
    await this.revisions.link(name, parsed.digest);
    let added = 0;
    for (const signature of parsed.signatures) if (await this.signatures.add(name, parsed.digest, signature)) added += 1;
    return { digest: parsed.digest, added };
  }

  /** The signed document for a stored revision, with every stored signature. */
  async assemble(name: RepositoryName, digest: Digest, canonical: Buffer): Promise<Buffer> {
    const stored = await this.signatures.list(name, digest);
    const signatures = stored.length > 0 ? stored : [await signCanonical(canonical, await this.signingKey())];
    return buildPrettySignature(canonical, signatures);
  }

  private signingKey(): Promise<Schema1SigningKey> {
    this.key ??= (async () => {
      const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
      return { privateJwk: await exportJWK(privateKey), publicJwk: await exportJWK(publicKey) };
    })();
    return this.key;
  }
}
