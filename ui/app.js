// The status page: reads /api/v1/ (docs/api.md) and draws it. No framework, no build step.
'use strict'

const api = path => fetch(`../api/v1/${path}`, { credentials: 'same-origin', headers: { Accept: 'application/json' } }).then(res => {
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`)
  return res.json()
})

/** Pages of repositories the page loads at most (1000 each). */
const MAX_PAGES = 5
const $ = id => document.getElementById(id)

function bytes(n) {
  if (n === null || n === undefined) return '—'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = n
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit += 1
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`
}

/** A figure shown rounded, its exact value kept in data-value (and the tooltip). */
function figure(el, value, text) {
  el.textContent = text
  el.dataset.value = value === null || value === undefined ? '' : String(value)
  el.title = el.dataset.value
}

const when = iso => (iso === null ? 'never' : new Date(iso).toLocaleString())

function cell(row, text, className) {
  const td = document.createElement('td')
  td.textContent = text
  if (className) td.className = className
  row.appendChild(td)
  return td
}

function showSummary(summary) {
  $('version').textContent = `v${summary.version}`
  figure($('cache-bytes'), summary.cache.bytes, bytes(summary.cache.bytes))
  const max = summary.cache.maxBytes
  figure($('cache-max'), max, max === null ? 'no quota' : bytes(max))
  $('cache-bar').style.width = max === null || summary.cache.bytes === null ? '0' : `${Math.min(100, (100 * summary.cache.bytes) / max)}%`
  const traffic = summary.traffic
  const ratio = traffic === null ? null : traffic.hitRatio
  figure($('hit-ratio'), ratio, ratio === null ? '—' : `${(100 * ratio).toFixed(1)} %`)
  figure($('hits'), traffic && traffic.hits, traffic === null ? '—' : String(traffic.hits))
  figure($('misses'), traffic && traffic.misses, traffic === null ? '—' : String(traffic.misses))
  figure($('bytes-saved'), traffic && traffic.bytesSaved, traffic === null ? '—' : bytes(traffic.bytesSaved))
}

function showUpstreams(upstreams) {
  const body = $('upstreams').tBodies[0]
  body.replaceChildren()
  for (const u of upstreams) {
    const row = body.insertRow()
    row.dataset.upstream = u.name
    cell(row, u.name)
    cell(row, u.url)
    cell(row, u.healthy === null ? 'offline mode' : u.healthy ? 'healthy' : 'unreachable', u.healthy === false ? 'down' : 'ok')
    cell(row, u.breaker, u.breaker === 'open' ? 'down' : '')
    const limit = u.rateLimit
    cell(row, limit && limit.limit !== undefined ? `${limit.remaining ?? '?'} / ${limit.limit}` : '—')
  }
}

const SVG = 'http://www.w3.org/2000/svg'

/** Two lines over the history: cache size and bytes saved, each scaled to its own maximum. */
function showHistory(history) {
  const svg = $('chart')
  svg.replaceChildren()
  const points = history.points
  const series = [
    ['cache', points.map(p => p.cacheBytes)],
    ['saved', points.map(p => p.bytesSaved)],
  ]
  for (const [name, values] of series) {
    const known = values.filter(v => v !== null)
    if (known.length === 0) continue
    const top = Math.max(...known, 1)
    const step = points.length > 1 ? 600 / (points.length - 1) : 0
    const coords = values
      .map((v, i) => (v === null ? null : `${(i * step).toFixed(1)},${(115 - (110 * v) / top).toFixed(1)}`))
      .filter(c => c !== null)
    if (coords.length === 1) coords.push(coords[0].replace(/^[^,]*/, '600'))
    const line = document.createElementNS(SVG, 'polyline')
    line.setAttribute('class', name)
    line.setAttribute('points', coords.join(' '))
    svg.appendChild(line)
  }
}

let repositories = []

function showRepositories() {
  const query = $('search').value.trim().toLowerCase()
  const body = $('repositories').tBodies[0]
  body.replaceChildren()
  let shown = 0
  for (const repo of repositories) {
    const tags = query === '' || repo.name.toLowerCase().includes(query) ? repo.tags : repo.tags.filter(t => t.tag.toLowerCase().includes(query))
    if (tags.length === 0 && !(query === '' || repo.name.toLowerCase().includes(query))) continue
    shown += 1
    const row = body.insertRow()
    row.dataset.repository = repo.name
    cell(row, repo.name)
    const tagCell = cell(row, '')
    for (const t of tags) {
      const span = document.createElement('span')
      span.className = 'tag'
      span.dataset.tag = t.tag
      span.dataset.size = String(t.size)
      span.textContent = t.tag
      span.title = `${t.digest}\n${bytes(t.size)}, last pull ${when(t.lastPull)}`
      tagCell.appendChild(span)
    }
    if (repo.tagsTruncated) tagCell.append(` … ${repo.tagCount} in all`)
    figure(cell(row, '', 'num size'), repo.size, bytes(repo.size))
    cell(row, when(repo.lastPull))
  }
  $('repo-count').textContent = `(${shown} of ${repositories.length})`
}

async function loadRepositories() {
  const all = []
  let last
  for (let page = 0; page < MAX_PAGES; page += 1) {
    const doc = await api(`repositories?n=1000${last === undefined ? '' : `&last=${encodeURIComponent(last)}`}`)
    all.push(...doc.repositories)
    last = doc.next
    if (last === undefined) break
  }
  $('repo-more').hidden = last === undefined
  return all
}

async function refresh() {
  const state = $('state')
  try {
    const [summary, history, repos] = await Promise.all([api('summary'), api('history'), loadRepositories()])
    showSummary(summary)
    showUpstreams(summary.upstreams)
    showHistory(history)
    repositories = repos
    showRepositories()
    state.dataset.state = 'ready'
    state.textContent = `updated ${new Date(summary.time).toLocaleTimeString()}`
  } catch (err) {
    state.dataset.state = 'error'
    state.textContent = String(err.message || err)
  }
}

$('search').addEventListener('input', showRepositories)
refresh()
setInterval(refresh, 30_000)
