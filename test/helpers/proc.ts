import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { setTimeout as delay } from 'node:timers/promises'

/** A long-running child process that answers HTTP, stopped by PID. */
export interface ServerProcess {
  readonly pid: number
  /** Everything written to stdout so far (capped: oldest bytes dropped). */
  stdout(): string
  stderr(): string
  exited(): boolean
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process exited. Never throws. */
  stop(): Promise<void>
}

export interface SpawnServerOptions {
  /** Used in error messages. */
  name: string
  command: string
  args: string[]
  cwd?: string
  env?: NodeJS.ProcessEnv
  /** Polled with GET until `ready(status)` says so. */
  readyUrl: string
  ready(status: number): boolean
  startTimeoutMs?: number
  graceMs?: number
}

export class ServerStartError extends Error {
  readonly code = 'HARNESS_SERVER_START'
  constructor(message: string, readonly output: string, readonly exitCode: number | null) {
    super(`${message}\n--- output ---\n${output}`)
  }
}

const MAX_CAPTURE = 16 * 1024 * 1024

/** Children still running; killed if the test process exits without teardown. */
const live = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of live) if (child.pid !== undefined) tryKill(child.pid, 'SIGKILL')
})

export async function spawnServer(opts: SpawnServerOptions): Promise<ServerProcess> {
  const child = spawn(opts.command, opts.args, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const out = capture(child.stdout)
  const err = capture(child.stderr)
  const closed = once(child, 'close').then(() => undefined, () => undefined)
  let exitCode: number | null = null
  let exitSignal: NodeJS.Signals | null = null
  let hasExited = false
  const exit = new Promise<void>(resolve => {
    child.once('exit', (code, signal) => {
      hasExited = true
      exitCode = code
      exitSignal = signal
      live.delete(child)
      resolve()
    })
  })
  if (child.pid === undefined) {
    const [error] = (await once(child, 'error')) as [Error]
    throw new ServerStartError(`${opts.name}: cannot start ${opts.command}: ${error.message}`, '', null)
  }
  child.on('error', () => {}) // a failed kill of an already-gone child; exit handles the rest
  live.add(child)
  const pid = child.pid
  const graceMs = opts.graceMs ?? 5000

  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (hasExited) return
      tryKill(pid, 'SIGTERM')
      const gone = await Promise.race([exit.then(() => true), delay(graceMs, false, { ref: false })])
      if (!gone) {
        tryKill(pid, 'SIGKILL')
        await exit
      }
    })()
    return stopping
  }
  const output = (): string => `[stdout]\n${out()}\n[stderr]\n${err()}`

  const deadline = Date.now() + (opts.startTimeoutMs ?? 15_000)
  let last = 'no answer yet'
  for (;;) {
    if (hasExited) {
      await Promise.race([closed, delay(1000, undefined, { ref: false })])
      const how = exitSignal === null ? `with code ${exitCode}` : `on ${exitSignal}`
      throw new ServerStartError(`${opts.name} exited ${how} before answering ${opts.readyUrl}`, output(), exitCode)
    }
    try {
      const res = await fetch(opts.readyUrl, { signal: AbortSignal.timeout(2000) })
      await res.body?.cancel()
      if (opts.ready(res.status)) break
      last = `HTTP ${res.status}`
    } catch (error) {
      last = error instanceof Error ? `${error.message} ${String(error.cause ?? '')}` : String(error)
    }
    if (Date.now() > deadline) {
      await stop()
      throw new ServerStartError(`${opts.name} did not answer ${opts.readyUrl} in time (last: ${last})`, output(), exitCode)
    }
    await Promise.race([delay(25), exit])
  }
  return { pid, stdout: out, stderr: err, exited: () => hasExited, stop }
}

/** True if the start failure looks like a lost race for a free port. */
export function isAddressInUse(error: unknown): boolean {
  return error instanceof ServerStartError && /address already in use|EADDRINUSE/i.test(error.output)
}

function tryKill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal)
  } catch {
    // already gone
  }
}

function capture(stream: NodeJS.ReadableStream): () => string {
  const chunks: Buffer[] = []
  let size = 0
  stream.on('data', (chunk: Buffer) => {
    chunks.push(chunk)
    size += chunk.length
    while (size > MAX_CAPTURE && chunks.length > 1) size -= chunks.shift()?.length ?? 0
  })
  return () => Buffer.concat(chunks).toString('utf8')
}
