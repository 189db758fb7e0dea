import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { deepMerge, readYaml, withHttpAddr, writeYaml, type ConfigObject } from './config.js'
import { freePort } from './ports.js'
import { isAddressInUse, spawnServer, type ServerProcess } from './proc.js'
import { tempDir, type Teardown } from './tmp.js'

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))
/** Override to run another build of the CLI (e.g. a packed one). */
export const STEVEDORE_BIN = process.env.STEVEDORE_TEST_BIN ?? join(REPO_ROOT, 'bin/stevedore')

/** A running `node bin/stevedore serve config.yml` on a loopback port. */
export type LogRecord = Record<string, unknown>

export interface StevedoreProc {
  /** http://127.0.0.1:PORT */
  url: string
  /** 127.0.0.1:PORT */
  host: string
  port: number
  pid: number
  /** The config.yml it was started with, and its content. */
  configPath: string
  config: ConfigObject
  /** Its stdout so far: JSON log lines. */
  logs(): string
  /** The stdout lines that parse as JSON objects. */
  logRecords(): LogRecord[]
  stderr(): string
  stop(): Promise<void>
}

export interface StevedoreOptions {
  /** A config.yml to start from; copied, only `http.addr` replaced. */
  configPath?: string
  /**
   * Deep-merged over the `configPath` file's content, or, without one, over a
   * minimal config with filesystem storage in a fresh temp dir.
   */
  config?: ConfigObject
  /** Added to the inherited environment. */
  env?: Record<string, string>
  /** Appended after `serve <config.yml>`. */
  args?: string[]
  startTimeoutMs?: number
}

/**
 * Starts Stevedore from the repository root, waits until `GET /v2/` gets any
 * HTTP answer, and stops it by PID on teardown.
 */
export async function startStevedore(t: Teardown, opts: StevedoreOptions = {}): Promise<StevedoreProc> {
  const dir = await tempDir(t, 'stevedore')
  let base: ConfigObject
  if (opts.configPath !== undefined) {
    base = await readYaml(opts.configPath)
  } else {
    const root = join(dir, 'storage')
    await mkdir(root)
    base = { version: '0.1', log: { level: 'info' }, storage: { filesystem: { rootdirectory: root } } }
  }
  const configPath = join(dir, 'config.yml')

  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const config = withHttpAddr(deepMerge(base, opts.config ?? {}), `127.0.0.1:${port}`)
    await writeYaml(configPath, config)
    const command = stevedoreCommand(['serve', configPath, ...(opts.args ?? [])], { ...process.env, ...opts.env })
    let proc: ServerProcess
    try {
      proc = await spawnServer({
        name: 'stevedore',
        ...command,
        cwd: REPO_ROOT,
        readyUrl: `http://127.0.0.1:${port}/v2/`,
        ready: () => true,
        startTimeoutMs: opts.startTimeoutMs ?? 15_000,
      })
    } catch (error) {
      if (attempt < 3 && isAddressInUse(error)) continue
      throw error
    }
    t.teardown(proc.stop)
    return {
      url: `http://127.0.0.1:${port}`,
      host: `127.0.0.1:${port}`,
      port,
      pid: proc.pid,
      configPath,
      config,
      logs: proc.stdout,
      logRecords: () => parseJsonLines(proc.stdout()),
      stderr: proc.stderr,
      stop: proc.stop,
    }
  }
}

/**
 * `env -u NODE_OPTIONS node bin/stevedore …`: tap's processinfo hook rewrites
 * every child's NODE_OPTIONS to `--import` its loader, and under that loader
 * Node 20 cannot start an extensionless ESM file like `bin/stevedore`
 * (ERR_REQUIRE_CYCLE_MODULE). `env` execs node, so the PID stays node's.
 * A caller's own NODE_OPTIONS is passed on.
 */
export function stevedoreCommand(
  args: string[],
  env: Record<string, string | undefined>,
): { command: string; args: string[]; env: NodeJS.ProcessEnv } {
  const { NODE_OPTIONS: nodeOptions, ...rest } = env
  const keep = nodeOptions !== undefined && !nodeOptions.includes('@tapjs') ? [`NODE_OPTIONS=${nodeOptions}`] : []
  return { command: 'env', args: ['-u', 'NODE_OPTIONS', ...keep, process.execPath, STEVEDORE_BIN, ...args], env: rest }
}

function parseJsonLines(text: string): LogRecord[] {
  const records: LogRecord[] = []
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue
    try {
      const value: unknown = JSON.parse(line)
      if (typeof value === 'object' && value !== null && !Array.isArray(value)) records.push(value as LogRecord)
    } catch {
      // a partial last line, or not JSON
    }
  }
  return records
}
