// Stevedore as a plain local registry (no proxy section) on a storage tree a
// real Distribution wrote: a narrow Accept on a tagged Docker manifest list or
// OCI index gets the linux/amd64 child, or MANIFEST_UNKNOWN naming the stored
// type when that child is not stored; by digest a non-matching Accept is
// MANIFEST_UNKNOWN. The referrers API lists stored referrers and filters by
// artifactType. A schema1 revision stored without signatures (as Distribution
// 2.8 stores every one) is served signed, and the signature verifies.
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { distributionPaths } from '../helpers/distribution-paths.js'
import { startDistribution, type Distribution } from '../helpers/distribution.js'
import { seededBytes } from '../helpers/files.js'
import { writeOciImage } from '../helpers/images.js'
import { startInProcess, type InProcess } from '../helpers/inprocess.js'
import { pushBlob, pushManifest, sha256 } from '../helpers/push.js'
import { pushLayout } from '../helpers/skopeo.js'
import { parseSignedManifest, verifySignatures } from '../../src/registry/schema1.js'
import { OCI_MANIFEST, OCI_INDEX, OCI_CONFIG, OCI_LAYER, DOCKER_MANIFEST, DOCKER_LIST, DOCKER_CONFIG, DOCKER_LAYER, SCHEMA1_SIGNED } from '../helpers/media-types.js'
import { send, type Reply } from '../helpers/http.js'

const SIG_TYPE = 'application/vnd.example.signature'
const SBOM_TYPE = 'application/spdx+json'

const REPO = 'team/app'
const SCHEMA1_REPO = 'team/legacy'

type Format = 'docker' | 'oci'

interface Pushed {
  mediaType: string
  digest: string
  size: number
  payload: Buffer
}

interface IndexFixture {
  format: Format
  tag: string
  index: Pushed
  amd64: Pushed
  arm64: Pushed
}

const typesOf = (format: Format) =>
  format === 'docker'
    ? { manifest: DOCKER_MANIFEST, index: DOCKER_LIST, config: DOCKER_CONFIG, layer: DOCKER_LAYER }
    : { manifest: OCI_MANIFEST, index: OCI_INDEX, config: OCI_CONFIG, layer: OCI_LAYER }

async function pushJson(registry: string, repo: string, reference: string | undefined, value: unknown, mediaType: string): Promise<Pushed> {
  const ref = reference ?? sha256(JSON.stringify(value))
  return { mediaType, ...(await pushManifest(registry, repo, ref, value, mediaType)) }
}

/** A two-platform index (arm64 listed first, so the pick is by platform, not position), every child pushed by digest. */
async function pushIndex(registry: string, tag: string, format: Format): Promise<IndexFixture> {
  const types = typesOf(format)
  const children: Record<string, Pushed> = {}
  for (const architecture of ['arm64', 'amd64']) {
    const seed = `local-negotiation/${tag}/${architecture}`
    const layer = seededBytes(seed, 700)
    const config = Buffer.from(JSON.stringify({ architecture, os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(layer)] }, seed }))
    await pushBlob(registry, REPO, config)
    await pushBlob(registry, REPO, layer)
    children[architecture] = await pushJson(registry, REPO, undefined, {
      schemaVersion: 2,
      mediaType: types.manifest,
      config: { mediaType: types.config, digest: sha256(config), size: config.length },
      layers: [{ mediaType: types.layer, digest: sha256(layer), size: layer.length }],
    }, types.manifest)
  }
  const { amd64, arm64 } = children as { amd64: Pushed; arm64: Pushed }
  const index = await pushJson(registry, REPO, tag, {
    schemaVersion: 2,
    mediaType: types.index,
    manifests: [
      { mediaType: arm64.mediaType, digest: arm64.digest, size: arm64.size, platform: { architecture: 'arm64', os: 'linux' } },
      { mediaType: amd64.mediaType, digest: amd64.digest, size: amd64.size, platform: { architecture: 'amd64', os: 'linux' } },
    ],
  }, types.index)
  return { format, tag, index, amd64, arm64 }
}

/** A referrer artifact of `subject`: an OCI manifest with a `subject` and an empty config. */
async function pushReferrer(registry: string, subject: Pushed, artifactType: string, note: string): Promise<Pushed> {
  const empty = Buffer.from('{}')
  await pushBlob(registry, REPO, empty)
  const payload = Buffer.from(`${note} of ${subject.digest}`)
  await pushBlob(registry, REPO, payload)
  return pushJson(registry, REPO, undefined, {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType,
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(empty), size: empty.length },
    layers: [{ mediaType: 'application/octet-stream', digest: sha256(payload), size: payload.length }],
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    annotations: { note },
  }, OCI_MANIFEST)
}

function errorOf(reply: Reply): { code?: string; message?: string } {
  try {
    return (JSON.parse(reply.body.toString('utf8')) as { errors: { code: string; message: string }[] }).errors[0] ?? {}
  } catch {
    return {}
  }
}

/** HEAD and GET of `path` with `accept`: both must answer `want` (its type, digest, length; GET its bytes). */
async function expectServed(t: Test, base: string, path: string, accept: string, want: Pushed, label: string): Promise<void> {
  for (const method of ['HEAD', 'GET'] as const) {
    const reply = await send(method, `${base}${path}`, accept)
    t.same(
      { status: reply.status, type: reply.headers['content-type'], digest: reply.headers['docker-content-digest'], length: reply.headers['content-length'] },
      { status: 200, type: want.mediaType, digest: want.digest, length: String(want.size) },
      `${label}: ${method} answers ${want.mediaType} ${want.digest.slice(7, 19)}`,
    )
    if (method === 'GET') t.ok(reply.body.equals(want.payload), `${label}: the stored bytes`)
  }
}

async function expectUnknown(t: Test, base: string, path: string, accept: string, storedType: string, label: string): Promise<void> {
  const head = await send('HEAD', `${base}${path}`, accept)
  t.equal(head.status, 404, `${label}: HEAD 404`)
  const reply = await send('GET', `${base}${path}`, accept)
  t.equal(reply.status, 404, `${label}: 404`)
  const error = errorOf(reply)
  t.equal(error.code, 'MANIFEST_UNKNOWN', `${label}: MANIFEST_UNKNOWN`)
  t.ok(error.message?.includes(storedType), `${label}: the message names the stored type ${storedType} (${error.message})`)
}

t.test('local mode on a tree Distribution wrote', async t => {
  const dir = t.testdir()
  // schema1 enabled so that one Distribution can also take the schema1 push below.
  const distribution: Distribution = await startDistribution(t, { config: { compatibility: { schema1: { enabled: true } } } })
  const list = await pushIndex(distribution.url, 'list', 'docker')
  const index = await pushIndex(distribution.url, 'index', 'oci')
  const listGone = await pushIndex(distribution.url, 'list-gone', 'docker')
  const indexGone = await pushIndex(distribution.url, 'index-gone', 'oci')
  // Children that are no longer stored: deleted from Distribution, their indexes kept.
  for (const gone of [listGone, indexGone]) {
    const deleted = await fetch(`${distribution.url}/v2/${REPO}/manifests/${gone.amd64.digest}`, { method: 'DELETE' })
    t.equal(deleted.status, 202, `${gone.tag}: Distribution deleted the amd64 child`)
  }
  const subject = index.amd64
  const signature = await pushReferrer(distribution.url, subject, SIG_TYPE, 'signature')
  const sbom = await pushReferrer(distribution.url, subject, SBOM_TYPE, 'sbom')
  const elsewhere = await pushReferrer(distribution.url, index.arm64, SIG_TYPE, 'signature of another')

  await writeOciImage(join(dir, 'image'), { tag: 'v1', seed: 'local-negotiation/schema1', layerSizes: [600, 900] })
  await pushLayout(join(dir, 'image'), 'v1', `${distribution.host}/${SCHEMA1_REPO}:v1`, { format: 'v2s1' })

  const local: InProcess = await startInProcess(t, distribution.root, {})
  const base = `${local.url}/v2/${REPO}`

  t.test('Distribution itself answers a narrow client of a tagged list with the amd64 child', async t => {
    const reply = await send('GET', `${distribution.url}/v2/${REPO}/manifests/list`, DOCKER_MANIFEST)
    t.equal(reply.headers['docker-content-digest'], list.amd64.digest, 'the behaviour Stevedore follows')
  })

  t.test('a capable client gets the stored index', async t => {
    await expectServed(t, base, '/manifests/list', `${DOCKER_LIST}, ${DOCKER_MANIFEST}`, list.index, 'Docker list')
    await expectServed(t, base, '/manifests/index', `${OCI_INDEX}, ${OCI_MANIFEST}`, index.index, 'OCI index')
  })

  t.test('by tag, an Accept listing only the child type gets the linux/amd64 child', async t => {
    await expectServed(t, base, '/manifests/list', DOCKER_MANIFEST, list.amd64, 'Docker list, Docker v2 client')
    await expectServed(t, base, '/manifests/index', OCI_MANIFEST, index.amd64, 'OCI index, OCI client')
  })

  t.test('by tag, when the amd64 child is not stored: MANIFEST_UNKNOWN naming the stored type', async t => {
    t.equal((await send('GET', `${base}/manifests/${listGone.amd64.digest}`, DOCKER_MANIFEST)).status, 404, 'the child is gone')
    t.equal((await send('GET', `${base}/manifests/${listGone.arm64.digest}`, DOCKER_MANIFEST)).status, 200, 'its sibling is not')
    await expectUnknown(t, base, '/manifests/list-gone', DOCKER_MANIFEST, DOCKER_LIST, 'Docker list without its amd64 child')
    await expectUnknown(t, base, '/manifests/index-gone', OCI_MANIFEST, OCI_INDEX, 'OCI index without its amd64 child')
    await expectServed(t, base, '/manifests/list-gone', DOCKER_LIST, listGone.index, 'the list itself is still served')
  })

  t.test('by tag, an Accept that takes neither the index nor its child: MANIFEST_UNKNOWN', async t => {
    await expectUnknown(t, base, '/manifests/index', DOCKER_MANIFEST, OCI_INDEX, 'OCI index, Docker v2 client')
    await expectUnknown(t, base, '/manifests/list', OCI_MANIFEST, DOCKER_LIST, 'Docker list, OCI client')
  })

  t.test('by digest, a non-matching Accept: MANIFEST_UNKNOWN, never a child', async t => {
    await expectUnknown(t, base, `/manifests/${list.index.digest}`, DOCKER_MANIFEST, DOCKER_LIST, 'Docker list by digest')
    await expectUnknown(t, base, `/manifests/${index.index.digest}`, OCI_MANIFEST, OCI_INDEX, 'OCI index by digest')
    await expectUnknown(t, base, `/manifests/${index.amd64.digest}`, DOCKER_MANIFEST, OCI_MANIFEST, 'OCI manifest by digest')
    await expectServed(t, base, `/manifests/${list.amd64.digest}`, DOCKER_MANIFEST, list.amd64, 'a matching Accept by digest')
  })

  t.test('the referrers API lists stored referrers and filters by artifactType', async t => {
    const descriptor = (m: Pushed, artifactType: string, note: string) => ({ mediaType: OCI_MANIFEST, digest: m.digest, size: m.size, artifactType, annotations: { note } })
    const all = await send('GET', `${base}/referrers/${subject.digest}`, OCI_INDEX)
    t.equal(all.status, 200)
    t.equal(all.headers['content-type'], OCI_INDEX)
    t.equal(all.headers['oci-filters-applied'], undefined, 'no filter asked, none applied')
    const allIndex = JSON.parse(all.body.toString('utf8')) as { schemaVersion: number; mediaType: string; manifests: unknown[] }
    t.equal(allIndex.schemaVersion, 2)
    t.equal(allIndex.mediaType, OCI_INDEX)
    t.same(
      allIndex.manifests,
      [descriptor(signature, SIG_TYPE, 'signature'), descriptor(sbom, SBOM_TYPE, 'sbom')].sort((a, b) => (a.digest < b.digest ? -1 : 1)),
      'both referrers of the subject, not the other subject\'s',
    )

    const sigs = await send('GET', `${base}/referrers/${subject.digest}?artifactType=${encodeURIComponent(SIG_TYPE)}`, OCI_INDEX)
    t.equal(sigs.status, 200)
    t.equal(sigs.headers['oci-filters-applied'], 'artifactType')
    t.same((JSON.parse(sigs.body.toString('utf8')) as { manifests: unknown[] }).manifests, [descriptor(signature, SIG_TYPE, 'signature')], 'only the signature')

    const other = await send('GET', `${base}/referrers/${index.arm64.digest}`, OCI_INDEX)
    t.same((JSON.parse(other.body.toString('utf8')) as { manifests: { digest: string }[] }).manifests.map(m => m.digest), [elsewhere.digest], 'each subject its own')
    const none = await send('GET', `${base}/referrers/${list.amd64.digest}`, OCI_INDEX)
    t.equal(none.status, 200, 'a subject without referrers: 200')
    t.same((JSON.parse(none.body.toString('utf8')) as { manifests: unknown[] }).manifests, [], 'with an empty index')
  })

  t.test('a schema1 revision stored without signatures is served signed, and the signature verifies', async t => {
    const tagLink = distributionPaths.tagCurrentLink(distribution.root, SCHEMA1_REPO, 'v1')
    const digest = (await readFile(tagLink, 'utf8')).trim()
    const revision = join(distributionPaths.repository(distribution.root, SCHEMA1_REPO), '_manifests/revisions/sha256', digest.slice(7))
    t.same(await readdir(revision), ['link'], 'Distribution stored the revision without signatures')
    const stored = await readFile(distributionPaths.blobData(distribution.root, digest))
    t.equal(sha256(stored), digest, 'the revision blob is the payload')

    for (const reference of ['v1', digest]) {
      const reply = await send('GET', `${local.url}/v2/${SCHEMA1_REPO}/manifests/${reference}`, SCHEMA1_SIGNED)
      t.equal(reply.status, 200, `by ${reference.slice(0, 12)}: 200`)
      t.equal(reply.headers['content-type'], SCHEMA1_SIGNED)
      t.equal(reply.headers['docker-content-digest'], digest, 'the digest of the stored payload')
      t.equal(Number(reply.headers['content-length']), reply.body.length)
      const signed = parseSignedManifest(reply.body)
      t.equal(signed.digest.value, digest, 'the signed document carries the stored payload')
      t.ok(signed.canonical.equals(stored), 'byte for byte')
      t.equal(signed.signatures.length, 1, 'with one signature')
      await t.resolves(verifySignatures(signed), 'that verifies')
    }
    t.same(await readdir(revision), ['link'], 'serving it stored nothing beside the revision')
  })
})
