// http.workers: one supervisor and N server processes on one port, coordinating
// through a shared Redis as replicas do. Concurrent cold pulls fetch each blob
// from the real upstream once, both workers serve, a dead worker is replaced,
// SIGTERM stops everything with exit 0, and workers do not outlive a killed
// supervisor. Without a shared metadata store the configuration is refused.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { stringify } from 'yaml'
import { accessLog } from '../helpers/access-log.js'
import { startDistribution } from '../helpers/distribution.js'
import { OCI_MANIFEST, writeOciImage } from '../helpers/images.js'
import { startRedis } from '../helpers/redis.js'
import { pushLayout } from '../helpers/skopeo.js'
import { startStevedore, stevedoreCommand, type StevedoreProc } from '../helpers/stevedore.js'
import { until } from '../helpers/until.js'

const sha256 = (data: Uint8Array): string => `sha256:${createHash('sha256').update(data).digest('hex')}`

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** The worker PIDs the supervisor logged as started, newest last. */
const workerPids = (proc: StevedoreProc): number[] =>
  proc.logRecords().filter(r => r.msg === 'worker started').map(r => Number(r.pid))

async function pull(base: string, repo: string, tag: string): Promise<{ manifest: string; blobs: number }> {
  const res = await fetch(`${base}/v2/${repo}/manifests/${tag}`, { headers: { Accept: OCI_MANIFEST } })
  if (res.status !== 200) throw new Error(`manifest: ${res.status} ${await res.text()}`)
  const body = new Uint8Array(await res.arrayBuffer())
  const manifest = JSON.parse(Buffer.from(body).toString()) as { config: { digest: string }; layers: { digest: string }[] }
  const blobs = await Promise.all([manifest.config, ...manifest.layers].map(async ({ digest }) => {
    const blob = await fetch(`${base}/v2/${repo}/blobs/${digest}`)
    const bytes = new Uint8Array(await blob.arrayBuffer())
    if (blob.status !== 200 || sha256(bytes) !== digest) throw new Error(`blob ${digest}: ${blob.status}, hashed to ${sha256(bytes)}`)
    return digest
  }))
  return { manifest: sha256(body), blobs: blobs.length }
}

t.test('two workers on one port: one upstream fetch per blob, both serve, a dead worker is replaced, SIGTERM stops all', async t => {
  const dir = t.testdir()
  const redis = await startRedis(t)
  const upstream = await startDistribution(t)
  const image = await writeOciImage(join(dir, 'image'), { tag: '1.0', seed: 'workers', layerSizes: [2 << 20, 1 << 20, 100_000] })
  await pushLayout(join(dir, 'image'), '1.0', `${upstream.host}/library/app:1.0`)
  const proc = await startStevedore(t, {
    config: {
      http: { workers: 2 },
      log: { level: 'info' },
      proxy: { remoteurl: upstream.url, timeouts: { fillwait: '10s' } },
      metadata: { store: 'redis', url: redis.url, namespace: `workers-${process.pid}` },
    },
  })
  await until('both workers listen', async () => proc.logRecords().some(r => r.msg === 'stevedore workers listening'), 20_000)
  const [first, second] = workerPids(proc) as [number, number]
  t.ok(alive(first) && alive(second) && first !== second, 'two worker processes')

  const pulls = await Promise.all(Array.from({ length: 24 }, () => pull(proc.url, 'library/app', '1.0')))
  t.equal(pulls.filter(p => p.manifest === image.manifestDigest && p.blobs === image.blobs.length).length, 24, 'every pull got the image, each blob checked')
  for (const blob of image.blobs) {
    const gets = accessLog(upstream).filter(r => r.method === 'GET' && r.path === `/v2/library/app/blobs/${blob.digest}` && r.status === 200)
    t.equal(gets.length, 1, `${blob.digest.slice(0, 19)} crossed the upstream once`)
  }
  // Fresh connections land on either worker; keep asking until both have answered one.
  await until('both workers have served requests', async () => {
    await Promise.all(Array.from({ length: 8 }, () => fetch(`${proc.url}/v2/`, { headers: { Connection: 'close' } }).then(r => r.arrayBuffer())))
    const served = new Set(proc.logRecords().filter(r => r.msg === 'request').map(r => r.worker))
    return served.has(1) && served.has(2)
  }, 20_000)
  t.pass('both workers served')

  process.kill(first, 'SIGKILL')
  // The supervisor says so again once the replacement listens too.
  await until('the dead worker is replaced', async () => workerPids(proc).length === 3 && proc.logRecords().filter(r => r.msg === 'stevedore workers listening').length >= 2 && !alive(first), 20_000)
  const replacement = workerPids(proc)[2] as number
  t.ok(proc.logRecords().some(r => r.msg === 'worker exited' && r.pid === first && r.signal === 'SIGKILL'), 'the supervisor logged the death')
  await until('the replacement listens', async () => {
    const res = await fetch(`${proc.url}/v2/library/app/manifests/1.0`, { method: 'HEAD', headers: { Accept: OCI_MANIFEST, Connection: 'close' } })
    return res.status === 200 && alive(replacement)
  }, 20_000)
  t.pass('still serving, with a replacement worker')

  await proc.stop()
  t.notOk(alive(proc.pid), 'the supervisor exited')
  await until('the workers are gone', async () => !alive(second) && !alive(replacement), 10_000)
  t.ok(proc.logRecords().some(r => r.msg === 'stopping the workers' && r.why === 'SIGTERM'))
  // Their last lines may still be in the pipe when the supervisor's exit is seen.
  await until('both workers logged a clean shutdown', async () => proc.logRecords().filter(r => r.msg === 'shut down').length === 2, 5_000)
  t.pass('both workers shut down cleanly')
})

t.test('workers do not outlive a supervisor killed with SIGKILL', async t => {
  const redis = await startRedis(t)
  const proc = await startStevedore(t, {
    config: { http: { workers: 2 }, log: { level: 'info' }, metadata: { store: 'redis', url: redis.url, namespace: `workers-kill-${process.pid}` } },
  })
  await until('both workers listen', async () => proc.logRecords().some(r => r.msg === 'stevedore workers listening'), 20_000)
  const pids = workerPids(proc)
  t.equal(pids.length, 2)
  process.kill(proc.pid, 'SIGKILL')
  await until('the workers exit', async () => pids.every(pid => !alive(pid)), 10_000)
  t.pass('no worker left serving unsupervised')
  await until('the port is free', async () => fetch(`${proc.url}/v2/`).then(() => false, () => true), 10_000)
  t.pass('nothing answers on the port')
})

t.test('http.workers above 1 without a shared metadata store is refused at startup', async t => {
  const dir = t.testdir()
  const configPath = join(dir, 'config.yml')
  writeFileSync(configPath, stringify({ version: '0.1', http: { addr: '127.0.0.1:0', workers: 2 }, storage: { filesystem: { rootdirectory: join(dir, 'storage') } } }))
  const { command, args, env } = stevedoreCommand(['serve', configPath], process.env)
  const run = spawnSync(command, args, { env, encoding: 'utf8', timeout: 30_000 })
  t.equal(run.status, 2)
  t.match(run.stderr, /http\.workers: 2 workers need a shared metadata\.store \(redis or postgres\)/)
})
