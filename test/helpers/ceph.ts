import { execFile } from 'node:child_process'
import { accessSync, constants, readFileSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3'
import { tempDir, type Teardown } from './tmp.js'

/** A one-node Ceph (mon, OSD on memstore, radosgw) answering S3 on a loopback port. */
export interface Ceph {
  /** http://127.0.0.1:PORT */
  endpoint: string
  accessKey: string
  secretKey: string
  region: string
  /** Config, logs, sockets and pid files of the daemons. */
  dir: string
  /** A raw client (path style, us-east-1), for checking what a driver wrote. */
  client: S3Client
  /** Creates a bucket and returns its name. */
  bucket(name: string): Promise<string>
  stop(): Promise<void>
}

export const CEPH_SCRIPT = fileURLToPath(new URL('../../scripts/ceph-s3.sh', import.meta.url))
const COMMANDS = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'ceph', 'ceph-authtool', 'monmaptool']
const INSTALL = 'apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd (or scripts/install-test-deps.sh)'

export class CephMissingError extends Error {
  readonly code = 'HARNESS_CEPH_MISSING'
  constructor(readonly commands: string[]) {
    super(`Ceph not installed: ${commands.join(', ')} not on PATH. Install with: ${INSTALL}`)
  }
}

function onPath(command: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some(dir => {
    if (dir === '') return false
    try {
      accessSync(join(dir, command), constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}

function run(args: string[], timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile('bash', [CEPH_SCRIPT, ...args], { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(Object.assign(new Error(`ceph-s3.sh ${args[0]} failed: ${error.message}\n${stderr}`), { stderr }))
      else resolve({ stdout, stderr })
    })
  })
}

/** Daemons still running; killed if the test process exits without teardown. */
const live = new Set<string>()
process.once('exit', () => {
  for (const dir of live) {
    for (const name of ['rgw', 'osd', 'mon']) {
      try {
        process.kill(Number(readFileSync(join(dir, 'pids', name), 'utf8').trim()), 'SIGKILL')
      } catch {
        // gone already
      }
    }
  }
})

/**
 * Starts a Ceph of its own under a temp dir (scripts/ceph-s3.sh; about 1 s)
 * and stops every daemon by PID on teardown. Its ports are picked by the
 * script; a start that loses a port race is retried in a fresh directory.
 */
export async function startCeph(t: Teardown): Promise<Ceph> {
  const missing = COMMANDS.filter(command => !onPath(command))
  if (missing.length > 0) throw new CephMissingError(missing)
  const root = await tempDir(t, 'ceph')
  let lastError: unknown
  for (let attempt = 1; attempt <= 3; attempt++) {
    const dir = join(root, `try-${attempt}`)
    await mkdir(dir)
    live.add(dir)
    let out: string
    try {
      out = (await run(['start', dir], 120_000)).stdout
    } catch (error) {
      lastError = error
      await run(['stop', dir], 30_000).catch(() => {})
      live.delete(dir)
      continue
    }
    const vars = Object.fromEntries(out.trim().split('\n').map(line => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]))
    const endpoint = vars.ENDPOINT ?? ''
    const accessKey = vars.ACCESS_KEY ?? ''
    const secretKey = vars.SECRET_KEY ?? ''
    const region = vars.REGION ?? 'us-east-1'
    const client = new S3Client({
      endpoint,
      region,
      forcePathStyle: true,
      credentials: { accessKeyId: accessKey, secretAccessKey: secretKey },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    })
    let stopping: Promise<void> | undefined
    const stop = (): Promise<void> => {
      stopping ??= (async () => {
        client.destroy()
        await run(['stop', dir], 60_000).catch(() => {})
        live.delete(dir)
      })()
      return stopping
    }
    t.teardown(stop)
    return {
      endpoint,
      accessKey,
      secretKey,
      region,
      dir,
      client,
      async bucket(name) {
        await client.send(new CreateBucketCommand({ Bucket: name }))
        return name
      },
      stop,
    }
  }
  throw lastError
}
