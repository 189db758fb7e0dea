// Several Stevedore processes (the CLI, each on its own port) sharing one
// storage and one Redis, in front of a real Distribution: concurrent cold
// pulls spread across them fetch each blob from the upstream exactly once
// (one replica fills, the others wait for it through the shared lease), and
// with Redis stopped they keep serving what is stored and still fill misses,
// each on its own, until Redis is back. A replica killed mid-fill leaves the
// blob to another, which notices that the lease holder makes no progress.
import { createHash } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { accessLog } from '../helpers/access-log.js'
import { startDistribution, type Distribution } from '../helpers/distribution.js'
import { blob, startFakeUpstream } from '../helpers/fake-upstream.js'
import { listFiles, seededBytes } from '../helpers/files.js'
import { rawGet } from '../helpers/http.js'
import { until } from '../helpers/until.js'
import { OCI_MANIFEST, writeOciImage, type ImageDescription } from '../helpers/images.js'
import { HeadObjectCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3'
import { startCeph, type Ceph } from '../helpers/ceph.js'
import { startRedis } from '../helpers/redis.js'
import { pushLayout } from '../helpers/skopeo.js'
import { startStevedore, type StevedoreProc } from '../helpers/stevedore.js'
import type { Teardown } from '../helpers/tmp.js'

const sha256 = (data: Uint8Array): string => `sha256:${createHash('sha256').update(data).digest('hex')}`

/** A pull as a client does it: the manifest by tag, then every blob, each checked against its digest. */
async function pull(base: string, repo: string, tag: string): Promise<{ manifest: string; blobs: string[] }> {
  const res = await fetch(`${base}/v2/${repo}/manifests/${tag}`, { headers: { Accept: OCI_MANIFEST } })
  if (res.status !== 200) throw new Error(`manifest ${repo}:${tag} from ${base}: ${res.status} ${await res.text()}`)
  const body = new Uint8Array(await res.arrayBuffer())
  const manifest = JSON.parse(Buffer.from(body).toString()) as { config: { digest: string }; layers: { digest: string }[] }
  const blobs = await Promise.all(
    [manifest.config, ...manifest.layers].map(async ({ digest }) => {
      const blob = await fetch(`${base}/v2/${repo}/blobs/${digest}`)
      if (blob.status !== 200) throw new Error(`blob ${digest} from ${base}: ${blob.status} ${await blob.text()}`)
      const bytes = new Uint8Array(await blob.arrayBuffer())
      if (sha256(bytes) !== digest) throw new Error(`blob ${digest} from ${base} hashed to ${sha256(bytes)}`)
      return digest
    }),
  )
  return { manifest: sha256(body), blobs }
}

/** GETs of each blob the upstream answered. */
function upstreamBlobGets(upstream: Distribution, repo: string): Map<string, number> {
  const counts = new Map<string, number>()
  for (const r of accessLog(upstream)) {
    const m = new RegExp(`^/v2/${repo}/blobs/(sha256:[0-9a-f]{64})$`).exec(r.path)
    if (m !== null && r.method === 'GET' && r.status >= 200 && r.status < 300) counts.set(m[1] as string, (counts.get(m[1] as string) ?? 0) + 1)
  }
  return counts
}

/** Where the replicas keep content: one directory they all see, or one S3 bucket (each with its own local spool). */
type SharedStorage = { kind: 'filesystem'; root: string } | { kind: 's3'; ceph: Ceph; bucket: string; spools: string }

function storageConfig(storage: SharedStorage, replica: number): Record<string, unknown> {
  const maintenance = { uploadpurging: { enabled: false } }
  if (storage.kind === 'filesystem') return { storage: { filesystem: { rootdirectory: storage.root }, maintenance } }
  const { ceph } = storage
  return {
    storage: {
      filesystem: undefined, // the helper's default storage, replaced
      s3: { region: ceph.region, bucket: storage.bucket, regionendpoint: ceph.endpoint, accesskey: ceph.accessKey, secretkey: ceph.secretKey, forcepathstyle: true, secure: false },
      maintenance,
    },
    spool: { directory: join(storage.spools, `replica-${replica}`) },
  }
}

async function replicas(t: Teardown, count: number, upstream: Distribution, storage: SharedStorage, redisUrl: string): Promise<StevedoreProc[]> {
  return Promise.all(
    Array.from({ length: count }, (_, i) =>
      startStevedore(t, {
        // The replicas find the AWS SDK's CA bundle variable in their environment: fine for plain HTTP.
        config: {
          log: { level: 'info' },
          proxy: { remoteurl: upstream.url, timeouts: { fillwait: '10s' } },
          metadata: { store: 'redis', url: redisUrl, namespace: `replicas-${process.pid}-${storage.kind}` },
          ...storageConfig(storage, i),
        },
      }),
    ),
  )
}

async function seeded(t: Teardown, dir: string, repo: string, seed: string): Promise<{ upstream: Distribution; image: ImageDescription }> {
  const upstream = await startDistribution(t)
  const image = await writeOciImage(join(dir, seed), { tag: '1.0', seed, layerSizes: [3 << 20, 1 << 20, 200_000, 20_000] })
  await pushLayout(join(dir, seed), '1.0', `${upstream.host}/${repo}:1.0`)
  return { upstream, image }
}

for (const kind of ['filesystem', 's3'] as const) {
  t.test(`48 concurrent cold pulls across three replicas on ${kind === 's3' ? 'one S3 bucket (Ceph radosgw)' : 'one filesystem'}: each blob crosses the upstream once`, async t => {
    const dir = t.testdir()
    const redis = await startRedis(t)
    const { upstream, image } = await seeded(t, dir, 'library/app', `replicas-cold-${kind}`)
    let storage: SharedStorage
    if (kind === 's3') {
      const ceph = await startCeph(t)
      storage = { kind, ceph, bucket: await ceph.bucket('replicas'), spools: join(dir, 'spools') }
    } else storage = { kind, root: join(dir, 'storage') }
    const procs = await replicas(t, 3, upstream, storage, redis.url)
    const before = accessLog(upstream).length

    const pulls = await Promise.all(Array.from({ length: 48 }, (_, i) => pull((procs[i % 3] as StevedoreProc).url, 'library/app', '1.0')))
    t.equal(pulls.filter(p => p.manifest === image.manifestDigest).length, 48, 'every pull got the pushed manifest')
    t.equal(pulls.filter(p => p.blobs.length === image.blobs.length).length, 48, 'and every blob, each checked against its digest')

    const gets = upstreamBlobGets(upstream, 'library/app')
    for (const blob of image.blobs) t.equal(gets.get(blob.digest), 1, `${blob.digest.slice(0, 19)} (${blob.size} bytes) was fetched from the upstream once`)
    const fills = procs.flatMap(p => p.logRecords().filter(r => r.msg === 'blob fill started').map(r => r.digest))
    t.same([...fills].sort(), image.blobs.map(b => b.digest).sort(), 'one fill per blob, on one replica or another')
    const tagRequests = accessLog(upstream).slice(before).filter(r => r.path === '/v2/library/app/manifests/1.0')
    t.same(tagRequests.map(r => r.method).sort(), ['GET', 'HEAD'], 'one tag refresh in all (a HEAD, then the GET of what was not stored): the other replicas took its record')
    if (storage.kind === 's3') {
      const { ceph, bucket } = storage
      for (const blob of image.blobs) {
        const head = await ceph.client.send(new HeadObjectCommand({ Bucket: bucket, Key: `docker/registry/v2/blobs/sha256/${blob.digest.slice(7, 9)}/${blob.digest.slice(7)}/data` }))
        t.equal(head.ContentLength, blob.size, `${blob.digest.slice(0, 19)} is in the bucket at Distribution's key`)
      }
      const uploads = await ceph.client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))
      t.same(uploads.Uploads ?? [], [], 'no multipart upload is left open')
      t.same((await listFiles(storage.spools)).filter(f => f.includes('/fills/')), [], 'and no local spool file')
    }
  })
}

t.test('Redis stopped: stored images keep pulling, misses still fill, coordination returns with Redis', async t => {
  const dir = t.testdir()
  const redis = await startRedis(t)
  const { upstream, image } = await seeded(t, dir, 'library/app', 'replicas-redis')
  const second = await writeOciImage(join(dir, 'second'), { tag: '2.0', seed: 'replicas-redis-2', layerSizes: [500_000, 30_000] })
  await pushLayout(join(dir, 'second'), '2.0', `${upstream.host}/library/app:2.0`)
  const third = await writeOciImage(join(dir, 'third'), { tag: '3.0', seed: 'replicas-redis-3', layerSizes: [400_000, 40_000] })
  await pushLayout(join(dir, 'third'), '3.0', `${upstream.host}/library/app:3.0`)
  const procs = await replicas(t, 2, upstream, { kind: 'filesystem', root: join(dir, 'storage') }, redis.url)
  const [a, b] = procs as [StevedoreProc, StevedoreProc]

  t.equal((await pull(a.url, 'library/app', '1.0')).manifest, image.manifestDigest, 'a cold pull while Redis is up')
  await redis.stop()

  const warm = await Promise.all([pull(a.url, 'library/app', '1.0'), pull(b.url, 'library/app', '1.0')])
  t.same(warm.map(p => p.manifest), [image.manifestDigest, image.manifestDigest], 'with Redis gone, the stored image still pulls from both replicas')
  const miss = await Promise.all([pull(a.url, 'library/app', '2.0'), pull(b.url, 'library/app', '2.0')])
  t.same(miss.map(p => p.manifest), [second.manifestDigest, second.manifestDigest], 'and a miss is still filled (each replica on its own)')
  const gets = upstreamBlobGets(upstream, 'library/app')
  for (const blob of second.blobs) t.ok((gets.get(blob.digest) ?? 0) >= 1 && (gets.get(blob.digest) ?? 0) <= 2, `${blob.digest.slice(0, 19)}: fetched ${gets.get(blob.digest)} time(s), at most once per replica`)
  t.ok(
    procs.some(p => p.logRecords().some(r => r.msg === 'the lease store is unreachable: serving on alone (no cross-replica single flight) until it answers')),
    'a replica logged that it serves on alone',
  )
  const ready = await fetch(`${a.url}/readyz`)
  const detail = (await ready.json()) as { failed?: string[]; coordination?: { store: string; healthy: boolean } }
  t.same(detail.coordination, { store: 'redis', healthy: false }, '/readyz says the replica is not coordinating')
  t.ok(detail.failed?.includes('metadata'), 'and that the metadata store is unreachable')
  const metrics = await (await fetch(`${a.url}/metrics`)).text()
  t.match(metrics, /stevedore_coordination_up\{store="redis"\} 0/, 'so does /metrics')

  await redis.start()
  // Give both replicas time to reconnect, then a cold image again: one fetch per blob.
  let reconnected = false
  for (let i = 0; i < 50 && !reconnected; i++) {
    const states = await Promise.all([a, b].map(async p => ((await (await fetch(`${p.url}/readyz`)).json()) as { coordination?: { healthy: boolean } }).coordination?.healthy))
    reconnected = states.every(s => s === true)
    if (!reconnected) await new Promise(r => setTimeout(r, 200))
  }
  t.ok(reconnected, 'both replicas report coordination healthy again')
  const again = await Promise.all([pull(a.url, 'library/app', '3.0'), pull(b.url, 'library/app', '3.0'), pull(a.url, 'library/app', '3.0'), pull(b.url, 'library/app', '3.0')])
  t.same(new Set(again.map(p => p.manifest)), new Set([third.manifestDigest]))
  const after = upstreamBlobGets(upstream, 'library/app')
  for (const blob of third.blobs) t.equal(after.get(blob.digest), 1, `${blob.digest.slice(0, 19)}: once again, with Redis back`)
})

t.test('kill -9 of the replica filling a blob: another replica completes it, nothing corrupt is committed', async t => {
  const dir = t.testdir()
  const redis = await startRedis(t)
  const upstream = await startFakeUpstream('faulty/app')
  t.teardown(() => upstream.close())
  const big = blob(seededBytes('replica-killed', 6 * 1024 * 1024 + 7))
  upstream.blobs.set(big.digest, big)
  const root = join(dir, 'storage')
  const config = {
    log: { level: 'info' },
    // fillwait: how long a replica waits on a filler that makes no progress before it fills the blob itself.
    proxy: { remoteurl: upstream.url, timeouts: { body: '60s', fillwait: '2s' } },
    storage: { filesystem: { rootdirectory: root }, maintenance: { uploadpurging: { enabled: false } } },
    metadata: { store: 'redis', url: redis.url, namespace: `killed-${process.pid}` },
  }
  const [a, b] = (await Promise.all([startStevedore(t, { config }), startStevedore(t, { config })])) as [StevedoreProc, StevedoreProc]

  upstream.fault = 'stall' // half the blob, then silence
  const first = rawGet(`${a.url}/v2/faulty/app/blobs/${big.digest}`, {}, false).catch(() => undefined)
  const spool = async (): Promise<number> => {
    const data = (await listFiles(root)).find(f => /_uploads\/fill-[^/]+\/data$/.test(f))
    return data === undefined ? 0 : ((await stat(join(root, data)).catch(() => undefined))?.size ?? 0)
  }
  await until('replica a is half-way through the fill', async () => (await spool()) >= Math.floor(big.content.length / 2))
  const second = rawGet(`${b.url}/v2/faulty/app/blobs/${big.digest}`, {}, false)
  await until('replica b waits on a’s lease', async () => b.logRecords().length > 0 && (await redisHolds(redis.port, `killed-${process.pid}:lease:fill/${big.digest}`)))
  process.kill(a.pid, 'SIGKILL')
  await a.stop()
  await first
  upstream.fault = 'none'

  const served = await second
  t.ok(served.complete, 'the client of replica b gets the whole blob')
  t.equal(served.sha256, big.digest, 'and the right bytes')
  t.ok(b.logRecords().some(r => r.msg === 'the replica filling this blob made no progress: filling it here as well'), 'b took over once a stopped making progress')
  t.equal(upstream.count('GET', `/blobs/${big.digest}`), 2, 'two downloads in all: the killed one and the one that completed')
  // The last byte goes out once the digest is verified; the commit (fsync, rename) may finish just after.
  const data = join(root, 'docker/registry/v2/blobs/sha256', big.digest.slice(7, 9), big.digest.slice(7), 'data')
  await until('the blob is committed', async () => (await stat(data).catch(() => undefined)) !== undefined)
  const stored = createHash('sha256').update(await readFile(data)).digest('hex')
  t.equal(`sha256:${stored}`, big.digest, 'the committed blob hashes to its digest')

  // What the killed replica left (its spool) goes when a replica starts again on this host.
  const c = await startStevedore(t, { config })
  await until('the restart removed the dead replica’s spool', async () => (await listFiles(root)).every(f => !f.includes('_uploads/')))
  t.equal((await rawGet(`${c.url}/v2/faulty/app/blobs/${big.digest}`, {}, false)).sha256, big.digest, 'and the blob is served from storage')
  t.equal(upstream.count('GET', `/blobs/${big.digest}`), 2, 'without another download')
})

/** Whether the key is set in the private Redis (a raw RESP exchange: no client library needed). */
async function redisHolds(port: number, key: string): Promise<boolean> {
  const { createConnection } = await import('node:net')
  return new Promise(resolve => {
    const socket = createConnection({ host: '127.0.0.1', port })
    socket.once('connect', () => socket.write(`*2\r\n$6\r\nEXISTS\r\n$${Buffer.byteLength(key)}\r\n${key}\r\n`))
    socket.once('data', data => {
      socket.destroy()
      resolve(data.toString().startsWith(':1'))
    })
    socket.once('error', () => resolve(false))
  })
}

t.test('kill -9 mid-fill on S3: another replica completes the blob, and the purge aborts the orphan multipart upload', async t => {
  const dir = t.testdir()
  const redis = await startRedis(t)
  const ceph = await startCeph(t)
  const bucket = await ceph.bucket('killed')
  const upstream = await startFakeUpstream('faulty/app')
  t.teardown(() => upstream.close())
  const big = blob(seededBytes('replica-killed-s3', 12 * 1024 * 1024 + 11))
  upstream.blobs.set(big.digest, big)
  const config = (replica: number) => ({
    log: { level: 'info' },
    proxy: { remoteurl: upstream.url, timeouts: { body: '60s', fillwait: '2s' } },
    metadata: { store: 'redis', url: redis.url, namespace: `killed-s3-${process.pid}` },
    storage: {
      filesystem: undefined,
      s3: { region: ceph.region, bucket, regionendpoint: ceph.endpoint, accesskey: ceph.accessKey, secretkey: ceph.secretKey, forcepathstyle: true, secure: false, chunksize: '5MiB' },
      // Purged often here, so that the test sees it: what is idle for `age` (at most an hour) is abandoned.
      maintenance: { uploadpurging: { enabled: true, age: '3s', interval: '2s' } },
    },
    spool: { directory: join(dir, `spool-${replica}`) },
  })
  const [a, b] = (await Promise.all([startStevedore(t, { config: config(0) }), startStevedore(t, { config: config(1) })])) as [StevedoreProc, StevedoreProc]
  const multipart = async () => (await ceph.client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []

  upstream.fault = 'stall' // half the blob, then silence: one 5 MiB part is uploaded
  const first = rawGet(`${a.url}/v2/faulty/app/blobs/${big.digest}`, {}, false).catch(() => undefined)
  await until('replica a has a multipart upload open at the blob key', async () => (await multipart()).length === 1)
  const second = rawGet(`${b.url}/v2/faulty/app/blobs/${big.digest}`, {}, false)
  await until('replica b waits on a’s lease', async () => redisHolds(redis.port, `killed-s3-${process.pid}:lease:fill/${big.digest}`))
  process.kill(a.pid, 'SIGKILL')
  await a.stop()
  await first
  upstream.fault = 'none'

  const served = await second
  t.ok(served.complete, 'the client of replica b gets the whole blob')
  t.equal(served.sha256, big.digest, 'and the right bytes')
  const key = `docker/registry/v2/blobs/sha256/${big.digest.slice(7, 9)}/${big.digest.slice(7)}/data`
  await until('the blob is in the bucket', async () => (await ceph.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key })).then(() => true, () => false)))
  const head = await ceph.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))
  t.equal(head.ContentLength, big.content.length, 'the committed object has the whole blob')
  await until('the purge aborted the killed replica’s multipart upload', async () => (await multipart()).length === 0, 20_000)
  t.pass('no multipart upload is left')
  t.ok(b.logRecords().some(r => r.msg === 'upload purge done' && Number(r.scratchFiles) >= 1), 'the purge says it aborted it')
  t.equal(upstream.count('GET', `/blobs/${big.digest}`), 2, 'two downloads in all: the killed one and the one that completed')
})
