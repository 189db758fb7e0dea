#!/usr/bin/env node
/**
 * What the operations features cost on the warm path: manifest HEAD by
 * digest (ab -i -k -c32, the pull benchmark's client) against two
 * Stevedores of the same build in front of one upstream, one with the
 * defaults (metrics on, status page on) and one with `metrics.enabled` and
 * `ui.enabled` false; both with their access log, as the pull benchmark
 * runs them. Each round starts both afresh, in alternating order, and
 * measures them in that order; medians and the ratio.
 *
 *   npm run bench:operations            # 5 rounds of 10 s
 *   node bench/operations.mjs --quick   # 2 rounds of 5 s
 */
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { abHead } from './lib/clients.mjs'
import { pushImage } from './lib/image.mjs'
import { machine } from './lib/machine.mjs'
import { requireCommands } from './lib/procs.mjs'
import { REPO_ROOT, snapshotStevedore, startStevedore, startUpstream } from './lib/registries.mjs'
import { cell, median, writeResults } from './lib/report.mjs'

const { values } = parseArgs({ options: { rounds: { type: 'string' }, seconds: { type: 'string' }, quick: { type: 'boolean', default: false } } })
// Even: each target is measured first in half the rounds (the second ab run of a round is the slower here).
const rounds = 2 * Math.ceil(Number(values.rounds ?? (values.quick ? 2 : 6)) / 2)
const seconds = Number(values.seconds ?? (values.quick ? 5 : 10))
const log = msg => process.stderr.write(`bench: ${msg}\n`)

async function main() {
  requireCommands({ ab: 'apache2-utils', 'docker-registry': 'docker-registry' })
  const startLoad = loadavg().map(v => Number(v.toFixed(2)))
  const build = snapshotStevedore()
  const upstream = await startUpstream()
  const image = await pushImage(upstream.url, 'bench/ops', 'v1', { seed: 'operations', layerMiB: [1] })
  const configs = {
    on: { accessLog: true },
    off: { accessLog: true, extra: { metrics: { enabled: false }, ui: { enabled: false } } },
  }
  const samples = { on: [], off: [] }
  const url = target => `${target.url}/v2/bench/ops/manifests/${image.manifest.digest}`
  try {
    // Fresh processes every round, started in alternating order: two identical Stevedores measured
    // here differed by up to 25 % depending on which was started second, whatever their config.
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? ['on', 'off'] : ['off', 'on']
      const targets = {}
      for (const who of order) targets[who] = await startStevedore(upstream.url, build, configs[who])
      try {
        for (const who of order) {
          const res = await fetch(url(targets[who]), { headers: { Accept: image.manifest.mediaType } })
          if (res.status !== 200) throw new Error(`warming ${who}: ${res.status}`)
          await res.arrayBuffer()
          const scrape = await fetch(`${targets[who].url}/metrics`)
          await scrape.arrayBuffer()
          if ((scrape.status === 200) !== (who === 'on')) throw new Error(`/metrics answered ${scrape.status} with metrics ${who}`)
        }
        for (const who of order) {
          const { rps, failed } = await abHead(url(targets[who]), seconds)
          if (failed > 0) throw new Error(`${who}: ${failed} failed requests`)
          samples[who].push(rps)
          log(`round ${round + 1}/${rounds} metrics ${who}: ${rps.toFixed(0)} req/s`)
        }
      } finally {
        await Promise.all(Object.values(targets).map(t => t.close()))
      }
    }
  } finally {
    await upstream.close()
  }
  const on = median(samples.on)
  const off = median(samples.off)
  // The geometric mean of the per-round ratios: rounds alternate which target goes first, so the
  // position effect (the second run of a round measured up to 25 % slower, identical targets or not) cancels.
  const ratios = samples.on.map((v, i) => v / samples.off[i])
  const balanced = Math.exp(ratios.reduce((sum, r) => sum + Math.log(r), 0) / ratios.length)
  const change = (balanced - 1) * 100
  const host = await machine(startLoad)
  const date = new Date().toISOString()
  const md = [
    `## Warm HEAD with and without metrics (${date})`,
    '',
    `Command: \`node bench/operations.mjs ${process.argv.slice(2).join(' ')}\`. Median of ${rounds} rounds of \`ab -i -k -c32 -t${seconds}\`, manifest HEAD by digest, access log on for both; ` +
      `machine ${host.cpus}× ${host.cpuModel}, Node ${host.node}; load average ${startLoad.join(' ')} at start.`,
    '',
    '| row | metrics + status page on (default) | metrics and status page off | on ÷ off (per-round, position-balanced) |',
    '|---|---:|---:|---:|',
    `| warm HEAD by digest (req/s) ↑ | ${cell(samples.on, 0)} | ${cell(samples.off, 0)} | ${balanced.toFixed(3)} (${change >= 0 ? '+' : ''}${change.toFixed(1)} %) |`,
    '',
  ].join('\n')
  const written = writeResults(join(REPO_ROOT, 'bench/results'), date.replace(/[:.]/g, '-'), { date, rounds, seconds, samples, ratios, balanced, machine: host }, md, 'operations')
  process.stdout.write(`${md}\n`)
  log(`wrote ${written.md}`)
}

main().catch(error => {
  process.stderr.write(`bench: failed: ${error instanceof Error ? error.stack : String(error)}\n`)
  process.exit(1)
})
