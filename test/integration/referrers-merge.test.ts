// The referrers answer merges what the upstream's referrers API lists with what
// is stored locally for the subject (e.g. a site's own signature): one index,
// no duplicates; and without the API or a fallback tag, the 404 passes through.
import t from 'tap'
import { startFakeUpstream } from '../helpers/fake-upstream.js'
import { startInProcess } from '../helpers/inprocess.js'
import { sha256 } from '../helpers/push.js'
import { parseRepositoryName } from '../../src/registry/names.js'
import { FilesystemDriver } from '../../src/storage/filesystem.js'
import { LocalRegistry } from '../../src/storage/local.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
const REPO = 'team/app'

const subject = sha256('the image manifest')
const artifact = (artifactType: string, note: string): Buffer =>
  Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256('{}'), size: 2 },
      layers: [],
      subject: { mediaType: OCI_MANIFEST, digest: subject, size: 18 },
      annotations: { note },
    }),
  )

t.test('upstream and local referrers merge into one index', async t => {
  const upstream = await startFakeUpstream(REPO)
  t.teardown(() => upstream.close())
  const fromUpstream = artifact('application/vnd.example.sig', 'upstream')
  const shared = artifact('application/spdx+json', 'both')
  const localOnly = artifact('application/vnd.example.sig', 'site signing step')
  const descriptor = (payload: Buffer) => {
    const json = JSON.parse(payload.toString()) as { artifactType: string; annotations: Record<string, string> }
    return { mediaType: OCI_MANIFEST, digest: sha256(payload), size: payload.length, artifactType: json.artifactType, annotations: json.annotations }
  }
  upstream.referrers.set(subject, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [descriptor(fromUpstream), descriptor(shared)] })))

  const root = t.testdir()
  // What a local step stored beside the cache (pushing arrives later): two referrer manifests.
  const storage = new LocalRegistry(new FilesystemDriver(root)).storage
  const name = parseRepositoryName(REPO)
  for (const payload of [shared, localOnly]) {
    const { digest } = await storage.blobs.put(payload)
    await storage.revisions.link(name, digest)
  }
  const proxy = await startInProcess(t, root, { proxy: { remoteurl: upstream.url } })

  const reply = await fetch(`${proxy.url}/v2/${REPO}/referrers/${subject}`)
  t.equal(reply.status, 200)
  const index = (await reply.json()) as { manifests: { digest: string; annotations?: Record<string, string> }[] }
  t.same(
    index.manifests.map(m => m.digest).sort(),
    [fromUpstream, shared, localOnly].map(p => sha256(p)).sort(),
    'upstream, shared and local referrers, each once',
  )
  t.equal(reply.headers.get('oci-filters-applied'), null, 'no filter, no header')

  const sigs = await fetch(`${proxy.url}/v2/${REPO}/referrers/${subject}?artifactType=application%2Fvnd.example.sig`)
  t.same(
    ((await sigs.json()) as { manifests: { annotations?: Record<string, string> }[] }).manifests.map(m => m.annotations?.note).sort(),
    ['site signing step', 'upstream'],
    'the filter keeps the signatures from both sources',
  )
  t.equal(upstream.count('GET', '/referrers/'), 1, 'the upstream answer is cached like a tag')

  const other = sha256('an image nobody signed')
  const none = await fetch(`${proxy.url}/v2/${REPO}/referrers/${other}`)
  t.equal(none.status, 404, 'no API, no fallback tag, nothing local: the 404 passes through')
  t.equal(upstream.count('HEAD', `/manifests/${other.replace(':', '-')}`), 1, 'after trying the tag-schema fallback')

  const bad = await fetch(`${proxy.url}/v2/${REPO}/referrers/sha256:nothex`)
  t.equal(bad.status, 400, 'a malformed subject digest is refused')
})
