#!/usr/bin/env node
/**
 * Cost growth: how Stevedore's startup, memory, warm HEAD and catalog pages
 * change with the number of repositories in its storage, with Distribution's
 * catalog on the same tree beside it.
 *
 *   npm run bench:growth                          # N = 10, 10,000, 100,000; 3 runs
 *   node bench/growth.mjs --sizes 10,10000 --runs 1
 *   node bench/growth.mjs --quick                 # N = 10, 10,000; 1 run
 *
 * For each N a Distribution-layout tree (lib/layout.mjs) is written once into
 * a temp dir; each run starts Stevedore on it in proxy mode (its upstream a
 * loopback port nobody listens on: everything asked for is cached), measures,
 * stops it by PID, then does the same with a plain Distribution (`serve`,
 * not proxy) for the catalog rows. See bench/README.md.
 */
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { abHead, cpuMeter, nodeHeads, statusMiB } from './lib/clients.mjs'
import { MANIFEST_ACCEPT } from './lib/image.mjs'
import { generateTree } from './lib/layout.mjs'
import { machine, treeHash } from './lib/machine.mjs'
import { cleanupNow, freePort, removeDir, requireCommands, tempDir } from './lib/procs.mjs'
import { DISTRIBUTION_BIN, REPO_ROOT, snapshotStevedore, startDistributionOn, startStevedore } from './lib/registries.mjs'
import { cell, median, ratioText, writeResults } from './lib/report.mjs'

const START_LOAD = loadavg().map(v => Number(v.toFixed(2)))
const PAGE = 1000
const SAMPLE = 1000

function options() {
  const { values } = parseArgs({
    options: {
      sizes: { type: 'string' },
      runs: { type: 'string' },
      seconds: { type: 'string' },
      tmpdir: { type: 'string' },
      quick: { type: 'boolean', default: false },
      'no-access-log': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help) {
    process.stdout.write('usage: node bench/growth.mjs [--sizes 10,10000,100000] [--runs 3] [--seconds 5] [--tmpdir DIR] [--quick] [--no-access-log]\n')
    process.exit(0)
  }
  const q = values.quick
  const positive = (raw, fallback) => {
    const n = raw === undefined ? fallback : Number(raw)
    if (!Number.isInteger(n) || n <= 0) throw new Error(`not a positive integer: ${raw}`)
    return n
  }
  const sizes = (values.sizes ?? (q ? '10,10000' : '10,10000,100000')).split(',').map(v => positive(v.replace(/_/g, ''), 0))
  return {
    quick: q,
    sizes: [...new Set(sizes)].sort((a, b) => a - b),
    runs: positive(values.runs, q ? 1 : 3),
    seconds: positive(values.seconds, 5),
    tmpdir: values.tmpdir ?? tmpdir(),
    accessLog: !values['no-access-log'],
  }
}

/** mulberry32: the same "random" repositories in every run and on every machine. @param {number} seed */
function prng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** `k` distinct indices below `n`, in random order (a partial Fisher–Yates shuffle). @param {number} n @param {number} k @param {() => number} random */
function sampleOf(n, k, random) {
  const swapped = new Map()
  const out = []
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(random() * (n - i))
    out.push(swapped.get(j) ?? j)
    swapped.set(j, swapped.get(i) ?? i)
  }
  return out
}

/** @param {{names: string[], digests: string[]}} tree @param {number} i */
const target = (tree, i) => ({ path: `/v2/${tree.names[i]}/manifests/${tree.digests[i]}`, digest: tree.digests[i] })

/** Fails loudly unless a HEAD of repository `i`'s manifest by digest is a 200 with that digest. */
async function expectHead(base, tree, i) {
  const { path, digest } = target(tree, i)
  const res = await fetch(`${base}${path}`, { method: 'HEAD', headers: { Accept: MANIFEST_ACCEPT } })
  const got = res.headers.get('docker-content-digest')
  if (res.status !== 200 || got !== digest) throw new Error(`HEAD ${base}${path}: ${res.status}, digest ${got}, expected ${digest}`)
}

/**
 * One catalog page, timed from the request to the last byte of the parsed
 * body; fails unless it lists what the tree says it must.
 * @param {string} base @param {{names: string[]}} tree @param {number} [after] index of `last=`, or none
 */
async function catalogPage(base, tree, after) {
  const query = after === undefined ? `n=${PAGE}` : `n=${PAGE}&last=${encodeURIComponent(tree.names[after])}`
  const from = after === undefined ? 0 : after + 1
  const want = tree.names.slice(from, from + PAGE)
  const started = performance.now()
  const res = await fetch(`${base}/v2/_catalog?${query}`, { signal: AbortSignal.timeout(900_000) })
  const text = await res.text()
  const ms = performance.now() - started
  const got = res.status === 200 ? JSON.parse(text).repositories ?? [] : []
  if (res.status !== 200 || got.length !== want.length || got[0] !== want[0] || got.at(-1) !== want.at(-1)) {
    throw new Error(`GET ${base}/v2/_catalog?${query}: ${res.status}, ${got.length} names from ${got[0]} to ${got.at(-1)}; ` +
      `expected ${want.length} from ${want[0]} to ${want.at(-1)}\n${text.slice(0, 300)}`)
  }
  return ms
}

/** `times` sequential requests of one page: every time in ms. */
async function catalogTimes(base, tree, after, times = 3) {
  const out = []
  for (let i = 0; i < times; i++) out.push(await catalogPage(base, tree, after))
  return out
}

/**
 * Every Stevedore row for one tree, on a fresh process.
 * @param {Awaited<ReturnType<typeof startStevedore>>} ste @param {ReturnType<typeof generateTree>} tree
 */
async function measureStevedore(ste, tree, p, say) {
  /** @type {Record<string, number>} */
  const r = {}
  const raw = {}
  const pids = () => [ste.pid]
  r.startupMs = ste.startupMs
  r.rssStart = statusMiB(ste.pid)
  const n = tree.names.length
  const mid = Math.floor(n / 2)

  // One repository (the middle one), ab: the same client as bench/pull.mjs's HEAD rows.
  await expectHead(ste.url, tree, mid)
  let cpu = cpuMeter(pids)
  raw.abOne = await abHead(`${ste.url}${target(tree, mid).path}`, p.seconds)
  r.abOne = raw.abOne.rps
  r.abOneCpu = (cpu() / raw.abOne.complete) * 1e6

  // The same repository, the Node client: the reference for the two rows below.
  cpu = cpuMeter(pids)
  const one = target(tree, mid)
  raw.nodeOne = await nodeHeads(ste.url, () => one, p.seconds)
  r.nodeOne = raw.nodeOne.rps
  r.nodeOneCpu = (cpu() / raw.nodeOne.complete) * 1e6

  // A fixed random sample of repositories, each asked once before the timed part.
  const random = prng(0x5eed)
  const sample = sampleOf(n, Math.min(SAMPLE, n), random)
  for (const i of sample) await expectHead(ste.url, tree, i)
  let next = 0
  cpu = cpuMeter(pids)
  raw.nodeSample = await nodeHeads(ste.url, () => target(tree, sample[next++ % sample.length]), p.seconds)
  r.nodeSample = raw.nodeSample.rps
  r.nodeSampleCpu = (cpu() / raw.nodeSample.complete) * 1e6

  // Every request a repository drawn from all N, not asked for before (mostly).
  cpu = cpuMeter(pids)
  raw.nodeAll = await nodeHeads(ste.url, () => target(tree, Math.floor(random() * n)), p.seconds)
  r.nodeAll = raw.nodeAll.rps
  r.nodeAllCpu = (cpu() / raw.nodeAll.complete) * 1e6
  for (const key of ['abOne', 'nodeOne', 'nodeSample', 'nodeAll']) {
    if (raw[key].failed > 0) say(`WARNING: ${key}: ${raw[key].failed} of ${raw[key].complete} failed, non-200 or a wrong digest`)
  }
  r.rssAfterHeads = statusMiB(ste.pid)
  say(`startup ${r.startupMs.toFixed(0)} ms, RSS ${r.rssStart.toFixed(0)} MiB; HEAD ab ${r.abOne.toFixed(0)}, node one ${r.nodeOne.toFixed(0)}, ` +
    `sample ${r.nodeSample.toFixed(0)}, all ${r.nodeAll.toFixed(0)} req/s; RSS ${r.rssAfterHeads.toFixed(0)} MiB`)

  raw.catalogFirst = await catalogTimes(ste.url, tree)
  raw.catalogMiddle = await catalogTimes(ste.url, tree, mid)
  r.catalogFirst = median(raw.catalogFirst)
  r.catalogMiddle = median(raw.catalogMiddle)
  r.rssAfterCatalog = statusMiB(ste.pid)
  say(`catalog first page ${raw.catalogFirst.map(v => v.toFixed(0)).join(', ')} ms, last= middle ${raw.catalogMiddle.map(v => v.toFixed(0)).join(', ')} ms; RSS ${r.rssAfterCatalog.toFixed(0)} MiB`)
  return { rows: r, raw }
}

/** The Distribution rows: startup and the same catalog pages. */
async function measureDistribution(dist, tree, say) {
  const raw = {}
  const mid = Math.floor(tree.names.length / 2)
  raw.catalogFirst = await catalogTimes(dist.url, tree)
  raw.catalogMiddle = await catalogTimes(dist.url, tree, mid)
  const r = { distStartupMs: dist.startupMs, distCatalogFirst: median(raw.catalogFirst), distCatalogMiddle: median(raw.catalogMiddle) }
  say(`startup ${r.distStartupMs.toFixed(0)} ms; catalog first page ${raw.catalogFirst.map(v => v.toFixed(0)).join(', ')} ms, ` +
    `last= middle ${raw.catalogMiddle.map(v => v.toFixed(0)).join(', ')} ms`)
  return { rows: r, raw }
}

/** @param {{seconds: number}} p */
function rowList(p) {
  return [
    { key: 'startupMs', label: 'Stevedore: startup until `/v2/` answers (ms)', better: 'lower', digits: 0 },
    { key: 'rssStart', label: 'Stevedore: RSS right after start (MiB)', better: 'lower', digits: 0 },
    { key: 'abOne', label: `Stevedore: warm HEAD by digest, one repository, ab -i -k -c32 -t${p.seconds} (req/s)`, better: 'higher', digits: 0 },
    { key: 'abOneCpu', label: '… server CPU per request (µs)', better: 'lower', digits: 0 },
    { key: 'nodeOne', label: `Stevedore: HEAD by digest, one repository, Node client ×32 (req/s)`, better: 'higher', digits: 0 },
    { key: 'nodeOneCpu', label: '… server CPU per request (µs)', better: 'lower', digits: 0 },
    { key: 'nodeSample', label: `Stevedore: HEAD by digest, a fixed random sample of min(N, ${SAMPLE.toLocaleString('en-US')}) repositories (each asked once before), Node client ×32 (req/s)`, better: 'higher', digits: 0 },
    { key: 'nodeSampleCpu', label: '… server CPU per request (µs)', better: 'lower', digits: 0 },
    { key: 'nodeAll', label: 'Stevedore: HEAD by digest, a random repository of all N each time, Node client ×32 (req/s)', better: 'higher', digits: 0 },
    { key: 'nodeAllCpu', label: '… server CPU per request (µs)', better: 'lower', digits: 0 },
    { key: 'rssAfterHeads', label: 'Stevedore: RSS after the HEAD rows (MiB)', better: 'lower', digits: 0 },
    { key: 'catalogFirst', label: `Stevedore: \`GET /v2/_catalog?n=${PAGE}\`, first page (ms)`, better: 'lower', digits: 1 },
    { key: 'catalogMiddle', label: `Stevedore: \`_catalog?n=${PAGE}&last=\` the middle repository (ms)`, better: 'lower', digits: 1 },
    { key: 'rssAfterCatalog', label: 'Stevedore: RSS after the catalog pages (MiB)', better: 'lower', digits: 0 },
    { key: 'distStartupMs', label: 'Distribution 2.8 (plain `serve`, same tree): startup until `/v2/` answers (ms)', better: 'lower', digits: 0 },
    { key: 'distCatalogFirst', label: `Distribution: \`_catalog?n=${PAGE}\`, first page (ms)`, better: 'lower', digits: 1 },
    { key: 'distCatalogMiddle', label: `Distribution: \`_catalog?n=${PAGE}&last=\` the middle repository (ms)`, better: 'lower', digits: 1 },
  ]
}

/** @param {number} n */
const nTitle = n => `N = ${n.toLocaleString('en-US')}`

function markdown(rows, samples, trees, meta) {
  const sizes = meta.sizes
  const first = sizes[0]
  const last = sizes.at(-1)
  const growthTitle = sizes.length > 1 ? `${nTitle(last)} ÷ ${nTitle(first)}` : 'growth'
  const lines = [
    `| row | ${sizes.map(nTitle).join(' | ')} | ${growthTitle} |`,
    `|---|${sizes.map(() => '---:').join('|')}|---:|`,
  ]
  for (const row of rows) {
    const cells = sizes.map(n => cell(samples[n]?.[row.key], row.digits))
    const growth = sizes.length > 1 ? ratioText(row.better, samples[last]?.[row.key], samples[first]?.[row.key], nTitle(first)).text : '—'
    lines.push(`| ${row.label} ${row.better === 'lower' ? '↓' : '↑'} | ${cells.join(' | ')} | ${growth} |`)
  }
  for (const [key, dkey, label] of [
    ['catalogFirst', 'distCatalogFirst', 'catalog first page: Stevedore ÷ Distribution'],
    ['catalogMiddle', 'distCatalogMiddle', 'catalog `last=` middle page: Stevedore ÷ Distribution'],
  ]) {
    const cells = sizes.map(n => ratioText('lower', samples[n]?.[key], samples[n]?.[dkey], 'Distribution').text)
    lines.push(`| ${label} ↓ | ${cells.join(' | ')} | |`)
  }
  const gen = sizes
    .map(n => `${nTitle(n)}: ${trees[n].files.toLocaleString('en-US')} files and ${trees[n].dirs.toLocaleString('en-US')} directories written in ${trees[n].seconds.toFixed(1)} s`)
    .join('; ')
  return [
    `## Cost growth with the number of repositories: Stevedore, and Distribution's catalog (${meta.date})`,
    '',
    `Command: \`${meta.command}\`  `,
    `Median of ${meta.runs} run(s) per N, (min–max) when they differ; each catalog figure is the median of 3 sequential requests of that run. ` +
      `↓ lower is better, ↑ higher is better; the last column is the largest N's median ÷ the smallest N's (*better*/**worse** beyond ±5 %). ` +
      `Machine: ${meta.machine.cpus}× ${meta.machine.cpuModel}, Node ${meta.machine.node}, loopback, client and server sharing the cores; ` +
      `load average ${meta.machine.loadAverageAtStart.join(' ')} at start, ${meta.machine.loadAverageAtEnd.join(' ')} at end. ` +
      `Stevedore in proxy mode, its upstream down (nothing listens on its port): all of it is served from storage. ` +
      (meta.accessLog ? 'Both log each request to a file. ' : 'Access logs off (`--no-access-log`). ') +
      `Trees under \`${meta.tmpdir}\` (${gen}); one OCI manifest per repository (its own digest), one shared config and 1 KiB layer, tag \`latest\`.`,
    '',
    ...lines,
    '',
  ].join('\n')
}

async function main() {
  const p = options()
  const command = `node bench/growth.mjs ${process.argv.slice(2).join(' ')}`.trim()
  const log = msg => process.stderr.write(`bench: ${msg}\n`)
  requireCommands({ [DISTRIBUTION_BIN]: 'docker-registry', ab: 'apache2-utils' })
  if (START_LOAD[0] > 1) log(`load average ${START_LOAD.join(' ')}: something else is running; numbers will be low and noisy`)
  const build = snapshotStevedore()
  const host = { ...(await machine(START_LOAD)), stevedoreDist: treeHash(join(build, 'dist')) }
  // A port that was free a moment ago and that nothing here listens on: the upstream is down.
  const downUpstream = `http://127.0.0.1:${await freePort()}`
  // Node loads fetch's implementation on first use (tens of ms): not inside the first startup time.
  await fetch(downUpstream).catch(() => undefined)
  const rows = rowList(p)
  /** @type {Record<number, Record<string, number[]>>} */
  const samples = {}
  const trees = {}
  const raw = []
  for (const n of p.sizes) {
    const dir = tempDir(`growth-${n}`, p.tmpdir)
    try {
      log(`N = ${n}: writing the tree under ${dir}`)
      const tree = generateTree(join(dir, 'storage'), n)
      trees[n] = { files: tree.files, dirs: tree.dirs, seconds: tree.seconds }
      log(`N = ${n}: ${tree.files} files, ${tree.dirs} directories in ${tree.seconds.toFixed(1)} s`)
      samples[n] = {}
      for (let runIndex = 0; runIndex < p.runs; runIndex++) {
        const say = who => msg => log(`N = ${n}, run ${runIndex + 1}/${p.runs} ${who}: ${msg}`)
        const steps = [
          async () => {
            const ste = await startStevedore(downUpstream, build, { storage: tree.root, accessLog: p.accessLog, pollMs: 5 })
            try {
              return await measureStevedore(ste, tree, p, say('stevedore'))
            } finally {
              await ste.close()
            }
          },
          async () => {
            const dist = await startDistributionOn(tree.root, { accessLog: p.accessLog, pollMs: 5 })
            try {
              return await measureDistribution(dist, tree, say('distribution'))
            } finally {
              await dist.close()
            }
          },
        ]
        // Alternate which goes first, so neither always meets the tree right after the other.
        for (const step of runIndex % 2 === 0 ? steps : [...steps].reverse()) {
          const result = await step()
          for (const [key, value] of Object.entries(result.rows)) (samples[n][key] ??= []).push(value)
          raw.push({ n, run: runIndex + 1, ...result })
        }
      }
    } finally {
      log(`N = ${n}: removing the tree`)
      removeDir(dir)
    }
  }

  const meta = { date: new Date().toISOString(), command, runs: p.runs, sizes: p.sizes, tmpdir: p.tmpdir, accessLog: p.accessLog,
    machine: { ...host, loadAverageAtEnd: loadavg().map(v => Number(v.toFixed(2))) } }
  const md = markdown(rows, samples, trees, meta)
  const medians = Object.fromEntries(p.sizes.map(n => [n, Object.fromEntries(rows.map(r => [r.key, median(samples[n][r.key] ?? [])]))]))
  const record = { ...meta, params: { ...p, page: PAGE, sample: SAMPLE }, trees, rows, medians, samples, raw }
  const stamp = meta.date.replace(/[:.]/g, '-')
  const written = writeResults(join(REPO_ROOT, 'bench/results'), `${stamp}${p.quick ? '-quick' : ''}`, record, md, 'growth')
  process.stdout.write(`${md}\n`)
  log(`wrote ${written.md} and ${written.json}`)
}

main().catch(error => {
  process.stderr.write(`bench: failed: ${error instanceof Error ? error.stack : String(error)}\n`)
  cleanupNow()
  process.exit(1)
})
