/** Runs a short-lived tool (ctr, podman) to completion, killed by PID if it overstays. */
import { spawn } from 'node:child_process'

export interface CommandResult {
  stdout: string
  stderr: string
}

export interface CommandOptions {
  /** The whole environment: nothing is inherited. */
  env: NodeJS.ProcessEnv
  cwd?: string
  /** SIGKILL (by PID) after this long; default 60 s. */
  timeoutMs?: number
  /** The command line to show in errors, when the real one wraps it (default: command and args). */
  display?: string[]
}

export class CommandError extends Error {
  readonly code = 'HARNESS_COMMAND_FAILED'
  constructor(readonly commandLine: string[], readonly exitCode: number | null, readonly stdout: string, readonly stderr: string) {
    super(`${commandLine.join(' ')} exited with ${exitCode}:\n${stderr.trim()}${stdout.trim() === '' ? '' : `\n--- stdout ---\n${stdout.trim()}`}`)
  }
}

/** Resolves with the output of a zero exit; rejects with a CommandError carrying both streams otherwise. */
export function runCommand(command: string, args: string[], opts: CommandOptions): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: opts.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    const stdout: Buffer[] = []
    const stderr: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk))
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk))
    const timeoutMs = opts.timeoutMs ?? 60_000
    const timer = setTimeout(() => {
      if (child.pid !== undefined && child.exitCode === null) {
        try {
          process.kill(child.pid, 'SIGKILL')
        } catch {
          // exited meanwhile
        }
      }
      stderr.push(Buffer.from(`\n[harness] killed after ${timeoutMs} ms`))
    }, timeoutMs)
    child.once('error', error => {
      clearTimeout(timer)
      reject(error)
    })
    child.once('close', code => {
      clearTimeout(timer)
      const out = Buffer.concat(stdout).toString('utf8')
      const err = Buffer.concat(stderr).toString('utf8')
      if (code === 0) resolve({ stdout: out, stderr: err })
      else reject(new CommandError(opts.display ?? [command, ...args], code, out, err))
    })
  })
}

/** PATH and nothing else from this process: no proxy variables, no CONTAINERD_*, STORAGE_* or REGISTRY_* settings. */
export function bareEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...extra }
}
