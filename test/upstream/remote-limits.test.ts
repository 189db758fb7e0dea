// RemoteRegistry's maxManifestBytes (limits.manifestbytes): an upstream
// manifest or referrers answer beyond it is UPSTREAM_ERROR, one at it is read.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';

import t, { type Test } from 'tap';

import { parseDigest } from '../../src/registry/digest.js';
import { RegistryError } from '../../src/registry/errors.js';
import { MAX_MANIFEST_SIZE } from '../../src/registry/manifest.js';
import type { RepositoryName } from '../../src/registry/names.js';
import { parseReference } from '../../src/registry/reference.js';
import type { UpstreamRequest, UpstreamResponse } from '../../src/upstream/client.js';
import { RemoteRegistry, type UpstreamTransport } from '../../src/upstream/remote.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const sha256 = (bytes: Buffer | string): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** A valid OCI image manifest of exactly `size` bytes (padded in an annotation). */
function manifestOf(size: number): Buffer {
  const head = JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256('{}'), size: 2 },
    layers: [],
    annotations: { pad: '' },
  });
  const pad = size - Buffer.byteLength(head);
  if (pad < 0) throw new Error(`a manifest cannot be as small as ${size} bytes`);
  return Buffer.from(head.replace('"pad":""', `"pad":"${'x'.repeat(pad)}"`));
}

/** An OCI index of referrers, padded to exactly `size` bytes. */
function referrersOf(size: number): Buffer {
  const head = JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [], annotations: { pad: '' } });
  return Buffer.from(head.replace('"pad":""', `"pad":"${'x'.repeat(size - Buffer.byteLength(head))}"`));
}

/** The least of UpstreamTransport: one answer for every request, its body in 64 KiB chunks. */
class FakeTransport implements UpstreamTransport {
  readonly name = 'fake';
  readonly requests: UpstreamRequest[] = [];
  bodies: Readable[] = [];
  constructor(private readonly answer: (req: UpstreamRequest) => { body: Buffer; headers: Record<string, string> }) {}
  async request(req: UpstreamRequest): Promise<UpstreamResponse> {
    this.requests.push(req);
    const { body, headers } = this.answer(req);
    const chunks: Buffer[] = [];
    for (let i = 0; i < body.byteLength; i += 65_536) chunks.push(body.subarray(i, i + 65_536));
    const stream = Readable.from(chunks, { objectMode: false });
    this.bodies.push(stream);
    return { status: 200, headers: { 'content-length': String(body.byteLength), ...headers }, body: stream, url: `http://fake/v2/${req.repository}/${req.kind}/${req.reference}` };
  }
  async close(): Promise<void> {}
}

const manifestTransport = (payload: Buffer) => new FakeTransport(() => ({ body: payload, headers: { 'content-type': OCI_MANIFEST, 'docker-content-digest': sha256(payload) } }));
const REPO = 'library/alpine' as RepositoryName;
/** The remote asks as a fully capable client whatever the caller accepts. */
const ANY = { accept: [] };

async function upstreamError(t: Test, promise: Promise<unknown>): Promise<RegistryError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof RegistryError) return err;
    throw err;
  }
  t.fail('expected a RegistryError');
  return new RegistryError('UNKNOWN', 'nothing thrown');
}

t.test('a manifest at the limit is read; one byte more is UPSTREAM_ERROR', async (t) => {
  const limit = 64 * 1024;
  const atLimit = manifestOf(limit);
  t.equal(atLimit.byteLength, limit);
  const ok = await new RemoteRegistry(manifestTransport(atLimit), { maxManifestBytes: limit }).repository(REPO).manifests.get(parseReference('latest'), ANY);
  t.equal(ok.payload.byteLength, limit);
  t.equal(ok.digest.value, sha256(atLimit));
  t.equal(ok.mediaType, OCI_MANIFEST);

  const over = manifestOf(limit + 1);
  const transport = manifestTransport(over);
  const err = await upstreamError(t, new RemoteRegistry(transport, { maxManifestBytes: limit }).repository(REPO).manifests.get(parseReference('latest'), ANY));
  t.equal(err.code, 'UPSTREAM_ERROR');
  t.equal(err.message, `upstream fake sent a manifest larger than ${limit} bytes`);
  t.equal(transport.bodies[0]?.destroyed, true, 'the rest of the body is not read');
  const byDigest = await upstreamError(t, new RemoteRegistry(manifestTransport(over), { maxManifestBytes: limit }).repository(REPO).manifests.get(parseReference(sha256(over)), ANY));
  t.equal(byDigest.code, 'UPSTREAM_ERROR', 'by digest too');
});

t.test('a larger limit lets a manifest beyond the 4 MiB default through', async (t) => {
  const big = manifestOf(MAX_MANIFEST_SIZE + 1024);
  const defaults = await upstreamError(t, new RemoteRegistry(manifestTransport(big)).repository(REPO).manifests.get(parseReference('latest'), ANY));
  t.equal(defaults.code, 'UPSTREAM_ERROR', 'without the option: 4 MiB');
  t.match(defaults.message, new RegExp(`larger than ${MAX_MANIFEST_SIZE} bytes`));
  const raised = await new RemoteRegistry(manifestTransport(big), { maxManifestBytes: 8 * 1024 * 1024 }).repository(REPO).manifests.get(parseReference('latest'), ANY);
  t.equal(raised.payload.byteLength, MAX_MANIFEST_SIZE + 1024);
});

t.test('a referrers answer beyond the limit is UPSTREAM_ERROR', async (t) => {
  const limit = 4096;
  const subject = parseDigest(sha256('subject'));
  const answer = (body: Buffer) => new FakeTransport(() => ({ body, headers: { 'content-type': OCI_INDEX } }));
  const ok = await new RemoteRegistry(answer(referrersOf(limit)), { maxManifestBytes: limit }).repository(REPO).referrers.list(subject);
  t.same(ok, { manifests: [], filtered: false });
  const err = await upstreamError(t, new RemoteRegistry(answer(referrersOf(limit + 1)), { maxManifestBytes: limit }).repository(REPO).referrers.list(subject));
  t.equal(err.code, 'UPSTREAM_ERROR');
  t.equal(err.message, `upstream fake sent a referrers answer larger than ${limit} bytes`);
});
