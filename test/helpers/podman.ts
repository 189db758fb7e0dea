/**
 * podman 4.3 (Debian's `podman`) run as root with nothing of the machine's
 * container configuration or storage, for pulls through a mirror. Measured
 * on these machines, what that takes:
 *
 * - `--root`, `--runroot`, `--storage-driver vfs` (no overlay mounts) and
 *   `CONTAINERS_STORAGE_CONF` naming our own storage.conf;
 * - `CONTAINERS_CONF` naming our own containers.conf (alone: with it set the
 *   machine's containers.conf and its .d dirs are not read) with
 *   `cgroup_manager = "cgroupfs"`, `events_logger = "file"` and its log
 *   file, `tmp_dir`, `image_copy_tmp_dir` (else /var/tmp), `lock_type =
 *   "file"` (else a shared-memory lock, /dev/shm/libpod_lock, shared with the
 *   machine's podman), and `network_config_dir` (else podman creates
 *   /etc/cni/net.d/cni.lock even for a pull);
 * - `CONTAINERS_REGISTRIES_CONF` for the mirrors, `REGISTRY_AUTH_FILE`
 *   (else /run/containers/0/auth.json), `pull --signature-policy` with a
 *   policy that accepts anything (the machine's policy.json may not), and
 *   HOME, XDG_RUNTIME_DIR, XDG_CONFIG_HOME and TMPDIR in the temp dir;
 * - a mount namespace of its own (`unshare -m --propagation private`) in
 *   which a temp dir is bound over /var/lib: as root, containers/image keeps
 *   its blob-info cache in /var/lib/containers/cache whatever the flags say
 *   (podman has no setting for it), and over /etc/containers/registries.conf.d
 *   and /etc/containers/registries.d an empty dir, so drop-ins of the
 *   machine cannot add or replace mirrors. `unshare` and `sh` exec podman:
 *   the PID is podman's.
 *
 * With `[[registry]] prefix = "<registry>"`, `location` rewrites where the
 * registry itself is: pointing it at a port nothing answers makes a pull the
 * mirrors cannot serve fail (after podman's three retries, about 3 s)
 * instead of reaching the real registry. A mirror `host:port/prefix` gets
 * requests for `/v2/prefix/<name>/…`; a Docker Hub name keeps its `library/`.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { bareEnv, runCommand, type CommandResult } from './command.js'
import { tempDir, type Teardown } from './tmp.js'

export const PODMAN_BIN = process.env.STEVEDORE_TEST_PODMAN_BIN ?? 'podman'

/** Hidden from podman in its mount namespace (bound over by a temp dir), if present. */
const HIDDEN_DIRS = ['/etc/containers/registries.conf.d', '/etc/containers/registries.d']

// $1: the temp dir; the rest: the podman command line
const NAMESPACE_SCRIPT = [
  'mount --bind "$1/var-lib" /var/lib',
  `for d in ${HIDDEN_DIRS.join(' ')}; do if [ -d "$d" ]; then mount --bind "$1/empty" "$d"; fi; done`,
  'shift',
  'exec "$@"',
].join('\n')

export interface RegistryMirrors {
  /** The names it applies to, e.g. `docker.io`. */
  prefix: string
  /** Where the registry itself is taken to be (after every mirror failed). */
  location: string
  /** `host:port[/path]`, tried in order, all plain HTTP. */
  mirrors: string[]
}

export interface PodmanImage {
  /** The image ID: the config blob's hex digest. */
  id: string
  /** The manifest digest it was pulled by. */
  digest: string
  repoTags: string[]
  repoDigests: string[]
}

export interface Podman {
  dir: string
  /** Replaces the registries.conf podman reads. */
  writeRegistriesConf(registries: RegistryMirrors[]): Promise<void>
  /** `podman <global flags> <args…>` in its namespace, with its environment. */
  run(args: string[], timeoutMs?: number): Promise<CommandResult>
  /** `podman pull --signature-policy <accept anything> <ref>`. */
  pull(ref: string): Promise<CommandResult>
  /** `podman image inspect <ref>`. */
  inspect(ref: string): Promise<PodmanImage>
}

export async function podmanSandbox(t: Teardown): Promise<Podman> {
  if (process.getuid?.() !== 0) throw new Error('podmanSandbox: runs podman as root in a mount namespace of its own; this test process is not root')
  const dir = await tempDir(t, 'podman')
  const path = (name: string): string => join(dir, name)
  for (const sub of ['root', 'runroot', 'tmp', 'run', 'home', 'config', 'cni', 'empty', 'var-lib/containers']) {
    await mkdir(path(sub), { recursive: true, mode: 0o700 })
  }
  const q = (value: string): string => JSON.stringify(value)
  await writeFile(path('storage.conf'), ['[storage]', 'driver = "vfs"', `graphroot = ${q(path('root'))}`, `runroot = ${q(path('runroot'))}`, ''].join('\n'))
  await writeFile(
    path('containers.conf'),
    [
      '[engine]',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `events_logfile_path = ${q(path('tmp/events.log'))}`,
      `tmp_dir = ${q(path('tmp'))}`,
      `image_copy_tmp_dir = ${q(path('tmp'))}`,
      'lock_type = "file"',
      '[network]',
      'network_backend = "cni"',
      `network_config_dir = ${q(path('cni'))}`,
      '',
    ].join('\n'),
  )
  await writeFile(path('policy.json'), '{"default":[{"type":"insecureAcceptAnything"}]}\n')
  await writeFile(path('auth.json'), '{"auths":{}}\n')
  const registriesConf = path('registries.conf')
  await writeFile(registriesConf, 'unqualified-search-registries = []\n')

  const env = bareEnv({
    HOME: path('home'),
    TMPDIR: path('tmp'),
    XDG_RUNTIME_DIR: path('run'),
    XDG_CONFIG_HOME: path('config'),
    CONTAINERS_CONF: path('containers.conf'),
    CONTAINERS_STORAGE_CONF: path('storage.conf'),
    CONTAINERS_REGISTRIES_CONF: registriesConf,
    REGISTRY_AUTH_FILE: path('auth.json'),
  })
  const globals = [
    '--root', path('root'),
    '--runroot', path('runroot'),
    '--storage-driver', 'vfs',
    '--tmpdir', path('tmp'),
    '--cgroup-manager', 'cgroupfs',
    '--events-backend', 'file',
    '--network-config-dir', path('cni'),
  ]
  const run = (args: string[], timeoutMs = 60_000): Promise<CommandResult> =>
    runCommand('unshare', ['-m', '--propagation', 'private', '--', 'sh', '-ec', NAMESPACE_SCRIPT, 'sh', dir, PODMAN_BIN, ...globals, ...args], {
      env,
      cwd: dir,
      timeoutMs,
      display: [PODMAN_BIN, ...args],
    })

  return {
    dir,
    writeRegistriesConf: registries => writeFile(registriesConf, registriesConfToml(registries)),
    run,
    pull: ref => run(['pull', '--signature-policy', path('policy.json'), ref]),
    inspect: async ref => {
      const [image] = JSON.parse((await run(['image', 'inspect', ref])).stdout) as Array<{
        Id: string
        Digest: string
        RepoTags: string[] | null
        RepoDigests: string[] | null
      }>
      if (image === undefined) throw new Error(`podman image inspect ${ref}: no image`)
      return { id: image.Id, digest: image.Digest, repoTags: image.RepoTags ?? [], repoDigests: image.RepoDigests ?? [] }
    },
  }
}

/** registries.conf (v2) with no search registries: only fully qualified names. */
export function registriesConfToml(registries: RegistryMirrors[]): string {
  const q = (value: string): string => JSON.stringify(value)
  const lines = ['unqualified-search-registries = []', 'short-name-mode = "disabled"']
  for (const registry of registries) {
    lines.push('', '[[registry]]', `prefix = ${q(registry.prefix)}`, `location = ${q(registry.location)}`, 'insecure = true')
    for (const mirror of registry.mirrors) lines.push('[[registry.mirror]]', `location = ${q(mirror)}`, 'insecure = true')
  }
  return `${lines.join('\n')}\n`
}
