// Signatures and attestations through the cache: a signature artifact and an
// SBOM attached to an image (OCI manifests with `subject`, plus a cosign-style
// `sha256-<hex>.sig` tag and the tag-schema `sha256-<hex>` index), served
// through Stevedore, then again with the upstream stopped.
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { startDistribution } from '../helpers/distribution.js'
import { writeOciImage } from '../helpers/images.js'
import { startInProcess } from '../helpers/inprocess.js'
import { pushBlob, pushManifest, sha256 } from '../helpers/push.js'
import { pushLayout } from '../helpers/skopeo.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
const EMPTY = 'application/vnd.oci.empty.v1+json'
const SIG = 'application/vnd.dev.cosign.artifact.sig.v1+json'
const SBOM = 'application/spdx+json'

interface Index {
  schemaVersion: number
  mediaType: string
  manifests: { mediaType: string; digest: string; size: number; artifactType?: string; annotations?: Record<string, string> }[]
}

/** The OCI image-spec index schema, as far as a referrers answer uses it. */
function assertIndexSchema(t: Test, index: Index): void {
  t.equal(index.schemaVersion, 2, 'schemaVersion 2')
  t.equal(index.mediaType, OCI_INDEX, 'index media type')
  t.ok(Array.isArray(index.manifests), 'manifests is an array')
  for (const d of index.manifests) {
    t.match(d, { mediaType: String, digest: /^sha256:[a-f0-9]{64}$/, size: Number }, 'a valid descriptor')
    t.ok(Number.isSafeInteger(d.size) && d.size >= 0, 'size is a non-negative integer')
  }
}

t.test('referrers, cosign tags and the tag-schema fallback, online and offline', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  const image = await writeOciImage(join(dir, 'image'), { tag: 'v1', seed: 'referrers-image', layerSizes: [1000] })
  await pushLayout(join(dir, 'image'), 'v1', `${upstream.host}/team/signed:v1`)
  const subject = { mediaType: OCI_MANIFEST, digest: image.manifestDigest, size: image.manifests[0]?.size ?? 0 }

  const repo = 'team/signed'
  const empty = await pushBlob(upstream.url, repo, Buffer.from('{}'))
  const artifact = async (artifactType: string, content: string, annotations: Record<string, string>) => {
    const layer = await pushBlob(upstream.url, repo, Buffer.from(content))
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType,
      config: { mediaType: EMPTY, digest: empty.digest, size: empty.size },
      layers: [{ mediaType: artifactType, digest: layer.digest, size: layer.size }],
      subject,
      annotations,
    }
    const pushed = await pushManifest(upstream.url, repo, sha256(JSON.stringify(manifest)), manifest, OCI_MANIFEST)
    return { ...pushed, layer, artifactType, annotations }
  }
  const signature = await artifact(SIG, 'signature-bytes', { 'dev.cosignproject.cosign/signature': 'MEUCIQ' })
  const sbom = await artifact(SBOM, '{"spdxVersion":"SPDX-2.3"}', { 'org.opencontainers.image.created': '2026-11-23T00:00:00Z' })
  const hexTag = image.manifestDigest.replace(':', '-')
  // cosign's legacy tag, and the tag-schema fallback index an OCI 1.1 client maintains.
  await pushManifest(upstream.url, repo, `${hexTag}.sig`, JSON.parse(signature.payload.toString()), OCI_MANIFEST)
  const fallback = {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [signature, sbom].map(a => ({ mediaType: OCI_MANIFEST, digest: a.digest, size: a.size, artifactType: a.artifactType, annotations: a.annotations })),
  }
  await pushManifest(upstream.url, repo, hexTag, fallback, OCI_INDEX)

  let clock = Date.now()
  const proxy = await startInProcess(t, join(dir, 'cache'), { proxy: { remoteurl: upstream.url, tagttl: '1m' } }, { now: () => clock })
  const get = (path: string, accept = `${OCI_MANIFEST}, ${OCI_INDEX}`): Promise<Response> => fetch(`${proxy.url}/v2/${repo}/${path}`, { headers: { Accept: accept } })

  const online = async (label: string): Promise<void> => {
    const all = await get(`referrers/${image.manifestDigest}`)
    t.equal(all.status, 200, `${label}: referrers answered`)
    t.equal(all.headers.get('content-type'), OCI_INDEX)
    const index = (await all.json()) as Index
    assertIndexSchema(t, index)
    t.same(index.manifests.map(m => m.digest).sort(), [signature.digest, sbom.digest].sort(), `${label}: both referrers listed once`)
    t.same(index.manifests.find(m => m.digest === sbom.digest)?.artifactType, SBOM, 'with their artifactType')

    const filtered = await get(`referrers/${image.manifestDigest}?artifactType=${encodeURIComponent(SIG)}`)
    t.equal(filtered.headers.get('oci-filters-applied'), 'artifactType', `${label}: the filter is announced`)
    t.same(((await filtered.json()) as Index).manifests.map(m => m.digest), [signature.digest], `${label}: only the signature`)

    for (const a of [signature, sbom]) {
      const manifest = await get(`manifests/${a.digest}`)
      t.equal(manifest.status, 200, `${label}: ${a.artifactType} manifest served`)
      t.same(Buffer.from(await manifest.arrayBuffer()), a.payload, `${label}: byte-identical`)
      const blob = await get(`blobs/${a.layer.digest}`)
      t.equal(blob.status, 200, `${label}: ${a.artifactType} blob served`)
      await blob.arrayBuffer()
    }
    const sigTag = await get(`manifests/${hexTag}.sig`)
    t.equal(sigTag.headers.get('docker-content-digest'), signature.digest, `${label}: the cosign .sig tag resolves`)
  }

  await online('upstream up')
  await upstream.stop()
  clock += 5 * 60_000 // every tag and cached referrers answer is now stale
  await online('upstream down')
  const stale = await get(`referrers/${image.manifestDigest}`)
  t.match(stale.headers.get('warning') ?? '', /299 - ".*unavailable/, 'stale referrers carry a Warning')

  const unknown = await get(`referrers/sha256:${'0'.repeat(64)}`)
  t.equal(unknown.status, 503, 'a subject never seen, with the upstream down: 503, not an empty 200')
})
