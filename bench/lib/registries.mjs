/**
 * The servers of a run: the upstream (a plain Distribution whose access log
 * we count), Distribution in proxy mode, and Stevedore (the nginx mirror is
 * in nginx.mjs). Each gets its own config.yml, a fresh storage dir (or, for
 * the growth benchmark, a given one) and a free loopback port. With
 * `accessLog` the proxies log each request to `access.log` in their own temp
 * dir (their stdout), as the nginx mirror does.
 */
import { cpSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { stringify } from 'yaml'
import { freePort, removeDir, startServer, tempDir } from './procs.mjs'

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const DISTRIBUTION_BIN = process.env.STEVEDORE_BENCH_DISTRIBUTION_BIN ?? 'docker-registry'

/**
 * @typedef {import('./procs.mjs').Server & {storage: string, close: () => Promise<void>}} Registry
 * @typedef {{method: string, path: string, status: number, bytes: number}} AccessEntry
 * @typedef {Registry & {log: AccessEntry[]}} Upstream
 */

// Gorilla's combined log format, which Distribution writes to stdout:
// 127.0.0.1 - - [date] "GET /v2/r/blobs/sha256:… HTTP/1.1" 200 41943552 "" "ua"
const ACCESS_LINE = /"([A-Z]+) (\S+) HTTP\/[\d.]+" (\d{3}) (\d+|-)/

/** @param {string} dir @param {number} port @param {object} extra @param {string} [root] existing storage; default a fresh dir */
function distributionConfig(dir, port, extra, root) {
  const storage = root ?? join(dir, 'storage')
  if (root === undefined) mkdirSync(storage)
  return {
    storage,
    config: {
      version: '0.1',
      log: { level: 'warn', accesslog: { disabled: true } },
      storage: {
        filesystem: { rootdirectory: storage },
        maintenance: { uploadpurging: { enabled: false } },
      },
      http: { addr: `127.0.0.1:${port}`, secret: 'stevedore-bench-http-secret' },
      ...extra,
    },
  }
}

/**
 * @param {string} label
 * @param {(dir: string, port: number) => {storage: string, config: object, command: string, args: (path: string) => string[], stdoutFile?: string}} build
 * @param {(line: string) => void} [onStdoutLine]
 * @param {{pollMs?: number, startTimeoutMs?: number}} [startOpts]
 * @returns {Promise<Registry>}
 */
async function start(label, build, onStdoutLine, startOpts = {}) {
  for (let attempt = 1; ; attempt++) {
    const dir = tempDir(label)
    const port = await freePort()
    const { storage, config, command, args, stdoutFile } = build(dir, port)
    const configPath = join(dir, 'config.yml')
    writeFileSync(configPath, stringify(config))
    try {
      const server = await startServer({ name: label, command, args: args(configPath), port, cwd: dir, onStdoutLine, stdoutFile, ...startOpts })
      const close = async () => {
        await server.stop()
        removeDir(dir)
      }
      return { ...server, storage, close }
    } catch (error) {
      removeDir(dir)
      if (attempt >= 3 || !/address already in use/i.test(String(error))) throw error
    }
  }
}

/** A plain Distribution with its access log on, parsed line by line into `log`. @returns {Promise<Upstream>} */
export async function startUpstream() {
  /** @type {AccessEntry[]} */
  const log = []
  const onLine = line => {
    const m = ACCESS_LINE.exec(line)
    if (m) log.push({ method: m[1], path: m[2], status: Number(m[3]), bytes: m[4] === '-' ? 0 : Number(m[4]) })
  }
  const server = await start(
    'upstream',
    (dir, port) => {
      const { storage, config } = distributionConfig(dir, port, {})
      config.log.accesslog.disabled = false
      return { storage, config, command: DISTRIBUTION_BIN, args: path => ['serve', path] }
    },
    onLine,
  )
  return Object.assign(server, { log })
}

/**
 * Distribution 2.8 in proxy mode (pull-through cache), fresh storage.
 * Its access log (Gorilla combined format, one line per request) goes to its stdout, here a file.
 * @param {string} remoteUrl @param {{accessLog?: boolean}} [opts]
 */
export function startDistributionProxy(remoteUrl, opts = {}) {
  return start('distribution', (dir, port) => {
    const { storage, config } = distributionConfig(dir, port, { proxy: { remoteurl: remoteUrl } })
    config.log.accesslog.disabled = !opts.accessLog
    return { storage, config, command: DISTRIBUTION_BIN, args: path => ['serve', path], stdoutFile: join(dir, 'access.log') }
  })
}

/**
 * A plain Distribution (no proxy) serving an existing storage dir: the
 * growth benchmark's catalog reference. The dir is not removed by `close()`.
 * @param {string} root @param {{accessLog?: boolean, pollMs?: number}} [opts]
 */
export function startDistributionOn(root, opts = {}) {
  return start(
    'distribution-plain',
    (dir, port) => {
      const { storage, config } = distributionConfig(dir, port, {}, root)
      config.log.accesslog.disabled = !opts.accessLog
      return { storage, config, command: DISTRIBUTION_BIN, args: path => ['serve', path], stdoutFile: join(dir, 'access.log') }
    },
    undefined,
    { pollMs: opts.pollMs, startTimeoutMs: 120_000 },
  )
}

/**
 * The node flags every shipped launcher runs Stevedore with (bin/stevedore's
 * shebang, `npm start`, deploy/'s entrypoint and systemd unit): the benchmark
 * measures what a deployment runs.
 */
export const STEVEDORE_NODE_FLAGS = ['--max-semi-space-size=4']

/**
 * A copy of bin/, dist/ and package.json (node_modules linked): others may
 * rebuild dist/ while a run is under way, and every Stevedore of the run
 * must be the same code. @returns {string} the snapshot's root
 */
export function snapshotStevedore() {
  const root = tempDir('stevedore-build')
  for (const part of ['bin', 'dist', 'package.json']) cpSync(join(REPO_ROOT, part), join(root, part), { recursive: true })
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(root, 'node_modules'))
  return root
}

/**
 * `node --max-semi-space-size=4 bin/stevedore serve config.yml` (node itself, so the PID is the
 * server's), fresh storage unless `opts.storage` names one (not removed by
 * `close()`). With `accessLog`, `log.level: info` and the access log on (JSON
 * lines on stdout, here a file); without, `warn` and no access log.
 * @param {string} remoteUrl @param {string} [build] a `snapshotStevedore()` root; default the repository
 * @param {{accessLog?: boolean, storage?: string, pollMs?: number, workers?: number, extra?: object}} [opts] `workers`: http.workers; `extra`: top-level config keys added
 */
export function startStevedore(remoteUrl, build = REPO_ROOT, opts = {}) {
  return start(
    'stevedore',
    (dir, port) => {
      const storage = opts.storage ?? join(dir, 'storage')
      if (opts.storage === undefined) mkdirSync(storage)
      const config = {
        version: '0.1',
        http: { addr: `127.0.0.1:${port}`, ...(opts.workers > 1 ? { workers: opts.workers } : {}) },
        storage: { filesystem: { rootdirectory: storage } },
        log: opts.accessLog ? { level: 'info', accesslog: { disabled: false } } : { level: 'warn', accesslog: { disabled: true } },
        proxy: { remoteurl: remoteUrl, tagttl: '5m' },
        ...(opts.extra ?? {}),
      }
      const bin = join(build, 'bin/stevedore')
      return { storage, config, command: process.execPath, args: path => [...STEVEDORE_NODE_FLAGS, bin, 'serve', path], stdoutFile: join(dir, 'access.log') }
    },
    undefined,
    { pollMs: opts.pollMs, startTimeoutMs: opts.storage === undefined ? undefined : 120_000 },
  )
}

/**
 * What the upstream served since `mark` (an index into its log): blob GETs
 * (optionally of one digest), their bytes, and manifest requests.
 * @param {Upstream} upstream @param {number} mark @param {string} [digest]
 */
export function servedSince(upstream, mark, digest) {
  let blobGets = 0
  let blobBytes = 0
  let manifestRequests = 0
  for (const entry of upstream.log.slice(mark)) {
    if (entry.path.includes('/manifests/')) manifestRequests++
    if (entry.method !== 'GET' || !entry.path.includes('/blobs/sha256:')) continue
    if (digest !== undefined && !entry.path.endsWith(`/blobs/${digest}`)) continue
    if (entry.status !== 200 && entry.status !== 206) continue
    blobGets++
    blobBytes += entry.bytes
  }
  return { blobGets, blobBytes, manifestRequests }
}

/** The calibration server of bare-server.mjs on a free port. */
export function startBareNode() {
  const script = fileURLToPath(new URL('./bare-server.mjs', import.meta.url))
  return start('bare-node', (dir, port) => ({ storage: dir, config: {}, command: process.execPath, args: () => [script, String(port)] }))
}
