// Two real Distributions behind one Stevedore, holding the same name and tag
// with different content: each is reached by its own route (plain name, host
// path prefix, ?ns=), stored under its own namespace, and never served from
// the other's cache. Hosts are keys, never addresses: an unconfigured ?ns=
// opens no connection, an unconfigured path prefix is part of the name.
import { readFile } from 'node:fs/promises'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { settle, type LoggedRequest } from '../helpers/access-log.js'
import { compareLayoutBlobs } from '../helpers/blobs.js'
import { startDistribution, type Distribution } from '../helpers/distribution.js'
import { distributionPaths as paths } from '../helpers/distribution-paths.js'
import { rawGet, type RawReply } from '../helpers/http.js'
import { OCI_INDEX, OCI_MANIFEST, writeOciImage, type ImageDescription } from '../helpers/images.js'
import { startInProcess } from '../helpers/inprocess.js'
import { pushBlob, pushManifest } from '../helpers/push.js'
import { pullToLayout } from '../helpers/skopeo.js'

const ACCEPT = { Accept: `${OCI_MANIFEST}, ${OCI_INDEX}` }
const REPO = 'team/app'
const NS = 'second.example'

interface Pushed {
  image: ImageDescription
  layout: string
  manifest: Buffer
  /** The first layer's digest and bytes. */
  layer: { digest: string; bytes: Buffer }
}

const layoutBlob = (layout: string, digest: string): Promise<Buffer> => readFile(join(layout, 'blobs/sha256', digest.slice('sha256:'.length)))

/** Pushes a layout's image blob by blob, then its manifest bytes unchanged: the digests are the layout's. */
async function pushImage(registry: Distribution, repo: string, layout: string, image: ImageDescription): Promise<Pushed> {
  for (const descriptor of image.blobs) {
    const { digest } = await pushBlob(registry.url, repo, await layoutBlob(layout, descriptor.digest))
    if (digest !== descriptor.digest) throw new Error(`pushed ${digest}, expected ${descriptor.digest}`)
  }
  const manifest = await layoutBlob(layout, image.manifestDigest)
  const pushed = await pushManifest(registry.url, repo, image.tag, JSON.parse(manifest.toString('utf8')), OCI_MANIFEST)
  if (pushed.digest !== image.manifestDigest || !pushed.payload.equals(manifest)) throw new Error('the manifest changed on its way')
  const first = image.manifests[0]?.layers[0]
  if (first === undefined) throw new Error('an image without layers')
  return { image, layout, manifest, layer: { digest: first.digest, bytes: await layoutBlob(layout, first.digest) } }
}

/** The first OCI error of a reply; {} when its body is none (e.g. a manifest). */
function errorOf(reply: RawReply): { code?: string; message?: string } {
  try {
    return (JSON.parse(reply.body.toString('utf8')) as { errors?: { code?: string; message?: string }[] }).errors?.[0] ?? {}
  } catch {
    return {}
  }
}

const readLink = (path: string): Promise<string> => readFile(path, 'utf8').catch(() => '(none)')

/** What Stevedore asked `registry` for (by User-Agent), as `METHOD path` lines. */
const asked = async (registry: Distribution): Promise<string[]> => (await settle(registry)).map((r: LoggedRequest) => `${r.method} ${r.path}`)

t.test('two upstreams, one name and tag, two images', async t => {
  const dir = t.testdir()
  const [a, b] = await Promise.all([startDistribution(t), startDistribution(t)])
  const [imageA, imageB] = await Promise.all([
    writeOciImage(join(dir, 'image-a'), { tag: '1.0', seed: 'many-upstreams/a', layerSizes: [3000, 20_000] }),
    writeOciImage(join(dir, 'image-b'), { tag: '1.0', seed: 'many-upstreams/b', layerSizes: [4000] }),
  ])
  const A = await pushImage(a, REPO, join(dir, 'image-a'), imageA)
  const B = await pushImage(b, REPO, join(dir, 'image-b'), imageB)
  // The same name in A with a host-like first segment: what an unconfigured prefix must reach.
  await pushImage(a, `unknown.example/${REPO}`, join(dir, 'image-a'), imageA)
  t.not(A.image.manifestDigest, B.image.manifestDigest, 'the two images differ')

  const root = join(dir, 'cache')
  const stevedore = await startInProcess(t, root, {
    proxy: { remoteurl: a.url },
    upstreams: { second: { remoteurl: b.url, hosts: [NS] } },
  })
  const get = (path: string, headers: Record<string, string> = ACCEPT): Promise<RawReply> => rawGet(`${stevedore.url}${path}`, headers)

  t.test('skopeo pulls B by its path prefix and A by the plain name', async t => {
    await pullToLayout(`${stevedore.host}/${NS}/${REPO}:1.0`, join(dir, 'pulled-b'), '1.0')
    await pullToLayout(`${stevedore.host}/${REPO}:1.0`, join(dir, 'pulled-a'), '1.0')
    t.same(await compareLayoutBlobs(B.layout, join(dir, 'pulled-b')), [], "the prefixed pull is B's image, byte for byte")
    t.same(await compareLayoutBlobs(A.layout, join(dir, 'pulled-a')), [], "the plain pull is A's image, byte for byte")
    const pulledB = JSON.parse(await readFile(join(dir, 'pulled-b/index.json'), 'utf8')) as { manifests: { digest: string }[] }
    t.same(pulledB.manifests.map(m => m.digest), [B.image.manifestDigest], "and its tag names B's manifest")
    const pulledA = JSON.parse(await readFile(join(dir, 'pulled-a/index.json'), 'utf8')) as { manifests: { digest: string }[] }
    t.same(pulledA.manifests.map(m => m.digest), [A.image.manifestDigest], "the other A's")
  })

  t.test('?ns= picks the upstream over raw HTTP', async t => {
    const manifestB = await get(`/v2/${REPO}/manifests/1.0?ns=${NS}`)
    t.equal(manifestB.status, 200)
    t.ok(manifestB.body.equals(B.manifest), "?ns=second.example: B's manifest bytes")
    t.equal(manifestB.headers['docker-content-digest'], B.image.manifestDigest)
    const blobB = await get(`/v2/${REPO}/blobs/${B.layer.digest}?ns=${NS}`, {})
    t.equal(blobB.status, 200)
    t.ok(blobB.body.equals(B.layer.bytes), "and B's layer bytes")

    const manifestA = await get(`/v2/${REPO}/manifests/1.0`)
    t.ok(manifestA.body.equals(A.manifest), "the plain name: A's manifest bytes")
    const blobA = await get(`/v2/${REPO}/blobs/${A.layer.digest}`, {})
    t.ok(blobA.body.equals(A.layer.bytes), "and A's layer bytes")

    const byHost = await get(`/v2/${REPO}/manifests/1.0?ns=${a.host}`)
    t.equal(byHost.status, 200)
    t.ok(byHost.body.equals(A.manifest), "?ns=<A's host:port> routes to A")
    const overridePath = await get(`/v2/${NS}/${REPO}/manifests/1.0?ns=${NS}`)
    t.ok(overridePath.body.equals(B.manifest), 'a prefix naming the ?ns= upstream is dropped (override_path)')
  })

  t.test('stored apart on disk', async t => {
    const nsRepo = `${NS}/${REPO}`
    t.equal(await readLink(paths.tagCurrentLink(root, REPO, '1.0')), A.image.manifestDigest, "repositories/team/app: A's tag")
    t.equal(await readLink(paths.tagCurrentLink(root, nsRepo, '1.0')), B.image.manifestDigest, "repositories/second.example/team/app: B's tag")
    t.equal(await readLink(paths.manifestRevisionLink(root, REPO, B.image.manifestDigest)), '(none)', "no revision of B's manifest under A's name")
    t.equal(await readLink(paths.manifestRevisionLink(root, nsRepo, A.image.manifestDigest)), '(none)', "no revision of A's under B's")
    for (const blob of A.image.blobs) {
      t.equal(await readLink(paths.layerLink(root, REPO, blob.digest)), blob.digest, `A's ${blob.digest.slice(7, 19)} linked under team/app`)
      t.equal(await readLink(paths.layerLink(root, nsRepo, blob.digest)), '(none)', 'and not under second.example/team/app')
    }
    for (const blob of B.image.blobs) {
      t.equal(await readLink(paths.layerLink(root, nsRepo, blob.digest)), blob.digest, `B's ${blob.digest.slice(7, 19)} linked under second.example/team/app`)
      t.equal(await readLink(paths.layerLink(root, REPO, blob.digest)), '(none)', 'and not under team/app')
    }
  })

  t.test("one upstream's digests are not served from the other's cache", async t => {
    const beforeA = (await asked(a)).length
    const beforeB = (await asked(b)).length
    const cases: [string, string, RawReply][] = [
      ["A's manifest via B's prefix", 'MANIFEST_UNKNOWN', await get(`/v2/${NS}/${REPO}/manifests/${A.image.manifestDigest}`)],
      ["A's manifest via B's ?ns=", 'MANIFEST_UNKNOWN', await get(`/v2/${REPO}/manifests/${A.image.manifestDigest}?ns=${NS}`)],
      ["A's layer via B's prefix", 'BLOB_UNKNOWN', await get(`/v2/${NS}/${REPO}/blobs/${A.layer.digest}`, {})],
      ["A's layer via B's ?ns=", 'BLOB_UNKNOWN', await get(`/v2/${REPO}/blobs/${A.layer.digest}?ns=${NS}`, {})],
      ["B's manifest via A", 'MANIFEST_UNKNOWN', await get(`/v2/${REPO}/manifests/${B.image.manifestDigest}`)],
      ["B's manifest via ?ns=<A's host>", 'MANIFEST_UNKNOWN', await get(`/v2/${REPO}/manifests/${B.image.manifestDigest}?ns=${a.host}`)],
      ["B's layer via A", 'BLOB_UNKNOWN', await get(`/v2/${REPO}/blobs/${B.layer.digest}`, {})],
    ]
    for (const [what, code, reply] of cases) {
      t.equal(reply.status, 404, `${what}: 404`)
      t.equal(errorOf(reply).code, code, `${what}: ${code}`)
    }
    const toA = (await asked(a)).slice(beforeA)
    const toB = (await asked(b)).slice(beforeB)
    t.ok(toB.some(line => line.endsWith(`/v2/${REPO}/manifests/${A.image.manifestDigest}`)), "B was asked for A's manifest digest")
    t.ok(toB.some(line => line.endsWith(`/v2/${REPO}/blobs/${A.layer.digest}`)), "B was asked for A's layer")
    t.notOk(toA.some(line => line.includes(A.image.manifestDigest) || line.includes(A.layer.digest)), "A was not asked about its own digests")
    t.ok(toA.some(line => line.endsWith(`/v2/${REPO}/manifests/${B.image.manifestDigest}`)), "A was asked for B's manifest digest")
    t.ok(toA.some(line => line.endsWith(`/v2/${REPO}/blobs/${B.layer.digest}`)), "A was asked for B's layer")
    t.equal(await readLink(paths.manifestRevisionLink(root, `${NS}/${REPO}`, A.image.manifestDigest)), '(none)', 'and nothing got linked across')
    t.equal(await readLink(paths.layerLink(root, REPO, B.layer.digest)), '(none)')
  })

  t.test('the catalog lists both names', async t => {
    const catalog = await get('/v2/_catalog', {})
    t.equal(catalog.status, 200)
    t.same(JSON.parse(catalog.body.toString('utf8')), { repositories: [`${NS}/${REPO}`, REPO] })
  })

  t.test('an unconfigured ?ns= is NAME_UNKNOWN and opens no connection', async t => {
    const connections: Socket[] = []
    const listener = createServer(socket => {
      connections.push(socket)
      socket.destroy()
    })
    await new Promise<void>(resolve => listener.listen(0, '127.0.0.1', resolve))
    t.teardown(() => new Promise<void>(resolve => listener.close(() => resolve())))
    const address = listener.address()
    if (address === null || typeof address === 'string') throw new Error('no port')
    const listening = `127.0.0.1:${address.port}`
    const beforeA = (await asked(a)).length
    const beforeB = (await asked(b)).length

    // localhost:<A's port> reaches A, but is not a host configured for it: hosts are keys, not addresses.
    for (const ns of [listening, 'ghcr.io', `localhost:${a.port}`]) {
      for (const path of [`/v2/${REPO}/manifests/1.0`, `/v2/${REPO}/blobs/${A.layer.digest}`, `/v2/${REPO}/tags/list`]) {
        const reply = await get(`${path}?ns=${encodeURIComponent(ns)}`)
        t.equal(reply.status, 404, `${path}?ns=${ns}: 404`)
        t.match(reply.headers['content-type'], /^application\/json/)
        const error = errorOf(reply)
        t.equal(error.code, 'NAME_UNKNOWN', 'NAME_UNKNOWN, in an OCI error body')
        t.type(error.message, 'string')
      }
    }
    // A prefix with a port cannot be a name component: refused as a name, nothing opened either.
    const portPrefix = await get(`/v2/${listening}/${REPO}/manifests/1.0`)
    t.equal(portPrefix.status, 400, 'a host:port path prefix is an invalid name')
    t.equal(errorOf(portPrefix).code, 'NAME_INVALID')

    t.same((await asked(a)).slice(beforeA), [], 'neither upstream was asked')
    t.same((await asked(b)).slice(beforeB), [])
    t.equal(connections.length, 0, 'and the listener named by ?ns= received no connection')
  })

  t.test('an unconfigured path prefix is part of the name on the default upstream', async t => {
    const beforeA = (await asked(a)).length
    const beforeB = (await asked(b)).length
    const reply = await get(`/v2/unknown.example/${REPO}/manifests/1.0`)
    t.equal(reply.status, 200, 'A holds unknown.example/team/app')
    t.ok(reply.body.equals(A.manifest))
    const missing = await get(`/v2/127.0.0.1/${REPO}/manifests/1.0`)
    t.equal(missing.status, 404, "a port-less 127.0.0.1 is no configured host either: A's 404")
    const toA = (await asked(a)).slice(beforeA)
    t.ok(toA.includes(`HEAD /v2/unknown.example/${REPO}/manifests/1.0`), 'A was asked with the full name')
    t.ok(toA.includes(`HEAD /v2/127.0.0.1/${REPO}/manifests/1.0`), 'likewise for 127.0.0.1/team/app')
    t.notOk(toA.some(line => line.includes(`/v2/${REPO}/`)), 'never with the prefix dropped')
    t.same((await asked(b)).slice(beforeB), [], 'B was not asked')
    t.equal(await readLink(paths.tagCurrentLink(root, `unknown.example/${REPO}`, '1.0')), A.image.manifestDigest, 'stored under the full name')
  })

  // The default upstream stores at the root, so its repository `second.example/team/app`
  // (reached by ?ns=<A's host>, where another upstream's prefix is not dropped) would be the
  // storage name of B's `team/app`: it is refused, and B's cache is never crossed.
  t.test("A's repository named like B's namespace does not cross B's", async t => {
    const imageC = await writeOciImage(join(dir, 'image-c'), { tag: '1.0', seed: 'many-upstreams/c', layerSizes: [500] })
    await pushImage(a, `${NS}/${REPO}`, join(dir, 'image-c'), imageC)
    const viaA = `/v2/${NS}/${REPO}/manifests/1.0?ns=${a.host}`
    const viaB = `/v2/${NS}/${REPO}/manifests/1.0`

    const fromA = await get(viaA)
    t.equal(fromA.status, 403, "?ns=<A's host> for a name in B's namespace is refused, not answered with B's image")
    t.not(fromA.headers['docker-content-digest'], B.image.manifestDigest)

    // A's asked first, on a fresh cache: B's route must still serve B's image.
    const fresh = join(dir, 'cache-fresh')
    const other = await startInProcess(t, fresh, { proxy: { remoteurl: a.url }, upstreams: { second: { remoteurl: b.url, hosts: [NS] } } })
    t.equal((await rawGet(`${other.url}${viaA}`, ACCEPT)).status, 403, 'refused on a fresh cache too, storing nothing')
    const fromB = await rawGet(`${other.url}${viaB}`, ACCEPT)
    t.equal(fromB.headers['docker-content-digest'], B.image.manifestDigest, "B's route serves B's image")
    t.equal(await readLink(paths.tagCurrentLink(fresh, `${NS}/${REPO}`, '1.0')), B.image.manifestDigest, "and B's tag link holds B's digest")
  })
})
