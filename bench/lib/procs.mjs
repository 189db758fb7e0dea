/**
 * Child processes and temp dirs of one benchmark run. Everything started or
 * created here is registered, and removed by PID / path when the run ends,
 * fails, or is interrupted (Ctrl-C, SIGTERM): nothing is left behind.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'

/** @type {Map<number, string>} pid → name, for children still running */
const live = new Map()
/** @type {Set<string>} */
const dirs = new Set()

/** @param {string} label */
export function tempDir(label) {
  const dir = mkdtempSync(join(tmpdir(), `stevedore-bench-${label}-`))
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

/** Synchronous last resort: SIGKILL every child by PID, remove every temp dir. */
export function cleanupNow() {
  for (const pid of live.keys()) tryKill(pid, 'SIGKILL')
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
 * @property {() => Promise<void>} stop SIGTERM, SIGKILL after 3 s; resolves once gone
 */

/**
 * Starts a long-running server on `port` and waits until `GET /v2/` answers.
 * `onStdoutLine` sees each stdout line (the access log of Distribution).
 * @param {{name: string, command: string, args: string[], port: number, cwd?: string,
 *   onStdoutLine?: (line: string) => void, startTimeoutMs?: number}} opts
 * @returns {Promise<Server>}
 */
export async function startServer(opts) {
  const child = spawn(opts.command, opts.args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  if (child.pid === undefined) throw new Error(`${opts.name}: cannot start ${opts.command}`)
  const pid = child.pid
  live.set(pid, opts.name)
  let err = ''
  let partial = ''
  child.stderr.setEncoding('utf8').on('data', chunk => {
    err = (err + chunk).slice(-64 * 1024)
  })
  child.stdout.setEncoding('utf8').on('data', chunk => {
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
    if (exited) return
    tryKill(pid, 'SIGTERM')
    if (!(await Promise.race([exit.then(() => true), delay(3000, false)]))) {
      tryKill(pid, 'SIGKILL')
      await exit
    }
  }
  const url = `http://127.0.0.1:${opts.port}`
  const deadline = Date.now() + (opts.startTimeoutMs ?? 15_000)
  for (;;) {
    if (exited) throw new Error(`${opts.name} exited before answering ${url}/v2/\n${err}`)
    try {
      const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(2000) })
      await res.body?.cancel()
      break
    } catch {
      if (Date.now() > deadline) {
        await stop()
        throw new Error(`${opts.name} did not answer ${url}/v2/ in time\n${err}`)
      }
      await delay(25)
    }
  }
  return { name: opts.name, pid, port: opts.port, host: `127.0.0.1:${opts.port}`, url, stderr: () => err, stop }
}

/**
 * Runs a short-lived command to completion; rejects on a non-zero exit.
 * @param {string} command @param {string[]} args
 * @param {{env?: NodeJS.ProcessEnv, timeoutMs?: number}} [opts]
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
      if (code === 0) resolve({ stdout, stderr })
      else reject(new Error(`${command} ${args.join(' ')} exited with ${code}: ${stderr.trim()}`))
    })
  })
}
