#!/usr/bin/env node
/**
 * Lifecycle costs on a large storage: the time and peak memory of
 * `stevedore gc --dry-run` beside Distribution's `garbage-collect --dry-run`
 * on the same tree, and a row for quota eviction (filled in by the eviction
 * work; "not measured" until then).
 *
 *   npm run bench:lifecycle                       # 1,000 repositories: 100,000 blobs, 10,000 manifests; 3 runs
 *   node bench/lifecycle.mjs --repos 100 --runs 1 # 10,000 blobs
 *   node bench/lifecycle.mjs --tmpdir /dev/shm    # the tree on tmpfs (faster to write and remove, held in RAM)
 *
 * The tree (Distribution's layout, written with plain synchronous fs calls):
 * per repository `gc/repo<i>`, 10 OCI manifests, all linked revisions, the tag
 * `latest` on the last (its index lists all 10, as a tag moved 10 times);
 * each manifest references its own config, the repository's base layer and
 * 7 layers of its own, all linked in `_layers`; and 9 blobs nothing references
 * (what a refreshed tag leaves once its old manifests are gone), written
 * 2 hours in the past so that both collectors list them (Stevedore's grace
 * period is 1 hour). 100 blobs and 10 manifests per repository.
 *
 * Each run measures both commands on the warm tree (order alternating), with
 * `/usr/bin/time -f '%e %M'` (wall seconds, peak RSS), or by polling
 * /proc/<pid>/status VmHWM where GNU time is not installed. Both must list
 * the same unreferenced blobs. Results: a Markdown table on stdout and in
 * bench/results/lifecycle-<time>.md, every sample in the .json beside it.
 */
import { existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { spawn } from 'node:child_process'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as delay } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { stringify } from 'yaml'
import { OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST } from './lib/image.mjs'
import { machine, treeHash } from './lib/machine.mjs'
import { cleanupNow, removeDir, requireCommands, run, tempDir, which } from './lib/procs.mjs'
import { DISTRIBUTION_BIN, REPO_ROOT, snapshotStevedore } from './lib/registries.mjs'
import { cell, median, ratioText, writeResults } from './lib/report.mjs'

const START_LOAD = loadavg().map(v => Number(v.toFixed(2)))
const MANIFESTS_PER_REPO = 10
const LAYERS_PER_MANIFEST = 7
const ORPHANS_PER_REPO = 9
const HOUR = 3_600_000

function options() {
  const { values } = parseArgs({
    options: {
      repos: { type: 'string' },
      runs: { type: 'string' },
      tmpdir: { type: 'string' },
      quick: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help) {
    process.stdout.write('usage: node bench/lifecycle.mjs [--repos 1000] [--runs 3] [--tmpdir DIR] [--quick]\n')
    process.exit(0)
  }
  const positive = (raw, fallback) => {
    const n = raw === undefined ? fallback : Number(String(raw).replace(/_/g, ''))
    if (!Number.isInteger(n) || n <= 0) throw new Error(`not a positive integer: ${raw}`)
    return n
  }
  return {
    quick: values.quick,
    repos: positive(values.repos, values.quick ? 100 : 1000),
    runs: positive(values.runs, values.quick ? 1 : 3),
    tmpdir: values.tmpdir ?? tmpdir(),
  }
}

const sha = bytes => `sha256:${createHash('sha256').update(bytes).digest('hex')}`
const repoName = i => `gc/repo${String(i).padStart(5, '0')}`

/** Writes the tree under `root`; returns its counts and the digests nothing references. */
function generateTree(root, repos) {
  const started = performance.now()
  const v2 = join(root, 'docker/registry/v2')
  let files = 0
  const write = (path, data) => {
    mkdirSync(join(path, '..'), { recursive: true })
    writeFileSync(path, data)
    files++
  }
  const blobPath = digest => join(v2, 'blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data')
  const blob = data => {
    const bytes = Buffer.from(data)
    const digest = sha(bytes)
    write(blobPath(digest), bytes)
    return { digest, size: bytes.length }
  }
  const link = (path, digest) => write(join(path, digest.slice(7), 'link'), digest)
  const orphans = []
  let blobs = 0
  let manifests = 0
  const past = new Date(Date.now() - 2 * HOUR)
  for (let i = 0; i < repos; i++) {
    const name = repoName(i)
    const repo = join(v2, 'repositories', name)
    const base = blob(`base layer of ${name}`)
    const linked = [base.digest]
    let last = ''
    for (let j = 0; j < MANIFESTS_PER_REPO; j++) {
      const config = blob(JSON.stringify({ architecture: 'amd64', os: 'linux', repository: name, image: j }))
      const layers = [base]
      for (let k = 0; k < LAYERS_PER_MANIFEST; k++) layers.push(blob(`layer ${k} of image ${j} of ${name}`))
      const manifest = blob(JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: OCI_CONFIG, ...config },
        layers: layers.map(l => ({ mediaType: OCI_LAYER_TAR, ...l })),
      }))
      linked.push(config.digest, ...layers.slice(1).map(l => l.digest))
      link(join(repo, '_manifests/revisions/sha256'), manifest.digest)
      link(join(repo, '_manifests/tags/latest/index/sha256'), manifest.digest)
      last = manifest.digest
      blobs += 2 + LAYERS_PER_MANIFEST
      manifests++
    }
    write(join(repo, '_manifests/tags/latest/current/link'), last)
    for (const digest of linked) link(join(repo, '_layers/sha256'), digest)
    blobs++
    for (let k = 0; k < ORPHANS_PER_REPO; k++) {
      const orphan = blob(`unreferenced ${k} of ${name}`)
      utimesSync(blobPath(orphan.digest), past, past)
      orphans.push(orphan.digest)
      blobs++
    }
  }
  return { root, repos, blobs, manifests, files, orphans: orphans.sort(), seconds: (performance.now() - started) / 1000 }
}

/** Peak RSS of a child by polling VmHWM (the kernel's own peak), for machines without GNU time. */
function measureByPolling(command, args) {
  return new Promise((resolve, reject) => {
    const started = performance.now()
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let peakKiB = 0
    child.stdout.setEncoding('utf8').on('data', c => (stdout += c))
    child.stderr.setEncoding('utf8').on('data', c => (stderr = (stderr + c).slice(-64 * 1024)))
    const poll = setInterval(() => {
      try {
        const kib = Number(/^VmHWM:\s+(\d+)/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0)
        peakKiB = Math.max(peakKiB, kib)
      } catch {
        // exited
      }
    }, 10)
    child.once('error', reject)
    child.once('close', code => {
      clearInterval(poll)
      if (code !== 0) reject(new Error(`${command} ${args.join(' ')} exited with ${code}: ${stderr}`))
      else resolve({ stdout, seconds: (performance.now() - started) / 1000, rssMiB: peakKiB / 1024 })
    })
  })
}

/** Runs a command to completion: wall time, peak RSS (MiB), its stdout. */
async function measure(command, args, dir) {
  const time = which('/usr/bin/time')
  if (time === undefined) return measureByPolling(command, args)
  const out = join(dir, `time-${Date.now()}.txt`)
  const { stdout } = await run(time, ['-f', '%e %M', '-o', out, command, ...args], { timeoutMs: 1_800_000 })
  const [seconds, kib] = readFileSync(out, 'utf8').trim().split('\n').at(-1).split(' ').map(Number)
  return { stdout, seconds, rssMiB: kib / 1024 }
}

const eligibleOf = stdout => [...stdout.matchAll(/^blob eligible for deletion: (\S+)$/gm)].map(m => m[1]).sort()

/**
 * The eviction row's slot: the quota work measures an eviction pass on the
 * same tree here (time and peak RSS, in `{seconds, rssMiB}`). Until then, or
 * when its module is not in the build, the row reads "not measured".
 * @param {string} build @returns {Promise<{seconds: number, rssMiB: number} | string>} the figures, or why not
 */
async function measureEviction(build, root, dir) {
  if (!existsSync(join(build, 'dist/lifecycle/quota.js'))) return 'the eviction module is absent'
  // One pass down to 90 % of the tree, in a process of its own (for its peak RSS): the startup walk that
  // counts the cache is timed apart, as a memory metadata store needs it and a persistent one does not.
  const script = join(build, 'evict-bench.mjs')
  writeFileSync(script, [
    "import { pino } from 'pino'",
    "import { openQuotaKeeper } from './dist/lifecycle/quota.js'",
    'const { keeper, start, close } = await openQuotaKeeper(process.argv[2], { maxSize: 1, lowWater: 1, pin: [], lease: { settleMs: 0 } }, pino({ level: "warn" }))',
    'const report = await keeper.evict(Math.floor(keeper.total * 0.9))',
    'await close()',
    'process.stdout.write(JSON.stringify({ walkMs: start.durationMs, passMs: report.durationMs, imagesEvicted: report.imagesEvicted, blobsDeleted: report.blobsDeleted, bytesFreed: report.bytesFreed }) + "\\n")',
  ].join('\n'))
  const result = await measure(process.execPath, [script, root], dir)
  const report = JSON.parse(result.stdout.trim().split('\n').at(-1))
  return { seconds: result.seconds, rssMiB: result.rssMiB, ...report }
}

async function main() {
  const p = options()
  const command = `node bench/lifecycle.mjs ${process.argv.slice(2).join(' ')}`.trim()
  const log = msg => process.stderr.write(`bench: ${msg}\n`)
  requireCommands({ [DISTRIBUTION_BIN]: 'docker-registry' })
  if (which('/usr/bin/time') === undefined) log('GNU time is not installed (apt-get install -y time): peak RSS is polled from /proc/<pid>/status VmHWM instead')
  if (START_LOAD[0] > 1) log(`load average ${START_LOAD.join(' ')}: something else is running; numbers will be noisy`)
  const build = snapshotStevedore()
  const host = { ...(await machine(START_LOAD)), stevedoreDist: treeHash(join(build, 'dist')) }
  const dir = tempDir('lifecycle', p.tmpdir)
  const samples = {}
  const raw = []
  let tree
  let eviction
  try {
    log(`writing ${p.repos} repositories under ${dir}`)
    tree = generateTree(join(dir, 'storage'), p.repos)
    log(`${tree.blobs} blobs, ${tree.manifests} manifests, ${tree.files} files in ${tree.seconds.toFixed(1)} s`)
    const ours = join(dir, 'stevedore.yml')
    const theirs = join(dir, 'distribution.yml')
    writeFileSync(ours, stringify({ version: '0.1', log: { level: 'warn' }, storage: { filesystem: { rootdirectory: tree.root } } }))
    writeFileSync(theirs, stringify({ version: '0.1', log: { level: 'warn' }, storage: { filesystem: { rootdirectory: tree.root } }, http: { addr: '127.0.0.1:0' } }))
    const steps = {
      stevedore: () => measure(process.execPath, [join(build, 'bin/stevedore'), 'gc', '--dry-run', ours], dir),
      distribution: () => measure(DISTRIBUTION_BIN, ['garbage-collect', '--dry-run', theirs], dir),
    }
    for (let runIndex = 0; runIndex < p.runs; runIndex++) {
      const order = runIndex % 2 === 0 ? ['stevedore', 'distribution'] : ['distribution', 'stevedore']
      for (const who of order) {
        const result = await steps[who]()
        const eligible = eligibleOf(result.stdout)
        const same = eligible.length === tree.orphans.length && eligible.every((d, i) => d === tree.orphans[i])
        if (!same) throw new Error(`${who} listed ${eligible.length} blobs eligible for deletion, not the ${tree.orphans.length} unreferenced ones`)
        for (const [key, value] of [['seconds', result.seconds], ['rssMiB', result.rssMiB], ['lines', result.stdout.split('\n').length - 1]]) {
          ;((samples[who] ??= {})[key] ??= []).push(value)
        }
        raw.push({ run: runIndex + 1, who, seconds: result.seconds, rssMiB: result.rssMiB, eligible: eligible.length })
        log(`run ${runIndex + 1}/${p.runs} ${who}: ${result.seconds.toFixed(2)} s, peak RSS ${result.rssMiB.toFixed(0)} MiB, ${eligible.length} eligible (the unreferenced ones)`)
        await delay(200)
      }
    }
    // Last: the pass deletes from the tree the gc rows measured.
    eviction = await measureEviction(build, tree.root, dir)
  } finally {
    log('removing the tree')
    removeDir(dir)
  }

  const rows = [
    ['seconds', 'wall time (s)', 'lower', 2],
    ['rssMiB', 'peak RSS (MiB)', 'lower', 0],
    ['lines', 'lines printed', 'lower', 0],
  ]
  const date = new Date().toISOString()
  const lines = [
    `## Lifecycle on ${tree.blobs.toLocaleString('en-US')} blobs / ${tree.manifests.toLocaleString('en-US')} manifests (${date})`,
    '',
    `Command: \`${command}\`  `,
    `Median of ${p.runs} run(s), (min–max) when they differ; ↓ lower is better. ${tree.repos.toLocaleString('en-US')} repositories, ` +
      `${tree.orphans.length.toLocaleString('en-US')} unreferenced blobs (both list exactly those); ${tree.files.toLocaleString('en-US')} files written in ${tree.seconds.toFixed(1)} s under \`${p.tmpdir}\`, ` +
      `warm page cache. Machine: ${host.cpus}× ${host.cpuModel}, Node ${host.node}, ${host.distribution}; load average ${START_LOAD.join(' ')} at start.`,
    '',
    '| row | Stevedore `gc --dry-run` | Distribution `garbage-collect --dry-run` | Stevedore ÷ Distribution |',
    '|---|---:|---:|---:|',
    ...rows.map(([key, label, better, digits]) =>
      `| ${label} ↓ | ${cell(samples.stevedore?.[key], digits)} | ${cell(samples.distribution?.[key], digits)} | ${ratioText(better, samples.stevedore?.[key], samples.distribution?.[key], 'Distribution').text} |`),
    typeof eviction === 'string'
      ? `| eviction: not measured (${eviction}) | — | — | — |`
      : `| eviction to 90 %: wall time (s) / peak RSS (MiB) ↓ — startup count ${(eviction.walkMs / 1000).toFixed(2)} s, pass ${(eviction.passMs / 1000).toFixed(2)} s, ${eviction.imagesEvicted} images, ${eviction.blobsDeleted} blobs | ${eviction.seconds.toFixed(2)} / ${eviction.rssMiB.toFixed(0)} | — (no eviction) | — |`,
    '',
  ]
  const md = lines.join('\n')
  const record = {
    date, command, params: p, machine: { ...host, loadAverageAtEnd: loadavg().map(v => Number(v.toFixed(2))) },
    tree: { repos: tree.repos, blobs: tree.blobs, manifests: tree.manifests, files: tree.files, unreferenced: tree.orphans.length, seconds: tree.seconds },
    medians: Object.fromEntries(Object.entries(samples).map(([who, s]) => [who, Object.fromEntries(Object.entries(s).map(([k, v]) => [k, median(v)]))])),
    samples, raw, eviction,
  }
  const written = writeResults(join(REPO_ROOT, 'bench/results'), `${date.replace(/[:.]/g, '-')}${p.quick ? '-quick' : ''}`, record, md, 'lifecycle')
  process.stdout.write(`${md}\n`)
  log(`wrote ${written.md} and ${written.json}`)
}

main().catch(error => {
  process.stderr.write(`bench: failed: ${error instanceof Error ? error.stack : String(error)}\n`)
  cleanupNow()
  process.exit(1)
})
