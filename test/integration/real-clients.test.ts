// containerd and podman from Debian pull through one Stevedore that mirrors
// two real Distributions, each holding the same repository names with other
// content: every image must come from the upstream its route names (containerd's
// `?ns=`, an `override_path` mirror, podman's path prefix, the default
// upstream), be stored under that upstream's namespace, and never reach a
// registry except through Stevedore.
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { accessLog, settle, type LoggedRequest } from '../helpers/access-log.js'
import { startContainerd, writeHostsDir } from '../helpers/containerd.js'
import { startDistribution, type Distribution } from '../helpers/distribution.js'
import { distributionPaths } from '../helpers/distribution-paths.js'
import { OCI_MANIFEST, writeOciImage, type ImageDescription, type Platform } from '../helpers/images.js'
import { podmanSandbox } from '../helpers/podman.js'
import { pushBlob, pushManifest } from '../helpers/push.js'
import { startStevedore, type LogRecord, type StevedoreProc } from '../helpers/stevedore.js'
import { tempDir } from '../helpers/tmp.js'

/** tcpmux: below every ephemeral port range, so no server a parallel test starts can be there. */
const NOWHERE = '127.0.0.1:1'
const SECOND = 'registry.second.test'
const REPOS = ['library/hello', 'myorg/hello'] as const

interface Pull {
  /** What the client asks for. */
  ref: string
  image: ImageDescription
  upstream: Distribution
  /** The other one, which must see nothing of this pull. */
  other: Distribution
  /** Stevedore's name for the upstream, in its access log. */
  upstreamName: string
  /** The repository's name upstream and in Stevedore's storage. */
  repo: string
  stored: string
  /** containerd: through the `override_path` mirror rather than by `?ns=` alone. */
  overridePath: boolean
}

t.test('containerd and podman pull through one Stevedore mirroring two upstreams', async t => {
  const work = await tempDir(t, 'real-clients')
  const [a, b] = await Promise.all([startDistribution(t), startDistribution(t)])
  const platform = hostPlatform()
  const pushed = new Map<Distribution, Map<string, ImageDescription>>()
  for (const [label, upstream] of [['a', a], ['b', b]] as const) {
    const images = new Map<string, ImageDescription>()
    for (const repo of REPOS) images.set(repo, await pushImage(upstream, repo, join(work, label, repo), `real-clients/${label}/${repo}`, platform))
    pushed.set(upstream, images)
  }

  const storage = join(work, 'storage')
  const stevedore = await startStevedore(t, {
    config: {
      storage: { filesystem: { rootdirectory: storage } },
      // tagttl 0: every tag request is checked upstream, so the warm podman pulls show their route in the upstreams' logs too
      proxy: { remoteurl: a.url, hosts: ['docker.io'], tagttl: '0' },
      upstreams: { second: { remoteurl: b.url, hosts: [SECOND] } },
    },
  })

  const route = (upstream: Distribution, repo: string, overridePath = false): Pull => {
    const image = pushed.get(upstream)?.get(repo)
    if (image === undefined) throw new Error(`nothing pushed as ${repo}`)
    const first = upstream === a
    return {
      ref: `${first ? 'docker.io' : SECOND}/${repo}:1.0`,
      image,
      upstream,
      other: first ? b : a,
      upstreamName: first ? 'default' : 'second',
      repo,
      stored: first ? repo : `${SECOND}/${repo}`,
      overridePath,
    }
  }
  // Each name exists on both upstreams with other content: a crossed route gets the wrong digest.
  const pulls: Pull[] = [
    route(a, 'library/hello'),
    route(a, 'myorg/hello'),
    route(b, 'myorg/hello'),
    // after A's library/hello is cached at the storage root: a route that lost the namespace would serve that
    route(b, 'library/hello', true),
  ]
  t.equal(new Set(pulls.map(p => p.image.manifestDigest)).size, pulls.length, 'four images, four digests')

  t.test('containerd: ?ns= routes both registries through one mirror; an override_path mirror too', async t => {
    const containerd = await startContainerd(t)
    const byNs = join(containerd.dir, 'hosts-ns')
    const byPath = join(containerd.dir, 'hosts-path')
    const server = `http://${NOWHERE}`
    await writeHostsDir(byNs, {
      'docker.io': { server, mirrors: [{ url: stevedore.url }] },
      [SECOND]: { server, mirrors: [{ url: stevedore.url }] },
    })
    await writeHostsDir(byPath, { [SECOND]: { server, mirrors: [{ url: `${stevedore.url}/v2/${SECOND}`, overridePath: true }] } })

    for (const pull of pulls) {
      await t.test(pull.ref, async t => {
        const mark = await marks(stevedore, a, b)
        await containerd.pull(pull.ref, pull.overridePath ? byPath : byNs)
        // ?ns= alone keeps the name as it is upstream; the override_path mirror puts the registry in front
        await checkRoute(t, stevedore, mark, pull, pull.overridePath ? `/v2/${SECOND}/${pull.repo}/` : `/v2/${pull.repo}/`, { cold: true })
        await checkStored(t, storage, pull)
      })
    }

    const images = await containerd.images()
    const content = await containerd.content()
    for (const pull of pulls) {
      t.equal(images.get(pull.ref), pull.image.manifestDigest, `ctr images ls: ${pull.ref} is the image pushed to its upstream`)
      const blobs = [pull.image.manifestDigest, ...pull.image.blobs.map(blob => blob.digest)]
      t.same(blobs.filter(digest => !content.has(digest)), [], `ctr content ls: every blob of ${pull.ref}`)
    }

    const missing = await containerd.pull('docker.io/library/absent:1.0', byNs).then(
      () => 'pulled',
      (error: Error) => error.message,
    )
    t.match(missing, /127\.0\.0\.1:1\/v2\/library\/absent\/manifests\/1\.0\?ns=docker\.io.*connection refused/, 'what the mirror lacks fails at the dead server, with ?ns= on the request')
  })

  t.test('podman: a mirror at the root for docker.io, a path-prefixed one for the second registry', async t => {
    const podman = await podmanSandbox(t)
    await podman.writeRegistriesConf([
      { prefix: 'docker.io', location: NOWHERE, mirrors: [stevedore.host] },
      { prefix: SECOND, location: NOWHERE, mirrors: [`${stevedore.host}/${SECOND}`] },
    ])
    for (const pull of pulls) {
      await t.test(pull.ref, async t => {
        const mark = await marks(stevedore, a, b)
        await podman.pull(pull.ref)
        const prefix = pull.upstream === b ? `/v2/${SECOND}/${pull.repo}/` : `/v2/${pull.repo}/`
        await checkRoute(t, stevedore, mark, pull, prefix, { cold: false })
        const pulled = await podman.inspect(pull.ref)
        t.equal(pulled.digest, pull.image.manifestDigest, 'podman image inspect: the digest pushed to its upstream')
        t.equal(`sha256:${pulled.id}`, pull.image.manifests[0]?.config.digest, 'its image ID is that image\'s config')
        t.ok(pulled.repoTags.includes(pull.ref), `tagged ${pull.ref}`)
        await checkStored(t, storage, pull)
      })
    }

    const missing = await podman.pull('docker.io/library/absent:1.0').then(
      () => 'pulled',
      (error: Error) => error.message,
    )
    t.match(missing, /Mirrors also failed.*127\.0\.0\.1:1.*connection refused/s, 'what the mirror lacks fails at the dead location')
  })
})

/** A deterministic image for this machine's platform, pushed blob by blob so its digests are exactly the layout's. */
async function pushImage(upstream: Distribution, repo: string, layout: string, seed: string, platform: Platform): Promise<ImageDescription> {
  const image = await writeOciImage(layout, { tag: '1.0', seed, layerSizes: [3000, 20_000], platform })
  const blob = (digest: string): Promise<Buffer> => readFile(join(layout, 'blobs/sha256', digest.slice('sha256:'.length)))
  for (const { digest } of image.blobs) await pushBlob(upstream.url, repo, await blob(digest))
  const manifest: unknown = JSON.parse((await blob(image.manifestDigest)).toString('utf8'))
  const put = await pushManifest(upstream.url, repo, '1.0', manifest, OCI_MANIFEST)
  if (put.digest !== image.manifestDigest) throw new Error(`${repo}: pushed ${put.digest}, the layout holds ${image.manifestDigest}`)
  return image
}

/** Go's names for Node's architectures: the images match the machine, so containerd unpacks them. */
function hostPlatform(): Platform {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' }
  return { os: 'linux', architecture: arch[process.arch] ?? process.arch }
}

/** Where each log stood before a pull, once the lines of earlier requests were all written. */
interface Marks {
  records: number
  upstreams: Map<Distribution, number>
}

async function marks(stevedore: StevedoreProc, a: Distribution, b: Distribution): Promise<Marks> {
  const records = (await settleRecords(stevedore, 0)).length
  await Promise.all([settle(a), settle(b)])
  return { records, upstreams: new Map([a, b].map(d => [d, accessLog(d).length])) }
}

/**
 * What the pull sent: Stevedore's access log (every line the right upstream,
 * the right storage name, under the path the client uses), and the upstreams'
 * (the right one asked for this repository by Stevedore only, cold pulls
 * fetching every blob from it; the other asked nothing).
 */
async function checkRoute(
  t: Test,
  stevedore: StevedoreProc,
  mark: Marks,
  pull: Pull,
  clientPrefix: string,
  opts: { cold: boolean },
): Promise<void> {
  const served = (await settleRecords(stevedore, mark.records)).filter(r => typeof r.path === 'string' && r.path !== '/v2/' && r.path !== '/v2')
  t.ok(served.length > 0, `Stevedore served ${served.length} requests`)
  t.same(
    served.filter(r => r.upstream !== pull.upstreamName || r.repository !== pull.stored || !String(r.path).startsWith(clientPrefix) || Number(r.status) >= 400),
    [],
    `every one routed to upstream ${pull.upstreamName} as ${pull.stored}, asked as ${clientPrefix}…, and answered`,
  )

  await settle(pull.upstream)
  await settle(pull.other)
  const since = (d: Distribution): LoggedRequest[] => accessLog(d).slice(mark.upstreams.get(d) ?? 0)
  const upstream = since(pull.upstream)
  t.same(upstream.filter(r => !r.userAgent.startsWith('stevedore/')), [], 'the client never reached the upstream itself')
  t.same(upstream.filter(r => !r.path.startsWith(`/v2/${pull.repo}/`)), [], `the upstream was asked about ${pull.repo} only`)
  t.ok(upstream.some(r => r.path === `/v2/${pull.repo}/manifests/1.0`), `the tag was asked of the right upstream (${upstream.length} requests from stevedore/)`)
  if (opts.cold) {
    const fetched = new Set(upstream.filter(r => r.method === 'GET' && r.status === 200).map(r => r.path))
    const blobs = pull.image.blobs.map(blob => `/v2/${pull.repo}/blobs/${blob.digest}`)
    t.same(blobs.filter(path => !fetched.has(path)), [], 'every blob came from the right upstream')
  }
  t.same(since(pull.other), [], 'the other upstream was asked nothing')
}

/** The tag, the manifest revision and every blob with its layer link, where Distribution keeps them, under the upstream's namespace. */
async function checkStored(t: Test, root: string, pull: Pull): Promise<void> {
  const link = await readFile(distributionPaths.tagCurrentLink(root, pull.stored, '1.0'), 'utf8').catch(() => 'missing')
  t.equal(link, pull.image.manifestDigest, `storage: repositories/${pull.stored}/ tags 1.0 as the pushed manifest`)
  const revision = await readFile(distributionPaths.manifestRevisionLink(root, pull.stored, pull.image.manifestDigest), 'utf8').catch(() => 'missing')
  t.equal(revision, pull.image.manifestDigest, 'with its revision link')
  const absent: string[] = []
  for (const { digest, size } of pull.image.blobs) {
    const info = await stat(distributionPaths.blobData(root, digest)).catch(() => undefined)
    const link = await readFile(distributionPaths.layerLink(root, pull.stored, digest), 'utf8').catch(() => 'missing')
    if (info?.size !== size || link !== digest) absent.push(digest)
  }
  t.same(absent, [], 'and every blob, linked from the repository')
}

/** Stevedore's `request` lines after the first `from`, once no new one arrived for 100 ms (each is written when its response closes). */
async function settleRecords(stevedore: StevedoreProc, from: number, deadlineMs = 2000): Promise<LogRecord[]> {
  const end = Date.now() + deadlineMs
  let last = -1
  for (;;) {
    const now = stevedore.logRecords().filter(r => r.msg === 'request')
    if (now.length === last || Date.now() > end) return now.slice(from)
    last = now.length
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}
