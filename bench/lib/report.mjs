/**
 * Rows, medians, ratios and checks; the Markdown table and the JSON record.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export const TARGETS = /** @type {const} */ (['direct', 'distribution', 'nginx', 'stevedore', 'workers'])
/** @param {string} t @param {number} workers */
const title = (t, workers) =>
  ({ direct: 'upstream, direct', distribution: 'Distribution 2.8 proxy', nginx: 'nginx proxy_cache mirror', stevedore: 'Stevedore', workers: `Stevedore, ${workers} workers` })[t]
/** The ratio columns: numerator ÷ anchor. */
const RATIOS = /** @type {const} */ ([['stevedore', 'distribution'], ['stevedore', 'nginx'], ['workers', 'nginx']])
const ANCHOR_SHORT = { distribution: 'Distribution', nginx: 'nginx' }

/**
 * @typedef {{key: string, label: string, better: 'lower'|'higher', digits: number, upstreamCount?: boolean}} Row
 * @typedef {Record<string, Record<string, number[]>>} Samples target → row key → one value per run
 */

/** @param {{layers: number, sizeMiB: number, blobMiB: number, herdMiB: number, herdClients: number, rssClients: number, abSeconds: number}} p @returns {Row[]} */
export function rows(p) {
  return [
    { key: 'coldPull', label: `cold pull, ${p.sizeMiB} MiB in ${p.layers} layers, skopeo (s)`, better: 'lower', digits: 2 },
    { key: 'coldCpu', label: 'cold pull: CPU of the server process (s)', better: 'lower', digits: 2 },
    { key: 'coldBlobGets', label: 'cold pull: blob GETs the upstream served', better: 'lower', digits: 0, upstreamCount: true },
    { key: 'coldUpstreamMiB', label: 'cold pull: MiB the upstream served', better: 'lower', digits: 0, upstreamCount: true },
    { key: 'warmPull', label: 'warm pull, same image (s)', better: 'lower', digits: 2 },
    { key: 'blobMBps', label: `warm ${p.blobMiB} MiB blob GET, curl (MB/s)`, better: 'higher', digits: 0 },
    { key: 'blobCpu', label: 'warm blob GETs: server CPU per GiB sent (s)', better: 'lower', digits: 2 },
    { key: 'headDigest', label: `warm manifest HEAD by digest, ab -i -k -c32 -t${p.abSeconds} (req/s)`, better: 'higher', digits: 0 },
    { key: 'headDigestCpu', label: 'HEAD by digest: server CPU per request (µs)', better: 'lower', digits: 0 },
    { key: 'headTag', label: 'warm manifest HEAD by tag (req/s)', better: 'higher', digits: 0 },
    { key: 'headTagCpu', label: 'HEAD by tag: server CPU per request (µs)', better: 'lower', digits: 0 },
    { key: 'headTagUpstream', label: 'HEAD by tag: manifest requests sent upstream', better: 'lower', digits: 0, upstreamCount: true },
    { key: 'getDigest', label: `warm manifest GET by digest, wrk -t2 -c32 -d${p.abSeconds}s (req/s)`, better: 'higher', digits: 0 },
    { key: 'getDigestCpu', label: 'GET by digest: server CPU per request (µs)', better: 'lower', digits: 0 },
    { key: 'getTag', label: 'warm manifest GET by tag (req/s)', better: 'higher', digits: 0 },
    { key: 'getTagCpu', label: 'GET by tag: server CPU per request (µs)', better: 'lower', digits: 0 },
    { key: 'getTagUpstream', label: 'GET by tag: manifest requests sent upstream', better: 'lower', digits: 0, upstreamCount: true },
    { key: 'herdSeconds', label: `${p.herdClients} concurrent cold GETs of one ${p.herdMiB} MiB blob (s)`, better: 'lower', digits: 2 },
    { key: 'herdFetches', label: `${p.herdClients} cold GETs: times the upstream served that blob`, better: 'lower', digits: 0, upstreamCount: true },
    { key: 'idleRss', label: 'RSS before that, after the rows above (MiB)', better: 'lower', digits: 0 },
    { key: 'peakRss', label: `peak RSS, ${p.rssClients} clients × ${p.blobMiB} MiB blob at 20 MB/s (MiB)`, better: 'lower', digits: 0 },
  ]
}

/** @param {number[]} values */
export function median(values) {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b)
  if (sorted.length === 0) return NaN
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** @param {number} value @param {number} digits */
export function fmt(value, digits) {
  if (!Number.isFinite(value)) return '—'
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** `median (min–max)`, the range only when the runs differ. @param {number[] | undefined} values @param {number} digits */
export function cell(values, digits) {
  if (values === undefined || values.length === 0) return '—'
  const lo = Math.min(...values)
  const hi = Math.max(...values)
  const spread = values.length > 1 && lo !== hi ? ` (${fmt(lo, digits)}–${fmt(hi, digits)})` : ''
  return `${fmt(median(values), digits)}${spread}`
}

/**
 * a / b of the medians, with a word for which way is better (beyond ±5 %).
 * @param {'lower'|'higher'} better @param {number[] | undefined} a @param {number[] | undefined} b @param {string} bName
 */
export function ratioText(better, a, b, bName) {
  const x = median(a ?? [])
  const y = median(b ?? [])
  if (!Number.isFinite(x) || !Number.isFinite(y)) return { text: '—', value: NaN }
  if (y === 0) return { text: x === 0 ? '= (both 0)' : `${bName} 0`, value: NaN }
  const value = x / y
  const good = better === 'lower' ? value < 0.95 : value > 1.05
  const bad = better === 'lower' ? value > 1.05 : value < 0.95
  return { text: `${value.toFixed(2)}×${good ? ' better' : bad ? ' **worse**' : ''}`, value }
}

/** `of` ÷ `anchor` for one row. @param {Row} row @param {Samples} s @param {'stevedore'|'workers'} of @param {'distribution'|'nginx'} anchor */
function ratio(row, s, of, anchor) {
  return ratioText(row.better, s[of]?.[row.key], s[anchor]?.[row.key], ANCHOR_SHORT[anchor])
}

/**
 * Pass/fail against the targets in FIELD-NOTES.md, over every run (not only
 * the median). With the nginx mirror measured in the same run, the HEAD
 * targets are its figures of this run; without, FIELD-NOTES' figures.
 */
export function checks(s, p, nginxMBps = []) {
  const all = key => s.stevedore?.[key] ?? []
  const max = key => Math.max(...all(key))
  const dist = key => median(s.distribution?.[key] ?? [])
  const mirror = key => median(s.nginx?.[key] ?? [])
  const withMirror = (s.nginx?.headDigest ?? []).length > 0
  const list = [
    [`each blob crosses the upstream once on a cold pull (${p.layers + 1} blob GETs)`, max('coldBlobGets') <= p.layers + 1],
    [`a cold pull moves the image once (≤ ${Math.ceil(p.imageMiB)} MiB from upstream)`, max('coldUpstreamMiB') <= p.imageMiB + 0.5],
    [`${p.herdClients} concurrent cold GETs → the upstream serves the blob once`, max('herdFetches') <= 1],
    ['warm HEAD by tag within tagttl asks the upstream nothing', max('headTagUpstream') === 0],
    ['warm GET by tag within tagttl asks the upstream nothing', max('getTagUpstream') === 0],
    ['warm HEAD by digest ≥ Distribution proxy', median(all('headDigest')) >= dist('headDigest')],
    ['warm HEAD by tag ≥ Distribution proxy', median(all('headTag')) >= dist('headTag')],
    ['warm GET by digest ≥ Distribution proxy', median(all('getDigest')) >= dist('getDigest')],
    ['warm GET by tag ≥ Distribution proxy', median(all('getTag')) >= dist('getTag')],
  ]
  if (withMirror) {
    list.push(
      ['warm HEAD by digest ≥ the nginx mirror (same run)', median(all('headDigest')) >= mirror('headDigest')],
      ['warm HEAD by tag ≥ the nginx mirror (same run)', median(all('headTag')) >= mirror('headTag')],
      ['warm GET by digest ≥ the nginx mirror (same run)', median(all('getDigest')) >= mirror('getDigest')],
      ['warm GET by tag ≥ the nginx mirror (same run)', median(all('getTag')) >= mirror('getTag')],
      ['cold pull no slower than the nginx mirror (+15 %, same run)', median(all('coldPull')) <= mirror('coldPull') * 1.15],
    )
  } else {
    list.push(
      ['warm HEAD by digest ≥ 45,000 req/s (nginx mirror anchor, FIELD-NOTES; nginx not installed here)', median(all('headDigest')) >= 45_000],
      ['warm HEAD by tag ≥ 50,000 req/s (nginx mirror anchor, FIELD-NOTES; nginx not installed here)', median(all('headTag')) >= 50_000],
    )
  }
  list.push(
    ['cold pull no slower than Distribution proxy (+15 %)', median(all('coldPull')) <= dist('coldPull') * 1.15],
    ['warm blob GET within 15 % of Distribution proxy', median(all('blobMBps')) >= dist('blobMBps') * 0.85],
    ['peak RSS under Distribution proxy', median(all('peakRss')) <= dist('peakRss')],
  )
  if (nginxMBps.length > 0) {
    list.push(['warm blob GET ≥ 90 % of nginx serving the same size of file (sendfile), same curl', median(all('blobMBps')) >= median(nginxMBps) * 0.9])
  }
  const workers = key => median(s.workers?.[key] ?? [])
  if (withMirror && (s.workers?.headDigest ?? []).length > 0) {
    for (const [key, what] of [['headDigest', 'HEAD by digest'], ['headTag', 'HEAD by tag'], ['getDigest', 'GET by digest'], ['getTag', 'GET by tag']]) {
      list.push([`with http.workers: warm ${what} ≥ 0.8× the nginx mirror (same run)`, workers(key) >= 0.8 * mirror(key)])
    }
    list.push(['with http.workers: each blob crosses the upstream once on a cold pull', Math.max(...(s.workers?.coldBlobGets ?? [Infinity])) <= p.layers + 1])
  }
  return list.map(([what, ok]) => ({ what: String(what), ok: Boolean(ok) }))
}

/** median(part) as a percentage of median(whole). @param {number[] | undefined} part @param {number[] | undefined} whole */
const pct = (part, whole) => `${((100 * median(part ?? [])) / median(whole ?? [])).toFixed(0)} %`

/**
 * @param {Row[]} rowList @param {Samples} s
 * @param {{checks: {what: string, ok: boolean}[], nginxMissing?: boolean, accessLog: boolean, nginxWorkers: string, [k: string]: any}} meta
 */
export function markdown(rowList, s, meta) {
  const missing = t => (t === 'nginx' && meta.nginxMissing) || (t === 'workers' && !(meta.workers > 1))
  const shown = TARGETS.filter(t => t !== 'workers' || meta.workers > 1)
  const ratios = RATIOS.filter(([of]) => shown.includes(of))
  const lines = [
    `| row | ${shown.map(t => title(t, meta.workers)).join(' | ')} | ${ratios.map(([of, a]) => `${title(of, meta.workers)} / ${ANCHOR_SHORT[a]}`).join(' | ')} |`,
    `|---|${shown.map(() => '---:').join('|')}|${ratios.map(() => '---').join('|')}|`,
  ]
  for (const row of rowList) {
    const cells = shown.map(t => (missing(t) ? 'not installed' : cell(s[t]?.[row.key], row.digits)))
    const ratioCells = ratios.map(([of, a]) => (missing(a) ? '—' : ratio(row, s, of, a).text))
    lines.push(`| ${row.label} ${row.better === 'lower' ? '↓' : '↑'} | ${cells.join(' | ')} | ${ratioCells.join(' | ')} |`)
  }
  const checkLines = meta.checks.map(c => `- ${c.ok ? 'PASS' : '**FAIL**'}: ${c.what}`)
  return [
    `## Stevedore vs Distribution 2.8 proxy vs the nginx proxy_cache mirror vs the upstream direct (${meta.date})`,
    '',
    `Command: \`${meta.command}\`  `,
    `Median of ${meta.runs} run(s), (min–max) when they differ; ↓ lower is better, ↑ higher is better; ratios are of the medians, ` +
      `*better*/**worse** beyond ±5 %. ` +
      `Machine: ${meta.machine.cpus}× ${meta.machine.cpuModel}, Node ${meta.machine.node}, loopback, all processes sharing the cores; ` +
      `load average ${meta.machine.loadAverageAtStart.join(' ')} at start, ${meta.machine.loadAverageAtEnd.join(' ')} at end. ` +
      (meta.accessLog
        ? 'Every proxy logs each request to a file (Distribution and Stevedore their stdout, nginx `access_log`).'
        : 'Access logs off for every proxy (`--no-access-log`).') +
      (meta.nginxMissing
        ? ` nginx: not installed (\`${meta.nginxInstall}\`), every nginx cell says "not installed".`
        : ` nginx mirror: ${meta.machine.nginx}, \`worker_processes ${meta.nginxWorkers}\`; its CPU and RSS are summed over master and workers.`),
    `Calibration in the same run: a bare node:http server answering HEAD from memory, same ab: ${meta.calibration} ` +
      `(FIELD-NOTES: ~56,700 req/s on a quiet machine); Stevedore's warm HEAD by digest is ` +
      `${pct(s.stevedore?.headDigest, meta.bareHead)} of it, by tag ${pct(s.stevedore?.headTag, meta.bareHead)}. ` +
      (meta.nginxMBps?.length
        ? `nginx-light serving a file of the warm blob's size with sendfile, same curl: ${Math.round(median(meta.nginxMBps)).toLocaleString('en-US')} MB/s; ` +
          `Stevedore's warm blob GET is ${pct(s.stevedore?.blobMBps, meta.nginxMBps)} of it.`
        : 'nginx was not installed: no static-file calibration.'),
    '',
    ...lines,
    '',
    'Checks (Stevedore, against FIELD-NOTES targets):',
    '',
    ...checkLines,
    '',
  ].join('\n')
}

/**
 * Writes `<prefix>-<stamp>.json` and `.md` into `dir`; returns their paths.
 * @param {string} dir @param {string} stamp @param {object} record @param {string} md @param {string} [prefix]
 */
export function writeResults(dir, stamp, record, md, prefix = 'pull') {
  mkdirSync(dir, { recursive: true })
  const json = join(dir, `${prefix}-${stamp}.json`)
  const mdPath = join(dir, `${prefix}-${stamp}.md`)
  writeFileSync(json, `${JSON.stringify(record, null, 2)}\n`)
  writeFileSync(mdPath, md)
  return { json, md: mdPath }
}
