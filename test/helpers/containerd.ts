/**
 * A private containerd 1.6 (Debian's `containerd`) for pulls through a
 * mirror, sharing nothing with the machine's own: its root, state, sockets
 * and temp dir live in a fresh temp dir, /etc/containerd is never read
 * (`--config` names ours), and it runs under `unshare -m --propagation
 * private`, so the bind mounts it makes to unpack layers stay in its own
 * mount namespace and vanish with it. Stopped by PID on teardown
 * (`unshare` execs containerd: the PID is containerd's).
 *
 * Only what a pull needs is loaded: content, images, leases, the `native`
 * snapshotter and the walking differ. Disabled: CRI; the `opt` plugin (with
 * a config that does not set its path it creates /opt/containerd on the
 * machine); the other snapshotters; runtimes, tasks and the cgroups monitor.
 * ctr defaults to the overlayfs snapshotter, so pulls pass `--snapshotter native`.
 *
 * Mirrors come from a hosts dir (`--hosts-dir DIR`, `DIR/<registry>/hosts.toml`).
 * ctr 1.6 needs no `--plain-http` for a mirror written `http://…` in
 * hosts.toml: the scheme comes from the URL. containerd adds `?ns=<registry>`
 * to every request it sends to a mirror; a mirror URL with a path needs
 * `override_path = true`, else containerd appends `/v2` to it. It tries the
 * hosts in order, on a connection error or a 404 the next, and last the
 * `server`: point that at a port nothing answers so that a pull the mirror
 * cannot serve fails instead of reaching the real registry.
 */
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { bareEnv, runCommand, type CommandResult } from './command.js'
import { freePort } from './ports.js'
import { isAddressInUse, spawnServer, type ServerProcess } from './proc.js'
import { removeDir, tempDir, type Teardown } from './tmp.js'

export const CONTAINERD_BIN = process.env.STEVEDORE_TEST_CONTAINERD_BIN ?? 'containerd'
export const CTR_BIN = process.env.STEVEDORE_TEST_CTR_BIN ?? 'ctr'

/** A unix socket path must fit in sun_path (108 bytes), with `.ttrpc` appended for the second socket. */
const MAX_SOCKET_DIR = 80

const DISABLED_PLUGINS = [
  'io.containerd.grpc.v1.cri',
  'io.containerd.internal.v1.opt',
  'io.containerd.internal.v1.restart',
  'io.containerd.internal.v1.tracing',
  'io.containerd.tracing.processor.v1.otlp',
  'io.containerd.snapshotter.v1.aufs',
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.overlayfs',
  'io.containerd.snapshotter.v1.zfs',
  'io.containerd.runtime.v1.linux',
  'io.containerd.runtime.v2.task',
  'io.containerd.monitor.v1.cgroups',
  'io.containerd.service.v1.tasks-service',
  'io.containerd.grpc.v1.tasks',
]

export interface Containerd {
  /** The gRPC socket, for `ctr --address`. */
  address: string
  /** The temp dir holding its root, state and config. */
  dir: string
  pid: number
  /** Its log (stderr) so far. */
  logs(): string
  /** `ctr --address <socket> <args…>`, with a bare environment. */
  ctr(args: string[], timeoutMs?: number): Promise<CommandResult>
  /** `ctr images pull --snapshotter native --hosts-dir <hostsDir> <ref>`: fetches and unpacks. */
  pull(ref: string, hostsDir: string): Promise<CommandResult>
  /** `ctr images ls`: image name → target digest. */
  images(): Promise<Map<string, string>>
  /** `ctr content ls -q`: every digest in its content store. */
  content(): Promise<Set<string>>
  stop(): Promise<void>
}

/** Starts containerd; resolves once `ctr version` gets an answer from it. */
export async function startContainerd(t: Teardown): Promise<Containerd> {
  if (process.getuid?.() !== 0) throw new Error('startContainerd: containerd needs root (it mounts and runs unshare -m); this test process is not root')
  const dir = await tempDir(t, 'containerd')
  let socketDir = dir
  if (dir.length > MAX_SOCKET_DIR) {
    socketDir = await mkdtemp('/tmp/sdc-')
    t.teardown(() => removeDir(socketDir))
  }
  const address = join(socketDir, 'containerd.sock')
  const configPath = join(dir, 'config.toml')
  const env = bareEnv({ HOME: dir, TMPDIR: dir })
  await mkdir(join(dir, 'root'))
  await mkdir(join(dir, 'state'))

  for (let attempt = 1; ; attempt++) {
    // containerd's metrics endpoint is plain HTTP: it tells spawnServer when the daemon is up
    const metricsPort = await freePort()
    await writeFile(configPath, containerdConfig(dir, address, metricsPort))
    let proc: ServerProcess
    try {
      proc = await spawnServer({
        name: 'containerd',
        command: 'unshare',
        args: ['-m', '--propagation', 'private', CONTAINERD_BIN, '--config', configPath],
        cwd: dir,
        env,
        readyUrl: `http://127.0.0.1:${metricsPort}/v1/metrics`,
        ready: status => status === 200,
        startTimeoutMs: 15_000,
      })
    } catch (error) {
      if (attempt < 3 && isAddressInUse(error)) continue
      throw error
    }
    t.teardown(proc.stop)
    const ctr = (args: string[], timeoutMs = 60_000): Promise<CommandResult> =>
      runCommand(CTR_BIN, ['--address', address, ...args], { env, cwd: dir, timeoutMs })
    // the metrics listener opens a moment before the gRPC socket
    const deadline = Date.now() + 10_000
    for (;;) {
      try {
        await ctr(['version'], 5000)
        break
      } catch (error) {
        if (proc.exited() || Date.now() > deadline) {
          await proc.stop()
          throw new Error(`containerd did not answer on ${address}: ${(error as Error).message}\n--- its log ---\n${proc.stderr()}`)
        }
        await delay(50)
      }
    }
    return {
      address,
      dir,
      pid: proc.pid,
      logs: proc.stderr,
      ctr,
      pull: (ref, hostsDir) => ctr(['images', 'pull', '--snapshotter', 'native', '--hosts-dir', hostsDir, ref]),
      images: async () => {
        const { stdout } = await ctr(['images', 'ls'])
        // REF TYPE DIGEST SIZE PLATFORMS LABELS; names and digests hold no spaces
        const images = new Map<string, string>()
        for (const line of stdout.split('\n').slice(1)) {
          const [ref, , digest] = line.trim().split(/\s+/)
          if (ref !== undefined && digest !== undefined) images.set(ref, digest)
        }
        return images
      },
      content: async () => new Set((await ctr(['content', 'ls', '-q'])).stdout.split('\n').map(line => line.trim()).filter(Boolean)),
      stop: proc.stop,
    }
  }
}

function containerdConfig(dir: string, address: string, metricsPort: number): string {
  const q = (value: string): string => JSON.stringify(value)
  return [
    'version = 2',
    `root = ${q(join(dir, 'root'))}`,
    `state = ${q(join(dir, 'state'))}`,
    `temp = ${q(dir)}`,
    `disabled_plugins = [${DISABLED_PLUGINS.map(q).join(', ')}]`,
    '[grpc]',
    `  address = ${q(address)}`,
    '[ttrpc]',
    `  address = ${q(`${address}.ttrpc`)}`,
    '[debug]',
    '  address = ""',
    '  level = "info"',
    '[metrics]',
    `  address = ${q(`127.0.0.1:${metricsPort}`)}`,
    '',
  ].join('\n')
}

export interface MirrorHost {
  /** e.g. `http://127.0.0.1:PORT`, or `http://127.0.0.1:PORT/v2/ghcr.io` with `overridePath`. */
  url: string
  /** The URL's path replaces `/v2` instead of preceding it. */
  overridePath?: boolean
  /** Sent with every request to this host (`[host."…".header]`): how hosts.toml carries credentials. */
  headers?: Record<string, string>
}

export interface RegistryHosts {
  /** Where containerd goes after every mirror failed. */
  server: string
  mirrors: MirrorHost[]
}

/** `hosts.toml` for one registry: pull and resolve through the mirrors, in order, then `server`. */
export function hostsToml(hosts: RegistryHosts): string {
  const q = (value: string): string => JSON.stringify(value)
  const lines = [`server = ${q(hosts.server)}`]
  for (const mirror of hosts.mirrors) {
    lines.push('', `[host.${q(mirror.url)}]`, '  capabilities = ["pull", "resolve"]')
    if (mirror.overridePath === true) lines.push('  override_path = true')
    if (mirror.headers !== undefined) {
      lines.push(`  [host.${q(mirror.url)}.header]`)
      for (const [name, value] of Object.entries(mirror.headers)) lines.push(`    ${name} = [${q(value)}]`)
    }
  }
  return `${lines.join('\n')}\n`
}

/** Writes `dir/<registry>/hosts.toml` for each registry, for `ctr … --hosts-dir dir`. */
export async function writeHostsDir(dir: string, registries: Record<string, RegistryHosts>): Promise<void> {
  for (const [registry, hosts] of Object.entries(registries)) {
    await mkdir(join(dir, registry), { recursive: true })
    await writeFile(join(dir, registry, 'hosts.toml'), hostsToml(hosts))
  }
}
