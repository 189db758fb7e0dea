/**
 * Child processes and temp dirs of one benchmark run. Everything started or
 * created here is registered, and removed by PID / path when the run ends,
 * fails, or is interrupted (Ctrl-C, SIGTERM): nothing is left behind.
 */
import { spawn } from 'node:child_process'
import { accessSync, closeSync, constants, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as delay } from 'node:timers/promises'

/** @type {Map<number, string>} pid → name, for children still running */
const live = new Map()
/** @type {Set<string>} */
const dirs = new Set()

/** A new dir under `base` (default the OS temp dir), removed at the end whatever happens. @param {string} label @param {string} [base] */
export function tempDir(label, base = tmpdir()) {
  const dir = mkdtempSync(join(base, `stevedore-bench-${label}-`))
  dirs.add(dir)
  return dir
}

/** @param {string} dir */
export function removeDir(dir) {
  rmSync(dir, { recursive: true, force: true })
  dirs.delete(dir)
}

/** @param {number} pid @param {NodeJS.Signals} signal */
function tryKill(pid, signal) {
  try {
    process.kill(pid, signal)
  } catch {
    // already gone
  }
}

/**
 * Every descendant of `pid` (children, their children…), by PID, read from
 * /proc: nginx's master forks its workers, cache manager and cache loader,
 * and a master killed with SIGKILL leaves them running unless they are
 * stopped by PID too. @param {number} pid @returns {number[]}
 */
export function descendants(pid) {
  const found = []
  const queue = [pid]
  while (queue.length > 0) {
    const parent = /** @type {number} */ (queue.shift())
    for (const child of childrenOf(parent)) {
      if (found.includes(child) || child === pid) continue
      found.push(child)
      queue.push(child)
    }
  }
  return found
}

/** @param {number} pid @returns {number[]} */
function childrenOf(pid) {
  try {
    const out = []
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      for (const word of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ')) if (word !== '') out.push(Number(word))
    }
    return out
  } catch (error) {
    if (/** @type {NodeJS.ErrnoException} */ (error).code !== 'ENOENT' || !procHasChildrenFiles()) return scanChildren(pid)
    return [] // the process is gone
  }
}

let childrenFiles
function procHasChildrenFiles() {
  if (childrenFiles === undefined) {
    try {
      readFileSync(`/proc/${process.pid}/task/${process.pid}/children`)
      childrenFiles = true
    } catch {
      childrenFiles = false
    }
  }
  return childrenFiles
}

/** Without CONFIG_PROC_CHILDREN: every /proc/N/stat whose parent is `pid`. @param {number} pid */
function scanChildren(pid) {
  const out = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(entry))
    } catch {
      // gone meanwhile
    }
  }
  return out
}

/** Synchronous last resort: SIGKILL every child and its descendants by PID, remove every temp dir. */
export function cleanupNow() {
  for (const pid of live.keys()) {
    const below = descendants(pid)
    tryKill(pid, 'SIGKILL')
    for (const child of below) tryKill(child, 'SIGKILL')
  }
  live.clear()
  for (const dir of [...dirs]) removeDir(dir)
}

process.once('exit', cleanupNow)
for (const signal of /** @type {const} */ (['SIGINT', 'SIGTERM', 'SIGHUP'])) {
  process.once(signal, () => {
    process.stderr.write(`\nbench: ${signal}: stopping ${live.size} process(es), removing ${dirs.size} temp dir(s)\n`)
    cleanupNow()
    process.exit(130)
  })
}

/** The last 4 KiB of a server's stdout file, for an error message. @param {string} [path] */
function tail(path) {
  if (path === undefined) return ''
  try {
    return `\nstdout (${path}):\n${readFileSync(path, 'utf8').slice(-4096)}`
  } catch {
    return ''
  }
}

/** True unless `pid` is gone or a zombie (FIELD-NOTES: a SIGKILLed orphan stays a zombie ~2 s). @param {number} pid */
function isRunning(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}

/** The path of `command` on PATH, or undefined. @param {string} command */
export function which(command) {
  if (command.includes('/')) return isExecutable(command) ? command : undefined
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir !== '' && isExecutable(join(dir, command))) return join(dir, command)
  }
  return undefined
}

/** @param {string} path */
function isExecutable(path) {
  try {
    accessSync(path, constants.X_OK)
    return statSync(path).isFile()
  } catch {
    return false
  }
}

/**
 * Fails with one message naming every missing command and the Debian
 * package that has it. @param {Record<string, string>} commands command → package
 */
export function requireCommands(commands) {
  const missing = Object.entries(commands).filter(([command]) => which(command) === undefined)
  if (missing.length === 0) return
  const packages = [...new Set(missing.map(([, pkg]) => pkg))].join(' ')
  throw new Error(`missing on PATH: ${missing.map(([c]) => c).join(', ')}; install with: apt-get install -y --no-install-recommends ${packages}`)
}

/** A TCP port on 127.0.0.1 that was free a moment ago. @returns {Promise<number>} */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(err => (err ? reject(err) : resolve(port)))
    })
  })
}

/**
 * @typedef {object} Server
 * @property {string} name
 * @property {number} pid
 * @property {number} port
 * @property {string} host 127.0.0.1:PORT
 * @property {string} url http://127.0.0.1:PORT
 * @property {() => string} stderr
 * @property {() => number[]} pids the server's PID and its descendants' (nginx's workers), now
 * @property {number} startupMs from spawn until `GET /v2/` first answered
 * @property {() => Promise<void>} stop SIGTERM, SIGKILL after 3 s (descendants too); resolves once gone
 */

/**
 * Starts a long-running server on `port` and waits until `GET /v2/` answers.
 * `onStdoutLine` sees each stdout line (the access log of Distribution);
 * `stdoutFile` sends stdout to that file instead (an access log the
 * benchmark does not read, written as a deployment would). `pollMs`: how
 * often `/v2/` is tried while starting (the resolution of `startupMs`).
 * @param {{name: string, command: string, args: string[], port: number, cwd?: string,
 *   onStdoutLine?: (line: string) => void, stdoutFile?: string, startTimeoutMs?: number, pollMs?: number}} opts
 * @returns {Promise<Server>}
 */
export async function startServer(opts) {
  const outFd = opts.stdoutFile === undefined ? undefined : openSync(opts.stdoutFile, 'a')
  const spawnedAt = performance.now()
  let child
  try {
    child = spawn(opts.command, opts.args, { cwd: opts.cwd, stdio: ['ignore', outFd ?? 'pipe', 'pipe'] })
  } finally {
    if (outFd !== undefined) closeSync(outFd)
  }
  if (child.pid === undefined) throw new Error(`${opts.name}: cannot start ${opts.command}`)
  const pid = child.pid
  live.set(pid, opts.name)
  let err = ''
  let partial = ''
  child.stderr.setEncoding('utf8').on('data', chunk => {
    err = (err + chunk).slice(-64 * 1024)
  })
  child.stdout?.setEncoding('utf8').on('data', chunk => {
    const lines = (partial + chunk).split('\n')
    partial = lines.pop() ?? ''
    if (opts.onStdoutLine) for (const line of lines) opts.onStdoutLine(line)
  })
  child.on('error', () => {})
  let exited = false
  const exit = new Promise(resolve =>
    child.once('exit', () => {
      exited = true
      live.delete(pid)
      resolve(undefined)
    }),
  )
  const stop = async () => {
    // Read before the signal: once the parent is gone its orphans are nobody's children.
    const below = exited ? [] : descendants(pid)
    if (!exited) {
      tryKill(pid, 'SIGTERM')
      if (!(await Promise.race([exit.then(() => true), delay(3000, false)]))) {
        tryKill(pid, 'SIGKILL')
        await exit
      }
    }
    // A clean nginx stops its workers itself; after a SIGKILL they would stay.
    for (const child of below) if (isRunning(child)) tryKill(child, 'SIGKILL')
  }
  const url = `http://127.0.0.1:${opts.port}`
  const deadline = Date.now() + (opts.startTimeoutMs ?? 15_000)
  let startupMs = 0
  for (;;) {
    if (exited) throw new Error(`${opts.name} exited before answering ${url}/v2/\n${err}${tail(opts.stdoutFile)}`)
    try {
      const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(2000) })
      startupMs = performance.now() - spawnedAt
      await res.body?.cancel()
      break
    } catch {
      if (Date.now() > deadline) {
        await stop()
        throw new Error(`${opts.name} did not answer ${url}/v2/ in time\n${err}${tail(opts.stdoutFile)}`)
      }
      await delay(opts.pollMs ?? 25)
    }
  }
  const pids = () => (exited ? [] : [pid, ...descendants(pid)])
  return { name: opts.name, pid, port: opts.port, host: `127.0.0.1:${opts.port}`, url, stderr: () => err, pids, startupMs, stop }
}

/**
 * Runs a short-lived command to completion; rejects on a non-zero exit.
 * @param {string} command @param {string[]} args
 * `anyExit`: resolve whatever the exit code (`wrk --version` exits 1).
 * @param {{env?: NodeJS.ProcessEnv, timeoutMs?: number, anyExit?: boolean}} [opts]
 * @returns {Promise<{stdout: string, stderr: string}>}
 */
export function run(command, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
    const pid = child.pid
    if (pid !== undefined) live.set(pid, command)
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', c => (stdout += c))
    child.stderr.setEncoding('utf8').on('data', c => (stderr = (stderr + c).slice(-64 * 1024)))
    const timer = setTimeout(() => pid !== undefined && tryKill(pid, 'SIGKILL'), opts.timeoutMs ?? 300_000)
    child.once('error', error => {
      clearTimeout(timer)
      reject(error)
    })
    child.once('close', code => {
      clearTimeout(timer)
      if (pid !== undefined) live.delete(pid)
      if (code === 0 || opts.anyExit) resolve({ stdout, stderr })
      else reject(new Error(`${command} ${args.join(' ')} exited with ${code}: ${stderr.trim()}`))
    })
  })
}
