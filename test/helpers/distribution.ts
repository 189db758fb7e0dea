import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { deepMerge, writeYaml, type ConfigObject } from './config.js'
import { freePort } from './ports.js'
import { isAddressInUse, spawnServer, type ServerProcess } from './proc.js'
import { tempDir, type Teardown } from './tmp.js'

/** A running CNCF Distribution (`docker-registry serve`) on a loopback port. */
export interface Distribution {
  /** http://127.0.0.1:PORT */
  url: string
  /** 127.0.0.1:PORT, for skopeo references */
  host: string
  port: number
  /** storage.filesystem.rootdirectory */
  root: string
  configPath: string
  /** The config as written to `configPath`. */
  config: ConfigObject
  pid: number
  /** stdout (access log) and stderr (its logrus log) so far. */
  logs(): string
  stop(): Promise<void>
}

export interface DistributionOptions {
  /** Storage root; default a fresh temp dir. It is not removed on teardown when given. */
  root?: string
  /** Deep-merged over the default config; `undefined` values delete keys. */
  config?: ConfigObject
  /** A fixed port, e.g. to restart an upstream where a proxy expects it; default a free one. */
  port?: number
  startTimeoutMs?: number
}

export const DISTRIBUTION_BIN = process.env.STEVEDORE_TEST_DISTRIBUTION_BIN ?? 'docker-registry'

/** The harness default: filesystem storage with delete enabled, quiet logs, no debug server. */
export function defaultDistributionConfig(root: string, port: number): ConfigObject {
  return {
    version: '0.1',
    log: { level: 'warn' },
    storage: {
      filesystem: { rootdirectory: root },
      delete: { enabled: true },
      // its startup purge of old uploads walks the whole tree; nothing to purge in a test
      maintenance: { uploadpurging: { enabled: false } },
    },
    // a fixed secret: without one it logs a warning on every start
    http: { addr: `127.0.0.1:${port}`, secret: 'stevedore-test-http-secret' },
  }
}

/**
 * Starts Distribution with its own config.yml and storage root, waits until
 * `GET /v2/` answers 200 or 401, and stops it by PID on teardown.
 */
export async function startDistribution(t: Teardown, opts: DistributionOptions = {}): Promise<Distribution> {
  const dir = await tempDir(t, 'distribution')
  const root = opts.root ?? join(dir, 'storage')
  await mkdir(root, { recursive: true })
  const configPath = join(dir, 'config.yml')

  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await freePort())
    const config = deepMerge(defaultDistributionConfig(root, port), opts.config ?? {})
    await writeYaml(configPath, config)
    let proc: ServerProcess
    try {
      proc = await spawnServer({
        name: 'docker-registry',
        command: DISTRIBUTION_BIN,
        args: ['serve', configPath],
        cwd: dir,
        readyUrl: `http://127.0.0.1:${port}/v2/`,
        ready: status => status === 200 || status === 401,
        startTimeoutMs: opts.startTimeoutMs ?? 15_000,
      })
    } catch (error) {
      if (attempt < 3 && opts.port === undefined && isAddressInUse(error)) continue
      throw error
    }
    t.teardown(proc.stop)
    return {
      url: `http://127.0.0.1:${port}`,
      host: `127.0.0.1:${port}`,
      port,
      root,
      configPath,
      config,
      pid: proc.pid,
      logs: () => `${proc.stdout()}${proc.stderr()}`,
      stop: proc.stop,
    }
  }
}
