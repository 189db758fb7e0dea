#!/usr/bin/env node
/**
 * Pull benchmark: Stevedore vs Distribution 2.8 in proxy mode vs nginx as a
 * proxy_cache mirror vs the upstream served directly, side by side in one run
 * on one upstream.
 *
 *   npm run bench                        # 200 MiB, 5 layers, 3 runs
 *   node bench/pull.mjs --size-mib 200 --layers 5 --runs 3
 *   node bench/pull.mjs --quick          # smoke run, small blobs, 1 run
 *
 * See bench/README.md for what each row measures and the caveats.
 */
import { createHash } from 'node:crypto'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as delay } from 'node:timers/promises'
import { abHead, cpuMeter, curlMBps, drain, herd, peakRss, skopeoPull, statusMiB, wrkGet } from './lib/clients.mjs'
import { MANIFEST_ACCEPT, pushImage } from './lib/image.mjs'
import { machine, treeHash } from './lib/machine.mjs'
import { cleanupNow, requireCommands } from './lib/procs.mjs'
import { NGINX_INSTALL, nginxAvailable, startNginxMirror, startNginxStatic } from './lib/nginx.mjs'
import { DISTRIBUTION_BIN, REPO_ROOT, servedSince, snapshotStevedore, startBareNode, startDistributionProxy, startStevedore, startUpstream } from './lib/registries.mjs'
import { startRedis } from './lib/redis.mjs'
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
      'no-access-log': { type: 'boolean', default: false },
      'nginx-workers': { type: 'string', default: 'auto' },
      workers: { type: 'string', default: '2' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help) {
    process.stdout.write('usage: node bench/pull.mjs [--size-mib 200] [--layers 5] [--runs 3] [--quick] [--no-access-log] [--nginx-workers auto|N] [--workers N]\n')
    process.exit(0)
  }
  const workers = values['nginx-workers']
  if (workers !== 'auto' && !/^[1-9]\d*$/.test(workers)) throw new Error(`--nginx-workers: auto or a positive integer, not ${workers}`)
  if (!/^\d+$/.test(values.workers)) throw new Error(`--workers: a number of Stevedore workers (0 or 1: no such column), not ${values.workers}`)
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
    accessLog: !values['no-access-log'],
    nginxWorkers: workers,
    workers: Number(values.workers),
  }
}

/** Waits until the upstream's access log has been quiet for 300 ms (its lines arrive through a pipe). */
async function settle(upstream) {
  for (let last = -1, deadline = Date.now() + 5000; upstream.log.length !== last && Date.now() < deadline; ) {
    last = upstream.log.length
    await delay(300)
  }
}

/**
 * Fails loudly unless `url` answers a HEAD (or GET: with the manifest's
 * bytes) with 200 and `digest`. It is also what fills a cache before a row.
 * @param {string} url @param {import('./lib/image.mjs').Descriptor} manifest @param {'HEAD'|'GET'} [method]
 */
async function expectManifest(url, manifest, method = 'HEAD') {
  const res = await fetch(url, { method, headers: { Accept: MANIFEST_ACCEPT } })
  const got = res.headers.get('docker-content-digest')
  const body = method === 'GET' ? Buffer.from(await res.arrayBuffer()) : undefined
  if (res.status !== 200 || got !== manifest.digest) throw new Error(`${method} ${url}: ${res.status}, digest ${got}, expected ${manifest.digest}`)
  if (body !== undefined && (body.length !== manifest.size || `sha256:${createHash('sha256').update(body).digest('hex')}` !== manifest.digest)) {
    throw new Error(`GET ${url}: ${body.length} bytes that are not the manifest ${manifest.digest}`)
  }
}

/**
 * Every row for one target, on a server whose cache (if any) is empty.
 * @param {'direct'|'distribution'|'nginx'|'stevedore'|'workers'} target
 * @param {{url: string, host: string, pid: number, pids: () => number[]}} server
 * @param {import('./lib/registries.mjs').Upstream} upstream
 */
async function measure(target, server, upstream, image, extra, p, say) {
  /** @type {Record<string, number>} */
  const r = {}
  const raw = {}
  const blobUrl = d => `${server.url}/v2/${REPO}/blobs/${d.digest}`
  const [big, herdBlob] = extra.layers

  // nginx is a master and its workers: CPU and RSS are summed over all of them.
  const pids = () => server.pids()
  let mark = upstream.log.length
  let cpu = cpuMeter(pids)
  r.coldPull = await skopeoPull(server.host, REPO, image.tag)
  r.coldCpu = cpu()
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
  cpu = cpuMeter(pids)
  for (let i = 0; i < p.blobGets; i++) raw.blobMBps.push(await curlMBps(blobUrl(big), big.size))
  r.blobCpu = cpu() / ((p.blobGets * big.size) / 2 ** 30)
  r.blobMBps = median(raw.blobMBps)
  say(`warm blob ${raw.blobMBps.map(v => v.toFixed(0)).join(', ')} MB/s`)

  const byDigest = `${server.url}/v2/${REPO}/manifests/${image.manifest.digest}`
  const byTag = `${server.url}/v2/${REPO}/manifests/${image.tag}`
  /**
   * One load-generator run on a warm manifest URL: req/s, server CPU per
   * request, and (by tag) the manifest requests the upstream saw meanwhile.
   * @param {'head'|'get'} kind @param {'Digest'|'Tag'} by @param {string} url
   */
  const manifestRow = async (kind, by, url) => {
    const key = `${kind}${by}`
    await expectManifest(url, image.manifest, kind === 'head' ? 'HEAD' : 'GET')
    await settle(upstream)
    const from = upstream.log.length
    const meter = cpuMeter(pids)
    raw[key] = kind === 'head' ? await abHead(url, p.abSeconds) : await wrkGet(url, p.abSeconds)
    r[`${key}Cpu`] = (meter() / raw[key].complete) * 1e6
    r[key] = raw[key].rps
    if (by === 'Tag' && target !== 'direct') {
      await settle(upstream)
      r[`${key}Upstream`] = servedSince(upstream, from).manifestRequests
    }
    if (raw[key].failed > 0) say(`WARNING: ${kind.toUpperCase()} by ${by.toLowerCase()}: ${raw[key].failed} of ${raw[key].complete} failed or non-2xx`)
  }
  for (const kind of /** @type {const} */ (['head', 'get'])) {
    await manifestRow(kind, 'Digest', byDigest)
    await manifestRow(kind, 'Tag', byTag)
    const up = r[`${kind}TagUpstream`]
    say(`${kind.toUpperCase()} by digest ${r[`${kind}Digest`].toFixed(0)} req/s, by tag ${r[`${kind}Tag`].toFixed(0)} req/s` +
      (up === undefined ? '' : ` (${up} upstream manifest requests)`))
  }

  r.idleRss = statusMiB(pids())
  raw.rss = await peakRss(pids(), blobUrl(big), big.size, p.rssClients, p.rssRate)
  r.peakRss = raw.rss.peakMiB
  say(`peak RSS ${r.peakRss.toFixed(0)} MiB (idle ${raw.rss.baselineMiB.toFixed(0)} MiB, ${raw.rss.seconds.toFixed(1)} s)`)
  return { rows: r, raw }
}

async function main() {
  const p = options()
  const command = `node bench/pull.mjs ${process.argv.slice(2).join(' ')}`.trim()
  const log = msg => process.stderr.write(`bench: ${msg}\n`)
  const layerMiB = Array.from({ length: p.layers }, () => p.sizeMiB / p.layers)

  requireCommands({ [DISTRIBUTION_BIN]: 'docker-registry', skopeo: 'skopeo', curl: 'curl', ab: 'apache2-utils', wrk: 'wrk' })
  if (START_LOAD[0] > 1) log(`load average ${START_LOAD.join(' ')} on ${cpus().length} cores: something else is running; numbers will be low and noisy`)
  const build = snapshotStevedore()
  const buildHash = treeHash(join(build, 'dist'))
  // Taken when the build is: others may commit while the run is under way.
  const host = { ...(await machine(START_LOAD)), stevedoreDist: buildHash }
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
  if (!withNginx) log(`nginx not found: the nginx proxy_cache mirror column says "not installed" and the static-file calibration is skipped (${NGINX_INSTALL})`)
  const targets = TARGETS.filter(t => (t !== 'nginx' || withNginx) && (t !== 'workers' || p.workers > 1))
  // Stevedore with http.workers coordinates its workers through a shared store: a private Redis.
  const redis = p.workers > 1 ? await startRedis() : undefined
  for (let runIndex = 0; runIndex < p.runs; runIndex++) {
    if (withNginx) {
      const nginx = await startNginxStatic(p.blobMiB * MIB)
      try {
        for (let i = 0; i < p.blobGets; i++) nginxMBps.push(await curlMBps(nginx.fileUrl, p.blobMiB * MIB))
      } finally {
        await nginx.close()
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
    const order = targets.map((_, i) => targets[(i + runIndex) % targets.length])
    for (const target of order) {
      const say = msg => log(`run ${runIndex + 1}/${p.runs} ${target}: ${msg}`)
      const logs = { accessLog: p.accessLog }
      const proxy =
        target === 'stevedore'
          ? await startStevedore(upstream.url, build, logs)
          : target === 'workers'
            ? await startStevedore(upstream.url, build, {
                ...logs,
                workers: p.workers,
                extra: { metadata: { store: 'redis', url: redis?.url, namespace: `bench-pull-${process.pid}-${runIndex}` } },
              })
          : target === 'distribution'
            ? await startDistributionProxy(upstream.url, logs)
            : target === 'nginx'
              ? await startNginxMirror(upstream.url, { ...logs, workers: p.nginxWorkers })
              : undefined
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
  await redis?.close()

  const params = { ...p, imageMiB }
  const rowList = rows(params)
  const results = checks(samples, params, nginxMBps)
  const meta = { date: new Date().toISOString(), command, runs: p.runs, machine: { ...host, loadAverageAtEnd: loadavg().map(v => Number(v.toFixed(2))) }, checks: results,
    accessLog: p.accessLog, nginxWorkers: p.nginxWorkers, workers: p.workers, nginxMissing: !withNginx, nginxInstall: NGINX_INSTALL,
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
