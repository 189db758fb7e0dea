/**
 * Rows, medians, ratios and checks; the Markdown table and the JSON record.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export const TARGETS = /** @type {const} */ (['direct', 'distribution', 'stevedore'])
export const TARGET_TITLES = { direct: 'upstream, direct', distribution: 'Distribution 2.8 proxy', stevedore: 'Stevedore' }

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
    { key: 'headDigest', label: `warm manifest HEAD by digest, ab -c32 -t${p.abSeconds} (req/s)`, better: 'higher', digits: 0 },
    { key: 'headDigestCpu', label: 'HEAD by digest: server CPU per request (µs)', better: 'lower', digits: 0 },
    { key: 'headTag', label: 'warm manifest HEAD by tag (req/s)', better: 'higher', digits: 0 },
    { key: 'headTagCpu', label: 'HEAD by tag: server CPU per request (µs)', better: 'lower', digits: 0 },
    { key: 'headTagUpstream', label: 'HEAD by tag: manifest requests sent upstream', better: 'lower', digits: 0, upstreamCount: true },
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
function fmt(value, digits) {
  if (!Number.isFinite(value)) return '—'
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** @param {number[] | undefined} values @param {number} digits */
function cell(values, digits) {
  if (values === undefined || values.length === 0) return '—'
  const lo = Math.min(...values)
  const hi = Math.max(...values)
  const spread = values.length > 1 && lo !== hi ? ` (${fmt(lo, digits)}–${fmt(hi, digits)})` : ''
  return `${fmt(median(values), digits)}${spread}`
}

/** Stevedore / Distribution of the medians, with a word for which way is better. @param {Row} row @param {Samples} s */
function ratio(row, s) {
  const ste = median(s.stevedore?.[row.key] ?? [])
  const dist = median(s.distribution?.[row.key] ?? [])
  if (!Number.isFinite(ste) || !Number.isFinite(dist)) return { text: '—', value: NaN }
  if (dist === 0) return { text: ste === 0 ? '= (both 0)' : 'Distribution 0', value: NaN }
  const value = ste / dist
  const better = row.better === 'lower' ? value < 0.95 : value > 1.05
  const worse = row.better === 'lower' ? value > 1.05 : value < 0.95
  return { text: `${value.toFixed(2)}×${better ? ' better' : worse ? ' **worse**' : ''}`, value }
}

/** Pass/fail against the targets in FIELD-NOTES.md, over every run (not only the median). */
export function checks(s, p, nginxMBps = []) {
  const all = key => s.stevedore?.[key] ?? []
  const max = key => Math.max(...all(key))
  const dist = key => median(s.distribution?.[key] ?? [])
  const list = [
    [`each blob crosses the upstream once on a cold pull (${p.layers + 1} blob GETs)`, max('coldBlobGets') <= p.layers + 1],
    [`a cold pull moves the image once (≤ ${Math.ceil(p.imageMiB)} MiB from upstream)`, max('coldUpstreamMiB') <= p.imageMiB + 0.5],
    [`${p.herdClients} concurrent cold GETs → the upstream serves the blob once`, max('herdFetches') <= 1],
    ['warm HEAD by tag within tagttl asks the upstream nothing', max('headTagUpstream') === 0],
    ['warm HEAD by digest ≥ Distribution proxy', median(all('headDigest')) >= dist('headDigest')],
    ['warm HEAD by tag ≥ Distribution proxy', median(all('headTag')) >= dist('headTag')],
    ['warm HEAD by digest ≥ 45,000 req/s (nginx mirror anchor, FIELD-NOTES)', median(all('headDigest')) >= 45_000],
    ['warm HEAD by tag ≥ 50,000 req/s (nginx mirror anchor, FIELD-NOTES)', median(all('headTag')) >= 50_000],
    ['cold pull no slower than Distribution proxy (+15 %)', median(all('coldPull')) <= dist('coldPull') * 1.15],
    ['warm blob GET within 15 % of Distribution proxy', median(all('blobMBps')) >= dist('blobMBps') * 0.85],
    ['peak RSS under Distribution proxy', median(all('peakRss')) <= dist('peakRss')],
  ]
  if (nginxMBps.length > 0) {
    list.push(['warm blob GET ≥ 90 % of nginx serving the same size of file (sendfile), same curl', median(all('blobMBps')) >= median(nginxMBps) * 0.9])
  }
  return list.map(([what, ok]) => ({ what, ok: Boolean(ok) }))
}

/** @param {Row[]} rowList @param {Samples} s @param {object} meta */
export function markdown(rowList, s, meta) {
  const lines = [
    `| row | ${TARGETS.map(t => TARGET_TITLES[t]).join(' | ')} | Stevedore / Distribution |`,
    `|---|${TARGETS.map(() => '---:').join('|')}|---|`,
  ]
  for (const row of rowList) {
    const cells = TARGETS.map(t => cell(s[t]?.[row.key], row.digits))
    lines.push(`| ${row.label} ${row.better === 'lower' ? '↓' : '↑'} | ${cells.join(' | ')} | ${ratio(row, s).text} |`)
  }
  const checkLines = meta.checks.map(c => `- ${c.ok ? 'PASS' : '**FAIL**'}: ${c.what}`)
  return [
    `## Stevedore vs Distribution 2.8 proxy vs the upstream direct (${meta.date})`,
    '',
    `Command: \`${meta.command}\`  `,
    `Median of ${meta.runs} run(s), (min–max) when they differ; ↓ lower is better, ↑ higher is better. ` +
      `Machine: ${meta.machine.cpus}× ${meta.machine.cpuModel}, Node ${meta.machine.node}, loopback, all processes sharing the cores; ` +
      `load average ${meta.machine.loadAverageAtStart.join(' ')} at start, ${meta.machine.loadAverageAtEnd.join(' ')} at end.`,
    `Calibration in the same run: a bare node:http server answering HEAD from memory, same ab: ${meta.calibration} ` +
      `(FIELD-NOTES: ~56,700 req/s on a quiet machine); Stevedore's warm HEAD by digest is ` +
      `${((100 * median(s.stevedore?.headDigest ?? [])) / median(meta.bareHead)).toFixed(0)} % of it, by tag ` +
      `${((100 * median(s.stevedore?.headTag ?? [])) / median(meta.bareHead)).toFixed(0)} %. ` +
      (meta.nginxMBps?.length
        ? `nginx-light serving a file of the warm blob's size with sendfile, same curl: ${Math.round(median(meta.nginxMBps)).toLocaleString('en-US')} MB/s; ` +
          `Stevedore's warm blob GET is ${((100 * median(s.stevedore?.blobMBps ?? [])) / median(meta.nginxMBps)).toFixed(0)} % of it.`
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
 * Writes `pull-<stamp>.json` and `.md` into `dir`; returns their paths.
 * @param {string} dir @param {string} stamp @param {object} record @param {string} md
 */
export function writeResults(dir, stamp, record, md) {
  mkdirSync(dir, { recursive: true })
  const json = join(dir, `pull-${stamp}.json`)
  const mdPath = join(dir, `pull-${stamp}.md`)
  writeFileSync(json, `${JSON.stringify(record, null, 2)}\n`)
  writeFileSync(mdPath, md)
  return { json, md: mdPath }
}
