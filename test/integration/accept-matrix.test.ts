// What a tag points at must not depend on which client asked first. One real
// Distribution holds a Docker manifest list and an OCI index; for every order
// of four clients (Docker v2 only, OCI only, schema1 only, fully capable), a
// fresh Stevedore serves each client what its Accept allows (the stored
// index, its linux/amd64 child, or MANIFEST_UNKNOWN, never a conversion), the
// tag link on disk always holds the index's digest, and the upstream only
// ever hears the full Accept. Then the same by digest, and skopeo after a
// narrow client came first.
import { createHash } from 'node:crypto'
import { createServer, request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { distributionPaths } from '../helpers/distribution-paths.js'
import { startDistribution } from '../helpers/distribution.js'
import { startInProcess, type InProcess } from '../helpers/inprocess.js'
import { pushBlob, pushManifest } from '../helpers/push.js'
import { skopeo } from '../helpers/skopeo.js'
import { writeLayerBlob } from '../helpers/tar-layer.js'
import type { Teardown } from '../helpers/tmp.js'
import { OCI_MANIFEST, OCI_INDEX, OCI_CONFIG, OCI_LAYER, DOCKER_MANIFEST, DOCKER_LIST, DOCKER_CONFIG, DOCKER_LAYER, SCHEMA1_SIGNED, SCHEMA1 } from '../helpers/media-types.js'
import { send, type Reply } from '../helpers/http.js'

const ALL_TYPES = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST, SCHEMA1_SIGNED, SCHEMA1]
const REPO = 'team/app'
const EPOCH = '1970-01-01T00:00:00Z'

const CLIENTS = {
  'docker-v2-only': [DOCKER_MANIFEST],
  'oci-only': [OCI_MANIFEST],
  'schema1-only': [SCHEMA1_SIGNED, SCHEMA1],
  full: [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST],
} as const
type Client = keyof typeof CLIENTS
const CLIENT_NAMES = Object.keys(CLIENTS) as Client[]
const acceptOf = (client: Client): string => CLIENTS[client].join(', ')

interface Pushed {
  mediaType: string
  digest: string
  size: number
  payload: Buffer
}

interface Fixture {
  tag: string
  format: 'docker' | 'oci'
  index: Pushed
  amd64: Pushed
  arm64: Pushed
  /** Config and layer bytes of both platforms, by digest. */
  blobs: Map<string, Buffer>
}

const sha256 = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`

/** Pushes a two-platform index (Docker list or OCI index) with one config and one layer per platform; every byte known. */
async function pushFixture(registry: string, scratch: string, tag: string, format: Fixture['format']): Promise<Fixture> {
  const types = format === 'docker'
    ? { manifest: DOCKER_MANIFEST, index: DOCKER_LIST, config: DOCKER_CONFIG, layer: DOCKER_LAYER }
    : { manifest: OCI_MANIFEST, index: OCI_INDEX, config: OCI_CONFIG, layer: OCI_LAYER }
  const blobs = new Map<string, Buffer>()
  const children: Pushed[] = []
  for (const [i, architecture] of ['amd64', 'arm64'].entries()) {
    const seed = `accept-matrix/${format}/${architecture}`
    const layerInfo = await writeLayerBlob(scratch, { seed, size: 300 + 200 * i, fileName: `${architecture}.bin`, compression: 'gzip' })
    const layer = await readFile(join(scratch, layerInfo.digest.slice('sha256:'.length)))
    const config = Buffer.from(JSON.stringify({
      created: EPOCH,
      architecture,
      os: 'linux',
      config: { Cmd: ['/bin/sh'], Labels: { seed } },
      rootfs: { type: 'layers', diff_ids: [layerInfo.diffId] },
      history: [{ created: EPOCH, created_by: seed }],
    }))
    for (const data of [config, layer]) {
      await pushBlob(registry, REPO, data)
      blobs.set(sha256(data), data)
    }
    const manifest = {
      schemaVersion: 2,
      mediaType: types.manifest,
      config: { mediaType: types.config, digest: sha256(config), size: config.length },
      layers: [{ mediaType: types.layer, digest: sha256(layer), size: layer.length }],
    }
    const pushed = await pushManifest(registry, REPO, sha256(Buffer.from(JSON.stringify(manifest))), manifest, types.manifest)
    children.push({ mediaType: types.manifest, ...pushed })
  }
  const [amd64, arm64] = children as [Pushed, Pushed]
  const index = {
    schemaVersion: 2,
    mediaType: types.index,
    manifests: [amd64, arm64].map((m, i) => ({
      mediaType: m.mediaType,
      digest: m.digest,
      size: m.size,
      platform: { architecture: i === 0 ? 'amd64' : 'arm64', os: 'linux' },
    })),
  }
  const pushedIndex = await pushManifest(registry, REPO, tag, index, types.index)
  return { tag, format, index: { mediaType: types.index, ...pushedIndex }, amd64, arm64, blobs }
}

interface Seen {
  method: string
  path: string
  accept: string | undefined
}

/**
 * A transparent forwarder in front of the upstream that records each request's
 * Accept header (Distribution's access log does not show it).
 */
async function startRecorder(t: Teardown, target: string): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = []
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', path: req.url ?? '', accept: req.headers.accept })
    const out = request(new URL(req.url ?? '/', target), { method: req.method, headers: req.headers }, upstream => {
      res.writeHead(upstream.statusCode ?? 502, upstream.headers)
      upstream.pipe(res)
    })
    out.on('error', err => res.destroy(err))
    req.pipe(out)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => {
    server.closeAllConnections()
    server.close(() => resolve())
  }))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}

/** What HEAD and GET must agree on. */
const summary = (r: Reply): Record<string, unknown> => ({
  status: r.status,
  contentType: r.headers['content-type'],
  digest: r.headers['docker-content-digest'],
  length: r.headers['content-length'],
})

/** What `client` must get by tag for `f`: the index, its amd64 child, or nothing (404). */
function byTag(f: Fixture, client: Client): Pushed | undefined {
  if (client === 'full') return f.index
  if (client === 'docker-v2-only') return f.format === 'docker' ? f.amd64 : undefined
  if (client === 'oci-only') return f.format === 'oci' ? f.amd64 : undefined
  return undefined
}

const nameOf = (f: Fixture, m: Pushed | undefined): string =>
  m === undefined ? '404' : m === f.index ? 'the index' : m === f.amd64 ? 'the amd64 child' : 'the arm64 child'

async function readLink(root: string, tag: string): Promise<string | undefined> {
  return readFile(distributionPaths.tagCurrentLink(root, REPO, tag), 'utf8').catch(() => undefined)
}

/** One HEAD then one GET of `reference` with `accept`, checked against `want` (undefined: MANIFEST_UNKNOWN naming `storedType`). */
async function check(t: Test, url: string, accept: string | undefined, want: Pushed | undefined, storedType: string, label: string): Promise<void> {
  const head = await send('HEAD', url, accept)
  const get = await send('GET', url, accept)
  t.same(summary(head), summary(get), `${label}: HEAD and GET agree`)
  t.equal(head.body.length, 0, `${label}: HEAD has no body`)
  if (want !== undefined) {
    t.same(
      summary(get),
      { status: 200, contentType: want.mediaType, digest: want.digest, length: String(want.size) },
      `${label}: 200, ${want.mediaType} ${want.digest.slice(7, 19)}`,
    )
    t.ok(get.body.equals(want.payload), `${label}: the bytes the upstream has`)
    return
  }
  t.equal(get.status, 404, `${label}: 404`)
  let body: unknown
  try {
    body = JSON.parse(get.body.toString('utf8'))
  } catch {
    body = get.body.toString('utf8')
  }
  t.match(body, { errors: [{ code: 'MANIFEST_UNKNOWN', message: storedType }] }, `${label}: MANIFEST_UNKNOWN naming ${storedType}`)
}

/** Every manifest request the upstream heard since `from` carried every manifest type. */
function assertFullAccept(t: Test, seen: Seen[], from: number, label: string): void {
  const narrowed = seen.slice(from).filter(r => r.path.includes('/manifests/')).filter(r => {
    const types = (r.accept ?? '').split(',').map(s => s.split(';')[0]?.trim())
    return !ALL_TYPES.every(type => types.includes(type))
  })
  t.same(narrowed, [], `${label}: the upstream never heard a narrowed Accept`)
}

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]]
  return items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map(rest => [item, ...rest]))
}

t.test('Accept matrix against a real Distribution', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  const docker = await pushFixture(upstream.url, join(dir, 'layers'), 'multiarch-docker', 'docker')
  const oci = await pushFixture(upstream.url, join(dir, 'layers'), 'multiarch-oci', 'oci')
  const fixtures = [docker, oci]
  const recorder = await startRecorder(t, upstream.url)
  const proxyConfig = { proxy: { remoteurl: recorder.url } }

  t.test('what Distribution itself answers (why a forwarded Accept would be caught)', async t => {
    for (const f of fixtures) {
      for (const client of CLIENT_NAMES) {
        const r = await send('GET', `${upstream.url}/v2/${REPO}/manifests/${f.tag}`, acceptOf(client))
        t.comment(`${f.tag} ${client}: ${r.status} ${r.headers['content-type'] ?? ''} ${r.headers['docker-content-digest'] ?? ''}`)
      }
    }
    const narrow = await send('HEAD', `${upstream.url}/v2/${REPO}/manifests/${docker.tag}`, acceptOf('docker-v2-only'))
    t.equal(narrow.headers['docker-content-digest'], docker.amd64.digest, 'a docker-v2-only HEAD of the list gets the amd64 child upstream')
    const ociNarrow = await send('HEAD', `${upstream.url}/v2/${REPO}/manifests/${oci.tag}`, acceptOf('oci-only'))
    t.equal(ociNarrow.status, 404, 'an oci-only HEAD of the OCI index is a 404 upstream')
    const converted = await send('HEAD', `${upstream.url}/v2/${REPO}/manifests/${docker.tag}`, acceptOf('oci-only'))
    t.not(converted.headers['docker-content-digest'], docker.index.digest, 'an oci-only HEAD of the list gets something else upstream')
  })

  for (const f of fixtures) {
    for (const order of permutations(CLIENT_NAMES)) {
      t.test(`${f.tag}: ${order.join(' → ')}`, async t => {
        const root = t.testdir()
        const proxy = await startInProcess(t, root, proxyConfig)
        const url = `${proxy.url}/v2/${REPO}/manifests/${f.tag}`
        const from = recorder.seen.length
        for (const [i, client] of order.entries()) {
          const label = `step ${i + 1} ${client}`
          const want = byTag(f, client)
          await check(t, url, acceptOf(client), want, f.index.mediaType, `${label} gets ${nameOf(f, want)}`)
          t.equal(await readLink(root, f.tag), f.index.digest, `${label}: the tag link holds the index, not a child`)
        }
        await check(t, url, undefined, f.index, f.index.mediaType, 'no Accept at all gets what is stored')
        assertFullAccept(t, recorder.seen, from, f.tag)
      })
    }
  }

  t.test('by digest: the bytes asked for, or MANIFEST_UNKNOWN', async t => {
    const root = t.testdir()
    const proxy = await startInProcess(t, root, proxyConfig)
    const from = recorder.seen.length
    const at = (m: Pushed): string => `${proxy.url}/v2/${REPO}/manifests/${m.digest}`
    // a narrow client first, on a cold cache: the list is fetched (with the full Accept) and still refused
    await check(t, at(docker.index), acceptOf('docker-v2-only'), undefined, DOCKER_LIST, 'the list by digest, docker-v2-only')
    await check(t, at(docker.amd64), acceptOf('docker-v2-only'), docker.amd64, DOCKER_MANIFEST, 'the amd64 child by digest, docker-v2-only')
    for (const f of fixtures) {
      for (const m of [f.index, f.amd64, f.arm64]) {
        for (const client of CLIENT_NAMES) {
          const want = (CLIENTS[client] as readonly string[]).includes(m.mediaType) ? m : undefined
          await check(t, at(m), acceptOf(client), want, m.mediaType, `${f.tag} ${nameOf(f, m)} by digest, ${client}`)
        }
        await check(t, at(m), undefined, m, m.mediaType, `${f.tag} ${nameOf(f, m)} by digest, no Accept`)
      }
      t.equal(await readLink(root, f.tag), undefined, `${f.tag}: fetching by digest tagged nothing`)
    }
    assertFullAccept(t, recorder.seen, from, 'by digest')
  })

  t.test('skopeo after a narrow client came first', async t => {
    const work = t.testdir()
    const proxy = await startInProcess(t, join(work, 'cache'), proxyConfig)
    const from = recorder.seen.length
    for (const f of fixtures) {
      const narrow: Client = f.format === 'docker' ? 'docker-v2-only' : 'oci-only'
      const head = await send('HEAD', `${proxy.url}/v2/${REPO}/manifests/${f.tag}`, acceptOf(narrow))
      t.equal(head.headers['docker-content-digest'], f.amd64.digest, `${f.tag}: the ${narrow} HEAD got the amd64 child`)
      t.equal(await readLink(proxy.root, f.tag), f.index.digest, `${f.tag}: after the ${narrow} HEAD the link holds the index`)

      const all = await copy(proxy, f, join(work, `${f.format}-all`), ['--all'])
      t.equal(all.top, f.index.digest, `${f.tag}: skopeo --all copied the index with the upstream's digest`)
      t.same(all.manifests, [f.amd64.digest, f.arm64.digest].sort(), `${f.tag}: and both platforms' manifests`)
      t.same(all.blobs, [...f.blobs.keys()].sort(), `${f.tag}: and both platforms' configs and layers`)
      t.same(all.corrupt, [], `${f.tag}: every file byte-identical to what was pushed`)
      t.equal(await readLink(proxy.root, f.tag), f.index.digest, `${f.tag}: after skopeo --all the link holds the index`)

      const arm = await copy(proxy, f, join(work, `${f.format}-arm64`), ['--override-arch', 'arm64', '--override-os', 'linux'])
      t.equal(arm.top, f.arm64.digest, `${f.tag}: skopeo --override-arch arm64 copied the arm64 manifest as pushed`)
      t.same(arm.blobs, blobsOf(f.arm64), `${f.tag}: with the arm64 config and layer`)
      t.same(arm.corrupt, [], `${f.tag}: arm64 copy byte-identical`)
      t.equal(await readLink(proxy.root, f.tag), f.index.digest, `${f.tag}: after the arm64 copy the link still holds the index`)
    }
    assertFullAccept(t, recorder.seen, from, 'skopeo')
  })
})

/** The config and layer digests a manifest names, sorted. */
function blobsOf(m: Pushed): string[] {
  const doc = JSON.parse(m.payload.toString('utf8')) as { config: { digest: string }; layers: { digest: string }[] }
  return [doc.config.digest, ...doc.layers.map(l => l.digest)].sort()
}

interface Copied {
  /** Digest of what the copy's top-level manifest is. */
  top: string
  /** Digests of the other manifests written, sorted. */
  manifests: string[]
  /** Digests of the other blobs written, sorted. */
  blobs: string[]
  /** Files whose bytes differ from what was pushed under that digest. */
  corrupt: string[]
}

/**
 * `skopeo copy --preserve-digests` of the tag through Stevedore. An OCI index
 * goes to an oci: layout; a Docker list to a dir: directory, because an oci:
 * layout can only hold OCI manifests and skopeo would convert it.
 */
async function copy(proxy: InProcess, f: Fixture, dest: string, flags: string[]): Promise<Copied> {
  const target = f.format === 'oci' ? `oci:${dest}:${f.tag}` : `dir:${dest}`
  await skopeo(['--insecure-policy', 'copy', '--src-tls-verify=false', '--preserve-digests', ...flags, `docker://${proxy.host}/${REPO}:${f.tag}`, target])
  const known = new Map<string, Buffer>([...[f.index, f.amd64, f.arm64].map(m => [m.digest, m.payload] as const), ...f.blobs])
  const files = new Map<string, Buffer>()
  let top: string
  if (f.format === 'oci') {
    const layoutIndex = JSON.parse(await readFile(join(dest, 'index.json'), 'utf8')) as { manifests: { digest: string }[] }
    top = layoutIndex.manifests[0]?.digest ?? ''
    for (const hex of await readdir(join(dest, 'blobs/sha256'))) files.set(`sha256:${hex}`, await readFile(join(dest, 'blobs/sha256', hex)))
  } else {
    const topBytes = await readFile(join(dest, 'manifest.json'))
    top = sha256(topBytes)
    files.set(top, topBytes)
    for (const name of await readdir(dest)) {
      const m = /^([a-f0-9]{64})(\.manifest\.json)?$/.exec(name)
      if (m !== null) files.set(`sha256:${m[1]}`, await readFile(join(dest, name)))
    }
  }
  const manifests = new Set([f.index.digest, f.amd64.digest, f.arm64.digest])
  const rest = [...files.keys()].filter(d => d !== top)
  return {
    top,
    manifests: rest.filter(d => manifests.has(d)).sort(),
    blobs: rest.filter(d => !manifests.has(d)).sort(),
    corrupt: [...files].filter(([digest, bytes]) => !(known.get(digest)?.equals(bytes) ?? false)).map(([digest]) => digest),
  }
}
