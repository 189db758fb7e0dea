// The status page in a real browser: Stevedore in process proxying a real
// Distribution, two images pulled through by skopeo, then Debian's headless
// Chromium (driven by playwright-core) loads /ui/. The figures it shows must
// be those of /api/v1/ and of the storage tree (and of /metrics when that is
// on), the search box must filter, and with htpasswd auth the page must be
// refused without credentials and shown with them. A screenshot is written
// to test/artifacts/status-page.png.
import { execFile } from 'node:child_process'
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { chromium, type Browser, type Page } from 'playwright-core'
import t from 'tap'
import { startDistribution } from '../helpers/distribution.js'
import { writeOciImage, type ImageDescription } from '../helpers/images.js'
import { startInProcess } from '../helpers/inprocess.js'
import { pullToLayout, pushLayout } from '../helpers/skopeo.js'
import { trafficFromMetrics } from '../../src/http/status.js'

const run = promisify(execFile)
const CHROMIUM = process.env.STEVEDORE_TEST_CHROMIUM ?? '/usr/bin/chromium'
const ARTIFACTS = new URL('../artifacts/', import.meta.url)

interface TagDoc {
  tag: string
  digest: string
  size: number
  lastPull: string | null
}
interface RepoDoc {
  name: string
  size: number
  tags: TagDoc[]
  lastPull: string | null
}
interface Summary {
  cache: { bytes: number | null; maxBytes: number | null }
  traffic: { hits: number; misses: number; bytesSaved: number; hitRatio: number | null } | null
  upstreams: { name: string; url: string; breaker: string; healthy: boolean | null }[]
}

/** Sizes of the blobs in a Distribution storage tree, by digest. */
async function storedBlobs(root: string): Promise<Map<string, number>> {
  const sizes = new Map<string, number>()
  const base = join(root, 'docker/registry/v2/blobs/sha256')
  for (const prefix of await readdir(base)) {
    for (const hex of await readdir(join(base, prefix))) {
      const data = await stat(join(base, prefix, hex, 'data')).catch(() => undefined)
      if (data !== undefined) sizes.set(`sha256:${hex}`, data.size)
    }
  }
  return sizes
}

async function json<T>(url: string, headers: Record<string, string> = {}): Promise<T> {
  const res = await fetch(url, { headers })
  if (res.status !== 200) throw new Error(`${url}: ${res.status}`)
  return (await res.json()) as T
}

async function until(what: string, check: () => Promise<boolean>, deadlineMs = 15_000): Promise<void> {
  const end = Date.now() + deadlineMs
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

/** What the page shows: its figures' exact values and the rows of the repository table. */
async function shown(page: Page) {
  const value = (id: string) => page.getAttribute(`#${id}`, 'data-value')
  const rows = []
  for (const row of await page.locator('#repositories tbody tr').all()) {
    const tags = []
    for (const tag of await row.locator('.tag').all()) tags.push({ tag: (await tag.getAttribute('data-tag')) ?? '', size: Number(await tag.getAttribute('data-size')) })
    rows.push({ name: (await row.getAttribute('data-repository')) ?? '', tags, size: Number(await row.locator('.size').getAttribute('data-value')) })
  }
  const upstreams = []
  for (const row of await page.locator('#upstreams tbody tr').all()) upstreams.push(await row.locator('td').allTextContents())
  return { cacheBytes: await value('cache-bytes'), cacheMax: await value('cache-max'), hits: await value('hits'), misses: await value('misses'), saved: await value('bytes-saved'), rows, upstreams }
}

t.test('status page', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  const images = new Map<string, ImageDescription>()
  for (const [repo, seed] of [['team/web', 'status-web'], ['tools/cli', 'status-cli']] as const) {
    const image = await writeOciImage(join(dir, repo), { tag: 'v1', seed, layerSizes: [4000, 90_000] })
    images.set(repo, image)
    await pushLayout(join(dir, repo), 'v1', `${upstream.host}/${repo}:v1`)
  }
  // A second tag of the same image: its blobs count once in the repository's size.
  await pushLayout(join(dir, 'team/web'), 'v1', `${upstream.host}/team/web:latest`)

  const cache = join(dir, 'cache')
  const maxSize = 1024 * 1024 * 1024
  const stevedore = await startInProcess(t, cache, {
    proxy: { remoteurl: upstream.url },
    storage: { filesystem: { rootdirectory: cache }, quota: { maxsize: maxSize } },
  })
  for (const ref of ['team/web:v1', 'team/web:latest', 'tools/cli:v1']) {
    await pullToLayout(`${stevedore.host}/${ref}`, join(dir, `pulled-${ref.replace(/[/:]/g, '-')}`), 'v1')
  }

  // The quota count catches up with the tree once the fills are committed.
  let blobs = new Map<string, number>()
  const total = () => [...blobs.values()].reduce((a, b) => a + b, 0)
  await until('the quota count to match the storage', async () => {
    blobs = await storedBlobs(cache)
    return (await json<Summary>(`${stevedore.url}/api/v1/summary`)).cache.bytes === total()
  })
  const summary = await json<Summary>(`${stevedore.url}/api/v1/summary`)
  const { repositories } = await json<{ repositories: RepoDoc[] }>(`${stevedore.url}/api/v1/repositories`)

  t.test('the API matches the storage', async t => {
    t.same(repositories.map(r => r.name), ['team/web', 'tools/cli'], 'the repositories pulled')
    t.same(repositories.map(r => r.tags.map(tag => tag.tag)), [['latest', 'v1'], ['v1']], 'their tags')
    for (const repo of repositories) {
      const image = images.get(repo.name) as ImageDescription
      const expected = [image.manifestDigest, ...image.blobs.map(b => b.digest)].reduce((sum, d) => sum + (blobs.get(d) ?? NaN), 0)
      t.equal(repo.size, expected, `${repo.name}: manifest and blobs as stored, shared ones once`)
      for (const tag of repo.tags) {
        t.equal(tag.digest, image.manifestDigest, `${repo.name}:${tag.tag}: the digest`)
        t.equal(tag.size, expected, `${repo.name}:${tag.tag}: its size`)
      }
    }
    t.equal(summary.cache.maxBytes, maxSize, 'the quota')
    t.equal(summary.upstreams.length, 1, 'one upstream')
    t.match(summary.upstreams[0], { name: 'default', url: upstream.url, breaker: 'closed', healthy: true })
    const page = await json<{ repositories: RepoDoc[]; next?: string }>(`${stevedore.url}/api/v1/repositories?n=1`)
    t.same([page.repositories.map(r => r.name), page.next], [['team/web'], 'team/web'], 'pages of n, with next')
    const after = await json<{ repositories: RepoDoc[] }>(`${stevedore.url}/api/v1/repositories?n=1&last=team/web`)
    t.same(after.repositories.map(r => r.name), ['tools/cli'], 'the next page')
    t.equal((await fetch(`${stevedore.url}/api/v1/repositories?n=1001`)).status, 400, 'at most 1000 a page')
    t.equal((await fetch(`${stevedore.url}/api/v1/nothing`)).status, 404, 'an unknown document')
    t.equal((await fetch(`${stevedore.url}/api/v1/summary`, { method: 'POST' })).status, 405, 'read-only')
    t.equal((await fetch(`${stevedore.url}/ui/../package.json`)).status, 404, 'only the page\'s own files')
    t.equal((await fetch(`${stevedore.url}/ui/nothing.js`)).status, 404, 'an unknown file')
    const bare = await fetch(`${stevedore.url}/ui`, { redirect: 'manual' })
    t.same([bare.status, bare.headers.get('location')], [301, 'ui/'], '/ui redirects to /ui/')
    const head = await fetch(`${stevedore.url}/ui/app.js`, { method: 'HEAD' })
    t.same([head.status, head.headers.get('content-type')], [200, 'text/javascript; charset=utf-8'], 'HEAD of a file')
    const history = await json<{ points: { cacheBytes: number | null }[] }>(`${stevedore.url}/api/v1/history`)
    t.equal(history.points.at(-1)?.cacheBytes, total(), 'the history ends with the cache size now')
  })

  // launch() gives the browser a fresh profile in a temp dir of its own, removed on close.
  let browser: Browser | undefined
  t.teardown(() => browser?.close())
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'],
  })

  t.test('the page shows what the API and /metrics say', async t => {
    const context = await (browser as Browser).newContext({ viewport: { width: 1100, height: 800 } })
    t.teardown(() => context.close())
    const page = await context.newPage()
    const errors: string[] = []
    page.on('pageerror', err => errors.push(err.message))
    const response = await page.goto(`${stevedore.url}/ui/`)
    t.equal(response?.status(), 200, '/ui/ answers')
    await page.waitForSelector('#state[data-state="ready"]', { timeout: 15_000 })
    const view = await shown(page)
    t.equal(view.cacheBytes, String(total()), 'the cache size: the API\'s and the storage\'s')
    t.equal(view.cacheMax, String(maxSize), 'the quota')
    t.same(
      view.rows,
      repositories.map(r => ({ name: r.name, tags: r.tags.map(tag => ({ tag: tag.tag, size: tag.size })), size: r.size })),
      'the repositories, tags and sizes of /api/v1/repositories',
    )
    t.match(view.upstreams, [['default', upstream.url, 'healthy', 'closed']], 'the upstream and its breaker')
    const metrics = await fetch(`${stevedore.url}/metrics`)
    const text = metrics.status === 200 ? await metrics.text() : ''
    const traffic = trafficFromMetrics(text)
    const sizeLine = /^stevedore_cache_size_bytes(?:\{[^}]*\})? (\d+)/m.exec(text)
    if (sizeLine !== null) t.equal(view.cacheBytes, sizeLine[1], 'the cache size of /metrics')
    const api = await json<Summary>(`${stevedore.url}/api/v1/summary`)
    if (traffic === undefined) {
      t.equal(api.traffic, null, 'no hit figures without them in /metrics')
      t.same([view.hits, view.saved], ['', ''], 'and the page shows none')
    } else {
      t.same([view.hits, view.misses, view.saved], [String(traffic.hits), String(traffic.misses), String(traffic.bytesSaved)], 'hits, misses and bytes saved of /metrics')
    }
    t.ok((await page.locator('#chart polyline.cache').count()) === 1, 'the chart draws the cache size')

    await mkdir(ARTIFACTS, { recursive: true })
    await writeFile(new URL('status-page.png', ARTIFACTS), await page.screenshot({ fullPage: true }))

    await page.fill('#search', 'cli')
    t.same((await shown(page)).rows.map(r => r.name), ['tools/cli'], 'the search box filters by repository')
    await page.fill('#search', 'latest')
    t.same((await shown(page)).rows.map(r => [r.name, r.tags.map(tag => tag.tag)]), [['team/web', ['latest']]], 'and by tag')
    await page.fill('#search', '')
    t.equal((await shown(page)).rows.length, 2, 'an empty search shows all')
    t.same(errors, [], 'no script errors')
  })

  t.test('with htpasswd: refused without credentials, shown with them', async t => {
    const htpasswd = join(dir, 'htpasswd')
    await writeFile(htpasswd, (await run('htpasswd', ['-nbBC', '4', 'alice', 'alice-pw'])).stdout.trim() + '\n')
    const guarded = await startInProcess(t, cache, {
      proxy: { remoteurl: upstream.url },
      auth: { htpasswd: { realm: 'Stevedore status', path: htpasswd } },
      access: [{ repositories: ['**'], users: ['alice'], actions: ['pull'] }],
    })
    for (const path of ['/ui/', '/api/v1/summary', '/api/v1/repositories']) {
      const res = await fetch(`${guarded.url}${path}`)
      t.equal(res.status, 401, `${path} without credentials`)
      t.equal(res.headers.get('www-authenticate'), 'Basic realm="Stevedore status"', `${path}: the challenge`)
    }
    const anonymous = await (browser as Browser).newContext()
    t.teardown(() => anonymous.close())
    // Headless Chromium has no one to ask for a password: it ends a challenged navigation with this error.
    const blank = await anonymous.newPage()
    const refused = await blank.goto(`${guarded.url}/ui/`).then(
      res => `HTTP ${res?.status()}`,
      (err: Error) => (/ERR_INVALID_AUTH_CREDENTIALS/.test(err.message) ? 'HTTP 401' : err.message),
    )
    t.equal(refused, 'HTTP 401', 'the browser without credentials is refused')
    t.equal(await blank.locator('#repositories').count(), 0, 'and sees no page')
    t.equal((await anonymous.request.get(`${guarded.url}/api/v1/summary`)).status(), 401, 'its API requests get 401')

    const context = await (browser as Browser).newContext({ httpCredentials: { username: 'alice', password: 'alice-pw' } })
    t.teardown(() => context.close())
    const page = await context.newPage()
    t.equal((await page.goto(`${guarded.url}/ui/`))?.status(), 200, 'with credentials the page loads')
    await page.waitForSelector('#state[data-state="ready"]', { timeout: 15_000 })
    t.same((await shown(page)).rows.map(r => r.name), ['team/web', 'tools/cli'], 'and lists the repositories')
  })
})
