#!/usr/bin/env node
/**
 * Pull benchmark: Stevedore vs Distribution 2.8 in proxy mode vs the upstream
 * served directly, side by side in one run on one upstream.
 *
 *   npm run bench                        # 200 MiB, 5 layers, 3 runs
 *   node bench/pull.mjs --size-mib 200 --layers 5 --runs 3
 *   node bench/pull.mjs --quick          # ~40 s smoke run, small blobs, 1 run
 *
 * See bench/README.md for what each row measures and the caveats.
 */
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { cpus, loadavg, release } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as delay } from 'node:timers/promises'
import { abHead, cpuSeconds, curlMBps, drain, herd, peakRss, skopeoPull, statusMiB } from './lib/clients.mjs'
import { MANIFEST_ACCEPT, pushImage } from './lib/image.mjs'
import { cleanupNow, run } from './lib/procs.mjs'
import { nginxAvailable, startNginx } from './lib/nginx.mjs'
import { REPO_ROOT, servedSince, snapshotStevedore, startBareNode, startDistributionProxy, startStevedore, startUpstream } from './lib/registries.mjs'
import { TARGETS, checks, markdown, median, rows, writeResults } from './lib/report.mjs'

const MIB = 1024 * 1024
const START_LOAD = loadavg().map(v => Number(v.toFixed(2)))
const REPO = 'bench/app'

function options() {
  const { values } = parseArgs({
    options: {
      'size-mib': { type: 'string' },
      layers: { type: 'string' },
      runs: { type: 'string' },
      quick: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help) {
    process.stdout.write('usage: node bench/pull.mjs [--size-mib 200] [--layers 5] [--runs 3] [--quick]\n')
    process.exit(0)
  }
  const q = values.quick
  const num = (raw, fallback) => {
    const n = raw === undefined ? fallback : Number(raw)
    if (!Number.isFinite(n) || n <= 0) throw new Error(`not a positive number: ${raw}`)
    return n
  }
  return {
    quick: q,
    sizeMiB: num(values['size-mib'], q ? 40 : 200),
    layers: Math.round(num(values.layers, 5)),
    runs: Math.round(num(values.runs, q ? 1 : 3)),
    blobMiB: q ? 16 : 80,
    herdMiB: q ? 16 : 48,
    herdClients: 16,
    rssClients: q ? 16 : 64,
    rssRate: 20e6,
    abSeconds: q ? 5 : 10,
    blobGets: q ? 2 : 5,
  }
}

/** Waits until the upstream's access log has been quiet for 300 ms (its lines arrive through a pipe). */
async function settle(upstream) {
  for (let last = -1, deadline = Date.now() + 5000; upstream.log.length !== last && Date.now() < deadline; ) {
    last = upstream.log.length
    await delay(300)
  }
}

/** Fails loudly unless `url` answers a HEAD with 200 and `digest`. */
async function expectManifest(url, digest) {
  const res = await fetch(url, { method: 'HEAD', headers: { Accept: MANIFEST_ACCEPT } })
  const got = res.headers.get('docker-content-digest')
  if (res.status !== 200 || got !== digest) throw new Error(`HEAD ${url}: ${res.status}, digest ${got}, expected ${digest}`)
}

/**
 * Every row for one target, on a server whose cache (if any) is empty.
 * @param {'direct'|'distribution'|'stevedore'} target
 * @param {{url: string, host: string, pid: number}} server
 * @param {import('./lib/registries.mjs').Upstream} upstream
 */
async function measure(target, server, upstream, image, extra, p, say) {
  /** @type {Record<string, number>} */
  const r = {}
  const raw = {}
  const blobUrl = d => `${server.url}/v2/${REPO}/blobs/${d.digest}`
  const [big, herdBlob] = extra.layers

  const cpu = () => cpuSeconds(server.pid)
  let mark = upstream.log.length
  let cpu0 = cpu()
  r.coldPull = await skopeoPull(server.host, REPO, image.tag)
  r.coldCpu = cpu() - cpu0
  await settle(upstream)
  const cold = servedSince(upstream, mark)
  r.coldBlobGets = cold.blobGets
  r.coldUpstreamMiB = cold.blobBytes / MIB
  r.warmPull = await skopeoPull(server.host, REPO, image.tag)
  say(`cold pull ${r.coldPull.toFixed(2)} s (${r.coldBlobGets} blob GETs upstream), warm ${r.warmPull.toFixed(2)} s`)

  mark = upstream.log.length
  r.herdSeconds = await herd(blobUrl(herdBlob), herdBlob.size, p.herdClients)
  await settle(upstream)
  r.herdFetches = servedSince(upstream, mark, herdBlob.digest).blobGets
  say(`herd ${r.herdSeconds.toFixed(2)} s, upstream served it ${r.herdFetches}×`)

  // The first GET fills a proxy's cache, the second makes sure it is committed and linked.
  await drain(blobUrl(big))
  await drain(blobUrl(big))
  raw.blobMBps = []
  cpu0 = cpu()
  for (let i = 0; i < p.blobGets; i++) raw.blobMBps.push(await curlMBps(blobUrl(big), big.size))
  r.blobCpu = (cpu() - cpu0) / ((p.blobGets * big.size) / 2 ** 30)
  r.blobMBps = median(raw.blobMBps)
  say(`warm blob ${raw.blobMBps.map(v => v.toFixed(0)).join(', ')} MB/s`)

  const byDigest = `${server.url}/v2/${REPO}/manifests/${image.manifest.digest}`
  const byTag = `${server.url}/v2/${REPO}/manifests/${image.tag}`
  await expectManifest(byDigest, image.manifest.digest)
  await expectManifest(byTag, image.manifest.digest)
  cpu0 = cpu()
  raw.headDigest = await abHead(byDigest, p.abSeconds)
  r.headDigestCpu = ((cpu() - cpu0) / raw.headDigest.complete) * 1e6
  r.headDigest = raw.headDigest.rps
  mark = upstream.log.length
  cpu0 = cpu()
  raw.headTag = await abHead(byTag, p.abSeconds)
  r.headTagCpu = ((cpu() - cpu0) / raw.headTag.complete) * 1e6
  r.headTag = raw.headTag.rps
  await settle(upstream)
  if (target !== 'direct') r.headTagUpstream = servedSince(upstream, mark).manifestRequests
  for (const [k, v] of Object.entries({ digest: raw.headDigest, tag: raw.headTag })) {
    if (v.failed > 0) say(`WARNING: HEAD by ${k}: ${v.failed} of ${v.complete} failed or non-2xx`)
  }
  say(`HEAD by digest ${r.headDigest.toFixed(0)} req/s, by tag ${r.headTag.toFixed(0)} req/s` +
    (r.headTagUpstream === undefined ? '' : ` (${r.headTagUpstream} upstream manifest requests)`))

  r.idleRss = statusMiB(server.pid)
  raw.rss = await peakRss(server.pid, blobUrl(big), big.size, p.rssClients, p.rssRate)
  r.peakRss = raw.rss.peakMiB
  say(`peak RSS ${r.peakRss.toFixed(0)} MiB (idle ${raw.rss.baselineMiB.toFixed(0)} MiB, ${raw.rss.seconds.toFixed(1)} s)`)
  return { rows: r, raw }
}

/** sha256 over every file of a dist/ tree, in path order: which build was measured. @param {string} dir */
function treeHash(dir) {
  const hash = createHash('sha256')
  const files = readdirSync(dir, { recursive: true, withFileTypes: true }).filter(e => e.isFile())
  for (const path of files.map(e => join(e.parentPath ?? e.path, e.name)).sort()) hash.update(path.slice(dir.length)).update(readFileSync(path))
  return `sha256:${hash.digest('hex')}`
}

async function machine() {
  const version = async (cmd, args) => (await run(cmd, args).catch(e => ({ stdout: String(e) }))).stdout.trim().split('\n')[0]
  const git = async args => (await run('git', ['-C', REPO_ROOT, ...args]).catch(() => ({ stdout: '' }))).stdout.trim()
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    kernel: release(),
    node: process.versions.node,
    distribution: await version('docker-registry', ['--version']),
    skopeo: await version('skopeo', ['--version']),
    ab: await version('ab', ['-V']),
    commit: await git(['rev-parse', 'HEAD']),
    loadAverageAtStart: START_LOAD,
    uncommittedInSrc: (await git(['status', '--porcelain', 'src'])).split('\n').filter(Boolean),
  }
}

async function main() {
  const p = options()
  const command = `node bench/pull.mjs ${process.argv.slice(2).join(' ')}`.trim()
  const log = msg => process.stderr.write(`bench: ${msg}\n`)
  const layerMiB = Array.from({ length: p.layers }, () => p.sizeMiB / p.layers)

  if (START_LOAD[0] > 1) log(`load average ${START_LOAD.join(' ')} on ${cpus().length} cores: something else is running; numbers will be low and noisy`)
  const build = snapshotStevedore()
  const buildHash = treeHash(join(build, 'dist'))
  // Taken when the build is: others may commit while the run is under way.
  const host = { ...(await machine()), stevedoreDist: buildHash }
  const upstream = await startUpstream()
  log(`upstream Distribution on ${upstream.url}; pushing a ${p.sizeMiB} MiB ${p.layers}-layer image and a ${p.blobMiB} + ${p.herdMiB} MiB pair`)
  const image = await pushImage(upstream.url, REPO, 'pull', { seed: `pull/${p.sizeMiB}/${p.layers}`, layerMiB })
  const extra = await pushImage(upstream.url, REPO, 'blobs', { seed: `blobs/${p.blobMiB}/${p.herdMiB}`, layerMiB: [p.blobMiB, p.herdMiB] })
  const imageMiB = [image.config, ...image.layers].reduce((sum, d) => sum + d.size, 0) / MIB

  /** @type {Record<string, Record<string, number[]>>} */
  const samples = Object.fromEntries(TARGETS.map(t => [t, {}]))
  const raw = []
  const bareHead = []
  const nginxMBps = []
  const withNginx = await nginxAvailable()
  if (!withNginx) log('nginx not found: the static-file calibration is skipped (apt-get install nginx-light)')
  for (let runIndex = 0; runIndex < p.runs; runIndex++) {
    if (withNginx) {
      const nginx = await startNginx(p.blobMiB * MIB)
      try {
        for (let i = 0; i < p.blobGets; i++) nginxMBps.push(await curlMBps(nginx.fileUrl, p.blobMiB * MIB))
      } finally {
        await nginx.stop()
      }
      log(`run ${runIndex + 1}/${p.runs}: nginx static file ${nginxMBps.slice(-p.blobGets).map(v => v.toFixed(0)).join(', ')} MB/s`)
    }
    const bare = await startBareNode()
    try {
      bareHead.push((await abHead(`${bare.url}/v2/calibration/manifests/latest`, p.abSeconds)).rps)
    } finally {
      await bare.close()
    }
    log(`run ${runIndex + 1}/${p.runs}: bare node:http HEAD ${bareHead.at(-1)?.toFixed(0)} req/s`)
    // Rotate the order so no target always runs first (or last) on a warming machine.
    const order = TARGETS.map((_, i) => TARGETS[(i + runIndex) % TARGETS.length])
    for (const target of order) {
      const say = msg => log(`run ${runIndex + 1}/${p.runs} ${target}: ${msg}`)
      const proxy =
        target === 'stevedore' ? await startStevedore(upstream.url, build) : target === 'distribution' ? await startDistributionProxy(upstream.url) : undefined
      try {
        const result = await measure(target, proxy ?? upstream, upstream, image, extra, p, say)
        for (const [key, value] of Object.entries(result.rows)) (samples[target][key] ??= []).push(value)
        raw.push({ run: runIndex + 1, target, ...result })
      } finally {
        await proxy?.close()
      }
    }
  }
  await upstream.close()

  const params = { ...p, imageMiB }
  const rowList = rows(params)
  const results = checks(samples, params, nginxMBps)
  const meta = { date: new Date().toISOString(), command, runs: p.runs, machine: { ...host, loadAverageAtEnd: loadavg().map(v => Number(v.toFixed(2))) }, checks: results,
    calibration: `${Math.round(median(bareHead)).toLocaleString('en-US')} req/s (runs: ${bareHead.map(v => Math.round(v)).join(', ')})`, bareHead, nginxMBps }
  const md = markdown(rowList, samples, meta)
  const medians = Object.fromEntries(TARGETS.map(t => [t, Object.fromEntries(rowList.map(r => [r.key, median(samples[t][r.key] ?? [])]))]))
  const record = { ...meta, params, image: { ...image, extra }, rows: rowList, medians, samples, raw }
  const stamp = meta.date.replace(/[:.]/g, '-')
  const written = writeResults(join(REPO_ROOT, 'bench/results'), `${stamp}${p.quick ? '-quick' : ''}`, record, md)
  process.stdout.write(`${md}\n`)
  log(`wrote ${written.md} and ${written.json}`)
}

main().catch(error => {
  process.stderr.write(`bench: failed: ${error instanceof Error ? error.stack : String(error)}\n`)
  cleanupNow()
  process.exit(1)
})
