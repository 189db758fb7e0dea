#!/usr/bin/env node
/**
 * Replicas benchmark: 1, 2 and 3 Stevedore replicas sharing one storage
 * (a filesystem directory, or an S3 bucket on a one-node Ceph radosgw) and
 * one Redis, in front of one upstream Distribution. C concurrent pulls
 * (manifest by tag, then every blob, each checked against its digest) go
 * round-robin over the replicas, first from an empty storage (cold), then
 * again (warm). The point: the upstream serves the image once for any N.
 *
 *   npm run bench:replicas                     # 64 MiB in 5 layers, 24 clients, 3 runs
 *   node bench/replicas.mjs --quick            # 16 MiB, 1 run
 *   node bench/replicas.mjs --clients 48 --storage filesystem
 *
 * See bench/README.md ("The replicas benchmark") for what each column measures.
 */
import { spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, readlinkSync } from 'node:fs'
import { Agent, get } from 'node:http'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as delay } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { MANIFEST_ACCEPT, pushImage } from './lib/image.mjs'
import { daemons, startRedis } from './lib/redis.mjs'
import { machine, treeHash } from './lib/machine.mjs'
import { cleanupNow, freePort, removeDir, requireCommands, run, tempDir, which } from './lib/procs.mjs'
import { DISTRIBUTION_BIN, REPO_ROOT, servedSince, snapshotStevedore, startStevedore, startUpstream } from './lib/registries.mjs'
import { cell, fmt, median, ratioText, writeResults } from './lib/report.mjs'

const MIB = 1024 * 1024
const REPO = 'bench/replicas'
const CEPH_COMMANDS = ['radosgw', 'ceph-mon', 'ceph-osd']
const CEPH_INSTALL = 'apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd'
const CEPH_SCRIPT = join(REPO_ROOT, 'scripts/ceph-s3.sh')
const START_LOAD = loadavg().map(v => Number(v.toFixed(2)))
const log = msg => process.stderr.write(`bench: ${msg}\n`)

function options() {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string' },
      clients: { type: 'string' },
      'size-mib': { type: 'string' },
      layers: { type: 'string' },
      replicas: { type: 'string', default: '1,2,3' },
      storage: { type: 'string', default: 'filesystem,s3' },
      quick: { type: 'boolean', default: false },
      'no-access-log': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help) {
    process.stdout.write(
      'usage: node bench/replicas.mjs [--runs 3] [--clients 24] [--size-mib 64] [--layers 5] [--replicas 1,2,3]\n' +
        '                              [--storage filesystem,s3] [--quick] [--no-access-log]\n' +
        '  --quick: 1 run, a 16 MiB image. s3 needs radosgw, ceph-mon, ceph-osd (else its rows are skipped).\n',
    )
    process.exit(0)
  }
  const num = (raw, fallback, what) => {
    const n = raw === undefined ? fallback : Number(raw)
    if (!Number.isInteger(n) || n <= 0) throw new Error(`--${what}: a positive integer, not ${raw}`)
    return n
  }
  const replicas = values.replicas.split(',').map(v => num(v, 0, 'replicas'))
  if (!replicas.includes(1)) throw new Error('--replicas must include 1: ratios are against one replica')
  const storages = values.storage.split(',')
  for (const s of storages) if (s !== 'filesystem' && s !== 's3') throw new Error(`--storage: filesystem and/or s3, not ${s}`)
  const q = values.quick
  return {
    quick: q,
    runs: num(values.runs, q ? 1 : 3, 'runs'),
    clients: num(values.clients, 24, 'clients'),
    sizeMiB: num(values['size-mib'], q ? 16 : 64, 'size-mib'),
    layers: num(values.layers, 5, 'layers'),
    replicas: [...new Set(replicas)].sort((a, b) => a - b),
    storages,
    accessLog: !values['no-access-log'],
  }
}

/** Waits until the upstream's access log has been quiet for 300 ms (its lines arrive through a pipe). */
async function settle(upstream) {
  for (let last = -1, deadline = Date.now() + 5000; upstream.log.length !== last && Date.now() < deadline; ) {
    last = upstream.log.length
    await delay(300)
  }
}

// ---- Redis and Ceph: started here, stopped by PID, also when the run dies ----


/** scripts/ceph-s3.sh start (mon, OSD on memstore, radosgw), plus an S3 client for buckets. */
async function startCeph() {
  const dir = tempDir('ceph')
  let out
  try {
    out = (await run('bash', [CEPH_SCRIPT, 'start', dir], { timeoutMs: 120_000 })).stdout
  } finally {
    // The daemons' PIDs, read now: on an abnormal exit the temp dir is removed before they are killed.
    for (const name of ['rgw', 'osd', 'mon']) {
      try {
        daemons.add(Number(readFileSync(join(dir, 'pids', name), 'utf8').trim()))
      } catch {
        // not started
      }
    }
  }
  const vars = Object.fromEntries(out.trim().split('\n').map(line => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]))
  const { S3Client, CreateBucketCommand, ListObjectsV2Command, DeleteObjectsCommand, DeleteBucketCommand } = await import('@aws-sdk/client-s3')
  const client = new S3Client({
    endpoint: vars.ENDPOINT,
    region: vars.REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: vars.ACCESS_KEY, secretAccessKey: vars.SECRET_KEY },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  })
  const version = spawnSync('radosgw', ['--version'], { encoding: 'utf8' }).stdout.trim().split('\n')[0]
  return {
    version,
    /** Stevedore's `storage.s3` for `bucket`. */
    storage: bucket => ({
      s3: { region: vars.REGION, bucket, regionendpoint: vars.ENDPOINT, accesskey: vars.ACCESS_KEY, secretkey: vars.SECRET_KEY, forcepathstyle: true },
    }),
    createBucket: async label => {
      const bucket = `bench-${label}-${randomBytes(4).toString('hex')}`
      await client.send(new CreateBucketCommand({ Bucket: bucket }))
      return bucket
    },
    /** Empties and deletes a bucket: the OSD keeps objects in RAM (memstore). */
    removeBucket: async bucket => {
      for (let token; ; ) {
        const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }))
        const keys = (page.Contents ?? []).map(o => ({ Key: o.Key }))
        if (keys.length > 0) await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }))
        if (!page.IsTruncated) break
        token = page.NextContinuationToken
      }
      await client.send(new DeleteBucketCommand({ Bucket: bucket }))
    },
    close: async () => {
      client.destroy()
      await run('bash', [CEPH_SCRIPT, 'stop', dir], { timeoutMs: 60_000, anyExit: true })
      removeDir(dir)
    },
  }
}

// ---- The client: a pull as a registry client does it ----

/**
 * GETs `url`, hashing the body as it streams; resolves to its sha256 digest and length.
 * @param {string} url @param {Agent} agent @param {Record<string, string>} [headers]
 */
function hashedGet(url, agent, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent, headers }, res => {
      if (res.statusCode !== 200) {
        let text = ''
        res.setEncoding('utf8').on('data', c => (text += c))
        res.on('end', () => reject(new Error(`GET ${url}: HTTP ${res.statusCode} ${text.slice(0, 300)}`)))
        return
      }
      const hash = createHash('sha256')
      const chunks = []
      let size = 0
      const keep = headers.Accept !== undefined // a manifest: keep its bytes to read the blob list
      res.on('data', chunk => {
        hash.update(chunk)
        size += chunk.length
        if (keep) chunks.push(chunk)
      })
      res.on('end', () => resolve({ digest: `sha256:${hash.digest('hex')}`, size, body: keep ? Buffer.concat(chunks) : undefined }))
      res.on('error', reject)
    })
    req.setTimeout(120_000, () => req.destroy(new Error(`GET ${url}: no data for 120 s`)))
    req.on('error', reject)
  })
}

/**
 * The manifest by tag, then every blob it names at once, each checked against its digest and size.
 * @param {string} base @param {Agent} agent @param {import('./lib/image.mjs').PushedImage} image
 */
async function pull(base, agent, image) {
  const manifest = await hashedGet(`${base}/v2/${REPO}/manifests/${image.tag}`, agent, { Accept: MANIFEST_ACCEPT })
  if (manifest.digest !== image.manifest.digest) throw new Error(`${base}: manifest ${REPO}:${image.tag} is ${manifest.digest}, pushed ${image.manifest.digest}`)
  const { config, layers } = JSON.parse(String(manifest.body))
  await Promise.all(
    [config, ...layers].map(async d => {
      const got = await hashedGet(`${base}/v2/${REPO}/blobs/${d.digest}`, agent)
      if (got.digest !== d.digest || got.size !== d.size) throw new Error(`${base}: blob ${d.digest} (${d.size} bytes) arrived as ${got.size} bytes hashing to ${got.digest}`)
    }),
  )
}

/**
 * `clients` concurrent pulls, client i on replica i mod N: wall seconds, and
 * per replica the seconds until its last client was done (who waited on whom).
 */
async function pullAll(replicas, agents, image, clients) {
  const started = performance.now()
  const lastDone = replicas.map(() => 0)
  await Promise.all(
    Array.from({ length: clients }, async (_, i) => {
      const k = i % replicas.length
      await pull(replicas[k].url, agents[k], image)
      lastDone[k] = Math.max(lastDone[k], (performance.now() - started) / 1000)
    }),
  )
  return { seconds: (performance.now() - started) / 1000, perReplica: lastDone }
}

/** `blob fill started` lines in a replica's log (its stdout file, `access.log` in its cwd); undefined without the info log. */
function fillsStarted(replica) {
  try {
    const text = readFileSync(join(readlinkSync(`/proc/${replica.pid}/cwd`), 'access.log'), 'utf8')
    return text.split('\n').filter(line => line.includes('"msg":"blob fill started"')).length
  } catch {
    return undefined
  }
}

// ---- One cell: N replicas on one fresh storage and Redis namespace, cold then warm ----

async function measureCell({ storage, n, runIndex, p, upstream, image, imageBytes, build, redis, ceph }) {
  const label = `${storage}-${n}-run${runIndex + 1}`
  const say = msg => log(`run ${runIndex + 1}/${p.runs} ${storage} ×${n}: ${msg}`)
  const shared = storage === 'filesystem' ? tempDir('replicas-storage') : undefined
  const bucket = storage === 's3' ? await ceph.createBucket(`${n}-${runIndex + 1}`) : undefined
  const spools = storage === 's3' ? Array.from({ length: n }, () => tempDir('replicas-spool')) : []
  const metadata = { store: 'redis', url: redis.url, namespace: `bench-replicas-${process.pid}-${label}` }
  const replicas = []
  const agents = Array.from({ length: n }, () => new Agent({ keepAlive: true }))
  try {
    const started = await Promise.allSettled(
      Array.from({ length: n }, (_, i) =>
        startStevedore(upstream.url, build, {
          accessLog: p.accessLog,
          storage: shared,
          extra: { metadata, ...(storage === 's3' ? { storage: ceph.storage(bucket), spool: { directory: spools[i] } } : {}) },
        }),
      ),
    )
    for (const s of started) if (s.status === 'fulfilled') replicas.push(s.value)
    const failed = started.find(s => s.status === 'rejected')
    if (failed) throw failed.reason

    let mark = upstream.log.length
    const { seconds: coldSeconds, perReplica: coldPerReplica } = await pullAll(replicas, agents, image, p.clients)
    await settle(upstream)
    const cold = servedSince(upstream, mark)
    const fills = replicas.map(fillsStarted)
    mark = upstream.log.length
    const { seconds: warmSeconds, perReplica: warmPerReplica } = await pullAll(replicas, agents, image, p.clients)
    await settle(upstream)
    const warm = servedSince(upstream, mark)
    const r = {
      coldSeconds,
      coldPullsPerSecond: p.clients / coldSeconds,
      coldBlobGets: cold.blobGets,
      coldUpstreamMiB: cold.blobBytes / MIB,
      coldUpstreamTimesImage: cold.blobBytes / imageBytes,
      coldManifestRequests: cold.manifestRequests,
      fillsStarted: fills.every(f => f !== undefined) ? fills.reduce((a, b) => a + b, 0) : NaN,
      warmSeconds,
      warmPullsPerSecond: p.clients / warmSeconds,
      warmMBps: (p.clients * imageBytes) / warmSeconds / 1e6,
      warmBlobGets: warm.blobGets,
      warmManifestRequests: warm.manifestRequests,
    }
    say(
      `cold ${coldSeconds.toFixed(2)} s (${r.coldPullsPerSecond.toFixed(1)} pulls/s), upstream ${r.coldBlobGets} blob GETs, ` +
        `${r.coldUpstreamMiB.toFixed(1)} MiB = ${r.coldUpstreamTimesImage.toFixed(2)}× the image, fills started ${fills.join('+')}, ` +
        `last client done per replica ${coldPerReplica.map(v => v.toFixed(2)).join(' / ')} s; ` +
        `warm ${warmSeconds.toFixed(2)} s (${r.warmPullsPerSecond.toFixed(1)} pulls/s, ${r.warmMBps.toFixed(0)} MB/s), upstream ${r.warmBlobGets} blob GETs`,
    )
    return { rows: r, fillsPerReplica: fills, coldPerReplica, warmPerReplica }
  } finally {
    for (const agent of agents) agent.destroy()
    await Promise.all(replicas.map(r => r.close()))
    if (shared) removeDir(shared)
    for (const dir of spools) removeDir(dir)
    if (bucket) await ceph.removeBucket(bucket).catch(error => say(`WARNING: could not remove bucket ${bucket}: ${error}`))
  }
}

// ---- Report ----

/** @type {{key: string, label: string, better: 'lower'|'higher', digits: number, ratio?: string}[]} `ratio`: the label of a ÷ 1 replica column */
const COLUMNS = [
  { key: 'coldSeconds', label: 'cold: wall (s) ↓', better: 'lower', digits: 2 },
  { key: 'coldPullsPerSecond', label: 'cold: pulls/s ↑', better: 'higher', digits: 1, ratio: 'cold pulls/s vs 1 replica' },
  { key: 'coldBlobGets', label: 'cold: upstream blob GETs', better: 'lower', digits: 0 },
  { key: 'coldUpstreamMiB', label: 'cold: upstream MiB', better: 'lower', digits: 1 },
  { key: 'coldUpstreamTimesImage', label: 'cold: upstream ÷ image', better: 'lower', digits: 2 },
  { key: 'fillsStarted', label: 'cold: fills started', better: 'lower', digits: 0 },
  { key: 'warmPullsPerSecond', label: 'warm: pulls/s ↑', better: 'higher', digits: 1, ratio: 'warm pulls/s vs 1 replica' },
  { key: 'warmMBps', label: 'warm: MB/s ↑', better: 'higher', digits: 0 },
  { key: 'warmBlobGets', label: 'warm: upstream blob GETs', better: 'lower', digits: 0 },
]

function markdown(samples, meta, p) {
  const head = ['storage', 'replicas', ...COLUMNS.flatMap(c => (c.ratio ? [c.label, c.ratio] : [c.label]))]
  const lines = [`| ${head.join(' | ')} |`, `|---|---:|${head.slice(2).map(() => '---:').join('|')}|`]
  for (const storage of p.storages) {
    if (samples[storage] === undefined) {
      lines.push(`| ${storage} | — | ${meta.skipped[storage] ?? 'not measured'} |${head.slice(3).map(() => '').join('|')}|`)
      continue
    }
    for (const n of p.replicas) {
      const s = samples[storage][n] ?? {}
      const one = samples[storage][1] ?? {}
      const cells = COLUMNS.flatMap(c => {
        const v = cell(s[c.key], c.digits)
        if (!c.ratio) return [v]
        return [v, n === 1 ? '1.00×' : ratioText(c.better, s[c.key], one[c.key], '1 replica').text]
      })
      lines.push(`| ${storage} | ${n} | ${cells.join(' | ')} |`)
    }
  }
  const m = meta.machine
  return [
    `## Stevedore replicas on one shared storage and one Redis (${meta.date})`,
    '',
    `Command: \`${meta.command}\`  `,
    `${p.clients} concurrent pulls (manifest by tag, then every blob at once, each checked against its sha256) spread round-robin over the replicas; ` +
      `image ${fmt(meta.imageMiB, 1)} MiB in ${p.layers} layers + config (${p.layers + 1} blobs). Cold: empty storage, fresh Redis namespace; warm: the same pulls again. ` +
      `Median of ${p.runs} run(s), (min–max) when they differ; ratios are of the medians against 1 replica on the same storage, *better*/**worse** beyond ±5 %. ` +
      `Machine: ${m.cpus}× ${m.cpuModel}, Node ${m.node}, loopback, the client, the replicas, the upstream, Redis and Ceph sharing the cores; ` +
      `load average ${m.loadAverageAtStart.join(' ')} at start, ${m.loadAverageAtEnd.join(' ')} at end. ${meta.redis}; ${meta.ceph}. ` +
      (p.accessLog ? 'Every replica logs each request to a file.' : 'Access logs off (`--no-access-log`).'),
    '',
    ...lines,
    '',
    'Checks (every run, not the median):',
    '',
    ...meta.checks.map(c => `- ${c.ok ? 'PASS' : '**FAIL**'}: ${c.what}`),
    '',
  ].join('\n')
}

function checks(samples, p, imageBytes) {
  const list = []
  for (const [storage, byN] of Object.entries(samples)) {
    for (const [n, s] of Object.entries(byN)) {
      list.push({ what: `${storage}, ${n} replica(s): each blob crossed the upstream once on every cold phase (${p.layers + 1} blob GETs, ${fmt(imageBytes / MIB, 1)} MiB)`, ok: s.coldBlobGets.every(v => v === p.layers + 1) && s.coldUpstreamTimesImage.every(v => Math.abs(v - 1) < 1e-9) })
      list.push({ what: `${storage}, ${n} replica(s): the warm pulls asked the upstream for no blob`, ok: s.warmBlobGets.every(v => v === 0) })
    }
  }
  return list
}

async function main() {
  const p = options()
  const command = `node bench/replicas.mjs ${process.argv.slice(2).join(' ')}`.trim()
  requireCommands({ [DISTRIBUTION_BIN]: 'docker-registry', 'redis-server': 'redis-server' })
  if (START_LOAD[0] > 1) log(`load average ${START_LOAD.join(' ')} on ${cpus().length} cores: something else is running; numbers will be low and noisy`)
  const skipped = {}
  const missingCeph = CEPH_COMMANDS.filter(c => which(c) === undefined)
  if (p.storages.includes('s3') && missingCeph.length > 0) {
    skipped.s3 = `not measured (radosgw not installed: ${CEPH_INSTALL})`
    process.stdout.write(`s3: ${skipped.s3}\n`)
  }
  const storages = p.storages.filter(s => skipped[s] === undefined)
  const build = snapshotStevedore()
  const host = { ...(await machine(START_LOAD)), stevedoreDist: treeHash(join(build, 'dist')) }
  const upstream = await startUpstream()
  const layerMiB = Array.from({ length: p.layers }, () => p.sizeMiB / p.layers)
  log(`upstream Distribution on ${upstream.url}; pushing a ${p.sizeMiB} MiB ${p.layers}-layer image`)
  const image = await pushImage(upstream.url, REPO, 'v1', { seed: `replicas/${p.sizeMiB}/${p.layers}`, layerMiB })
  const imageBytes = [image.config, ...image.layers].reduce((sum, d) => sum + d.size, 0)
  const redis = await startRedis()
  let ceph
  if (storages.includes('s3')) {
    try {
      ceph = await startCeph()
      log(`Ceph radosgw up (${ceph.version})`)
    } catch (error) {
      skipped.s3 = `not measured (scripts/ceph-s3.sh start failed: ${String(error).split('\n')[0].slice(0, 300)})`
      log(`s3: ${skipped.s3}`)
      storages.splice(storages.indexOf('s3'), 1)
    }
  }

  /** @type {Record<string, Record<number, Record<string, number[]>>>} */
  const samples = {}
  const raw = []
  try {
    for (let runIndex = 0; runIndex < p.runs; runIndex++) {
      // Rotate the order so no replica count always runs first on a warming machine.
      const order = p.replicas.map((_, i) => p.replicas[(i + runIndex) % p.replicas.length])
      for (const storage of storages) {
        for (const n of order) {
          const result = await measureCell({ storage, n, runIndex, p, upstream, image, imageBytes, build, redis, ceph })
          const s = ((samples[storage] ??= {})[n] ??= {})
          for (const [key, value] of Object.entries(result.rows)) (s[key] ??= []).push(value)
          raw.push({ run: runIndex + 1, storage, replicas: n, ...result })
        }
      }
    }
  } finally {
    await ceph?.close()
    await redis.close()
    await upstream.close()
  }

  const meta = {
    date: new Date().toISOString(),
    command,
    machine: { ...host, loadAverageAtEnd: loadavg().map(v => Number(v.toFixed(2))) },
    imageMiB: imageBytes / MIB,
    redis: redis.version.split(' ').slice(0, 3).join(' '),
    ceph: ceph ? `Ceph ${ceph.version.replace(/^ceph version /, '').split(' ')[0]}, one mon, one OSD on memstore, radosgw (scripts/ceph-s3.sh), a fresh bucket per cell` : `s3: ${skipped.s3 ?? 'not asked for'}`,
    skipped,
    checks: checks(samples, p, imageBytes),
  }
  const md = markdown(samples, meta, p)
  const medians = Object.fromEntries(Object.entries(samples).map(([st, byN]) => [st, Object.fromEntries(Object.entries(byN).map(([n, s]) => [n, Object.fromEntries(Object.entries(s).map(([k, v]) => [k, median(v)]))]))]))
  const stamp = meta.date.replace(/[:.]/g, '-')
  const written = writeResults(join(REPO_ROOT, 'bench/results'), `${stamp}${p.quick ? '-quick' : ''}`, { ...meta, params: p, image, medians, samples, raw }, md, 'replicas')
  process.stdout.write(`${md}\n`)
  log(`wrote ${written.md} and ${written.json}`)
  if (meta.checks.some(c => !c.ok)) process.exitCode = 1
}

main().catch(error => {
  process.stderr.write(`bench: failed: ${error instanceof Error ? error.stack : String(error)}\n`)
  cleanupNow()
  process.exit(1)
})
