import { mkdir, mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CommandError, runCommand } from './command.js'
import { removeDir } from './tmp.js'

export const SKOPEO_BIN = process.env.STEVEDORE_TEST_SKOPEO_BIN ?? 'skopeo'

export interface SkopeoResult {
  stdout: string
  stderr: string
}

export interface SkopeoOptions {
  /** Added to the isolated environment. */
  env?: Record<string, string>
  /** Killed (SIGKILL, by PID) after this long; default 120 s. */
  timeoutMs?: number
}

export class SkopeoError extends Error {
  readonly code = 'HARNESS_SKOPEO_FAILED'
  constructor(readonly args: string[], readonly exitCode: number | null, readonly stderr: string) {
    super(`skopeo ${redact(args).join(' ')} exited with ${exitCode}: ${stderr.trim()}`)
  }
}

function redact(args: string[]): string[] {
  return args.map((arg, i) => (/^--(src-|dest-)?creds$/.test(args[i - 1] ?? '') ? '<redacted>' : arg))
}

/**
 * Runs skopeo with nothing from the machine's or the user's container config:
 * HOME, XDG dirs, the auth file and registries.conf all point into a fresh
 * temp dir removed afterwards. Rejects with its stderr on a non-zero exit.
 *
 * As root, containers/image keeps a blob-info cache in
 * /var/lib/containers/cache whatever the environment says: skopeo then runs
 * in a mount namespace of its own where a temp dir is bound over /var/lib,
 * so a test writes nothing outside its temp dirs (`unshare` and `sh` exec
 * skopeo, so the PID killed on a timeout is skopeo's).
 */
export async function skopeo(args: string[], opts: SkopeoOptions = {}): Promise<SkopeoResult> {
  const home = await mkdtemp(join(tmpdir(), 'stevedore-skopeo-'))
  try {
    const env = await isolatedEnv(home)
    return await run(args, { ...env, ...opts.env }, opts.timeoutMs ?? 120_000, home)
  } finally {
    await removeDir(home)
  }
}

/** Binds $1 over /var/lib, then execs the rest. */
const PRIVATE_VAR_LIB = 'mount --bind "$1" /var/lib; shift; exec "$@"'

export type ManifestFormat = 'v2s1' | 'v2s2' | 'oci'

export interface PushOptions extends SkopeoOptions {
  /** Copy every platform of an index (`--all`). */
  all?: boolean
  /** user:password */
  creds?: string
  format?: ManifestFormat
}

/** `oci:<layoutDir>:<tag>` → `docker://<dest>`; `dest` is `host/repo:tag`. */
export function pushLayout(layoutDir: string, tag: string, dest: string, opts: PushOptions = {}): Promise<SkopeoResult> {
  const args = ['--insecure-policy', 'copy', '--dest-tls-verify=false']
  if (opts.all === true) args.push('--all')
  if (opts.creds !== undefined) args.push('--dest-creds', opts.creds)
  if (opts.format !== undefined) args.push('--format', opts.format)
  args.push(ociRef(layoutDir, tag), `docker://${dest}`)
  return skopeo(args, opts)
}

export interface PullOptions extends SkopeoOptions {
  all?: boolean
  creds?: string
}

/** `docker://<src>` → `oci:<layoutDir>:<tag>`; `src` is `host/repo:tag` or `host/repo@digest`. */
export function pullToLayout(src: string, layoutDir: string, tag: string, opts: PullOptions = {}): Promise<SkopeoResult> {
  const args = ['--insecure-policy', 'copy', '--src-tls-verify=false']
  if (opts.all === true) args.push('--all')
  if (opts.creds !== undefined) args.push('--src-creds', opts.creds)
  args.push(`docker://${src}`, ociRef(layoutDir, tag))
  return skopeo(args, opts)
}

function ociRef(layoutDir: string, tag: string): string {
  // skopeo splits `oci:DIR:TAG` at the first colon after `oci:`
  if (layoutDir.includes(':')) throw new Error(`skopeo cannot address an OCI layout whose path has a colon: ${layoutDir}`)
  return `oci:${layoutDir}:${tag}`
}

async function isolatedEnv(home: string): Promise<NodeJS.ProcessEnv> {
  const runtime = join(home, 'run')
  const config = join(home, 'config')
  await mkdir(runtime, { mode: 0o700 })
  await mkdir(join(config, 'containers'), { recursive: true })
  const authFile = join(home, 'auth.json')
  const registriesConf = join(config, 'containers/registries.conf')
  await writeFile(authFile, '{"auths":{}}\n')
  await writeFile(registriesConf, 'unqualified-search-registries = []\n')
  await writeFile(join(config, 'containers/containers.conf'), '')
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    TMPDIR: home,
    XDG_RUNTIME_DIR: runtime,
    XDG_CONFIG_HOME: config,
    DOCKER_CONFIG: join(home, 'docker'),
    REGISTRY_AUTH_FILE: authFile,
    CONTAINERS_REGISTRIES_CONF: registriesConf,
    CONTAINERS_CONF: join(config, 'containers/containers.conf'),
  }
}

async function run(args: string[], env: NodeJS.ProcessEnv, timeoutMs: number, home: string): Promise<SkopeoResult> {
  try {
    if (process.getuid?.() !== 0) return await runCommand(SKOPEO_BIN, args, { env, timeoutMs })
    const varLib = join(home, 'var-lib')
    await mkdir(varLib)
    return await runCommand('unshare', ['-m', '--propagation', 'private', '--', 'sh', '-ec', PRIVATE_VAR_LIB, 'sh', varLib, SKOPEO_BIN, ...args], {
      env,
      timeoutMs,
      display: ['skopeo', ...args],
    })
  } catch (err) {
    if (err instanceof CommandError) throw new SkopeoError(args, err.exitCode, err.stderr)
    throw err
  }
}
