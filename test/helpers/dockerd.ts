/**
 * A private dockerd 20.10 (Debian's `docker.io`) for pulls, logins and
 * mirrors, sharing nothing with the machine's own Docker. Measured on these
 * machines, what that takes:
 *
 * - a mount namespace of its own (`unshare -m --propagation private`, which
 *   a shell then execs into dockerd: the PID is dockerd's), in which
 *   - a tmpfs covers /run: dockerd looks there for a running containerd
 *     (/run/containerd/containerd.sock) and systemd (/run/systemd/system);
 *     seeing neither, it starts its own containerd under `--exec-root` and
 *     uses the cgroupfs driver;
 *   - an empty temp dir covers /etc/docker (its daemon.json, certs.d and
 *     plugins are the machine's) and /opt: the containerd that dockerd
 *     starts loads the `opt` plugin, which creates /opt/containerd, and
 *     dockerd has no setting that reaches that plugin's config;
 *   - a copy of /etc/hosts maps Docker Hub's names to 127.0.0.1 (nothing
 *     listens on 443 on these machines): a pull the mirrors cannot serve,
 *     which dockerd then tries at registry-1.docker.io, fails at once with
 *     "connection refused" instead of reaching the real Docker Hub;
 * - its own `--config-file` (whose `deprecated-key-path` moves the trust
 *   key out of /etc/docker/key.json: 20.10 has it as a config key, not a
 *   flag), `--data-root`, `--exec-root`, `--pidfile` and `-H unix://…`
 *   socket, all in a temp dir;
 * - `--storage-driver vfs` (no overlay mounts), `--bridge=none`,
 *   `--iptables=false`, `--ip6tables=false` and `--ip-forward=false` (else
 *   it turns on net.ipv4.ip_forward for the whole machine);
 * - `--metrics-addr 127.0.0.1:PORT` (a read-only Prometheus endpoint,
 *   no experimental flag needed in 20.10): plain HTTP that tells
 *   spawnServer the daemon is up, as containerd's does in containerd.ts; the
 *   API itself answers on the unix socket only, never on TCP.
 *
 * The CLI runs with `DOCKER_CONFIG` and `HOME` in the temp dir, so
 * `docker login` writes its credentials there and never to ~/.docker.
 * 127.0.0.0/8 is an insecure (plain HTTP) registry by default.
 *
 * Stopped by PID on teardown: SIGTERM, and dockerd stops its containerd;
 * should dockerd have needed a SIGKILL, that containerd is then stopped by
 * the PID in its pid file (checked against its command line first).
 */
import { constants } from 'node:fs'
import { access, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { delimiter, join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { bareEnv, runCommand, type CommandResult } from './command.js'
import { freePort } from './ports.js'
import { isAddressInUse, spawnServer, type ServerProcess } from './proc.js'
import { removeDir, tempDir, type Teardown } from './tmp.js'

export const DOCKERD_BIN = process.env.STEVEDORE_TEST_DOCKERD_BIN ?? 'dockerd'
/** The CLI of the same package; the docker 28 CLI in /usr/local/bin also works (it negotiates API 1.41). */
export const DOCKER_BIN = process.env.STEVEDORE_TEST_DOCKER_BIN ?? '/usr/bin/docker'

/** Names Docker Hub is reached by; they resolve to 127.0.0.1 inside the namespace. */
const DOCKER_HUB_NAMES = ['registry-1.docker.io', 'index.docker.io', 'registry.docker.io', 'auth.docker.io', 'docker.io', 'production.cloudflare.docker.com']

/** The longest socket dockerd's containerd makes is `<exec-root>/containerd/containerd.sock.ttrpc`; sun_path holds 108 bytes. */
const MAX_SOCKET_DIR = 60

// $1: the temp dir; the rest: the dockerd command line
const NAMESPACE_SCRIPT = [
  'mount -t tmpfs -o mode=0755 tmpfs /run',
  'if [ -d /etc/docker ]; then mount --bind "$1/empty-etc" /etc/docker; fi',
  'if [ -d /opt ]; then mount --bind "$1/empty-opt" /opt; fi',
  'mount --bind "$1/hosts" /etc/hosts',
  'shift',
  'exec "$@"',
].join('\n')

export interface DockerdOptions {
  /** `--registry-mirror` URLs, e.g. `http://127.0.0.1:PORT` (a root URL: dockerd ignores a path). Docker Hub pulls only. */
  mirrors?: string[]
  /** `--insecure-registry` entries beyond the built-in 127.0.0.0/8. */
  insecureRegistries?: string[]
  startTimeoutMs?: number
}

export interface DockerImage {
  /** `sha256:<config blob digest>` */
  id: string
  repoTags: string[]
  /** `name@sha256:<manifest digest>` */
  repoDigests: string[]
}

export interface Dockerd {
  /** The temp dir holding its data, config and the CLI's config. */
  dir: string
  /** `unix://…`, for `docker -H`. */
  host: string
  /** The CLI's DOCKER_CONFIG: `config.json` there holds what `docker login` stored. */
  configDir: string
  pid: number
  /** Its log (stderr) so far. */
  logs(): string
  /** `docker -H <socket> <args…>` with a bare environment and our DOCKER_CONFIG. */
  docker(args: string[], opts?: { env?: Record<string, string>; timeoutMs?: number }): Promise<CommandResult>
  /** `docker login --password-stdin`; the password never appears on a command line. */
  login(registry: string, user: string, password: string): Promise<CommandResult>
  pull(ref: string): Promise<CommandResult>
  inspect(ref: string): Promise<DockerImage>
  /** The CLI's config.json, parsed. */
  cliConfig(): Promise<{ auths?: Record<string, { auth?: string }> }>
  stop(): Promise<void>
}

/** Starts dockerd; resolves once `docker version` gets an answer from it. */
export async function startDockerd(t: Teardown, opts: DockerdOptions = {}): Promise<Dockerd> {
  if (process.getuid?.() !== 0) throw new Error('startDockerd: dockerd needs root (it runs in a mount namespace of its own); this test process is not root')
  for (const [bin, what] of [[DOCKERD_BIN, 'dockerd'], [DOCKER_BIN, 'the docker CLI']] as const) {
    if (!(await executable(bin))) {
      throw new Error(`startDockerd: ${what} (${bin}) not found: install Debian's docker.io (scripts/install-test-deps.sh), or set STEVEDORE_TEST_DOCKERD_BIN / STEVEDORE_TEST_DOCKER_BIN`)
    }
  }
  let dir = await tempDir(t, 'dockerd')
  if (dir.length > MAX_SOCKET_DIR) {
    dir = await mkdtemp('/tmp/sdd-')
    const short = dir
    t.teardown(() => removeDir(short))
  }
  const path = (name: string): string => join(dir, name)
  for (const sub of ['data', 'exec', 'empty-etc', 'empty-opt', 'home', 'cli']) await mkdir(path(sub), { mode: 0o700 })
  const machineHosts = await readFile('/etc/hosts', 'utf8').catch(() => '127.0.0.1 localhost\n')
  await writeFile(path('hosts'), `${machineHosts.trimEnd()}\n# stevedore test: no real Docker Hub\n127.0.0.1 ${DOCKER_HUB_NAMES.join(' ')}\n`)
  await writeFile(path('daemon.json'), `${JSON.stringify({ 'deprecated-key-path': path('key.json') })}\n`)
  const socket = path('docker.sock')
  const host = `unix://${socket}`
  const daemonEnv = bareEnv({ HOME: path('home'), TMPDIR: path('data') })
  const cliEnv = bareEnv({ HOME: path('home'), DOCKER_CONFIG: path('cli') })

  for (let attempt = 1; ; attempt++) {
    const metricsPort = await freePort()
    const args = [
      '--config-file', path('daemon.json'),
      '--data-root', path('data'),
      '--exec-root', path('exec'),
      '--pidfile', path('docker.pid'),
      '--host', host,
      '--metrics-addr', `127.0.0.1:${metricsPort}`,
      '--storage-driver', 'vfs',
      '--bridge=none',
      '--iptables=false',
      '--ip6tables=false',
      '--ip-forward=false',
      ...(opts.mirrors ?? []).flatMap(mirror => ['--registry-mirror', mirror]),
      ...(opts.insecureRegistries ?? []).flatMap(registry => ['--insecure-registry', registry]),
    ]
    let proc: ServerProcess
    try {
      proc = await spawnServer({
        name: 'dockerd',
        command: 'unshare',
        args: ['-m', '--propagation', 'private', '--', 'sh', '-ec', NAMESPACE_SCRIPT, 'sh', dir, DOCKERD_BIN, ...args],
        cwd: dir,
        env: daemonEnv,
        readyUrl: `http://127.0.0.1:${metricsPort}/metrics`,
        ready: status => status === 200,
        startTimeoutMs: opts.startTimeoutMs ?? 20_000,
      })
    } catch (error) {
      if (attempt < 3 && isAddressInUse(error)) continue
      throw error
    }
    const stop = async (): Promise<void> => {
      await proc.stop()
      await stopOrphanedContainerd(path('exec'))
    }
    t.teardown(stop)
    const docker = (cliArgs: string[], o: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CommandResult> =>
      runCommand(DOCKER_BIN, ['--host', host, ...cliArgs], { env: { ...cliEnv, ...o.env }, cwd: dir, timeoutMs: o.timeoutMs ?? 60_000 })

    const deadline = Date.now() + 10_000
    for (;;) {
      try {
        await docker(['version'], { timeoutMs: 5000 })
        break
      } catch (error) {
        if (proc.exited() || Date.now() > deadline) {
          await stop()
          throw new Error(`dockerd did not answer on ${host}: ${(error as Error).message}\n--- its log ---\n${proc.stderr()}`)
        }
        await delay(50)
      }
    }
    return {
      dir,
      host,
      configDir: path('cli'),
      pid: proc.pid,
      logs: proc.stderr,
      docker,
      login: (registry, user, password) =>
        // sh pipes the password from the environment: it is on no command line
        runCommand('sh', ['-c', 'printf %s "$DOCKER_TEST_PASSWORD" | "$0" --host "$1" login --username "$2" --password-stdin "$3"', DOCKER_BIN, host, user, registry], {
          env: { ...cliEnv, DOCKER_TEST_PASSWORD: password },
          cwd: dir,
          display: [DOCKER_BIN, 'login', '--username', user, '--password-stdin', registry],
        }),
      pull: ref => docker(['pull', ref]),
      inspect: async ref => {
        const [image] = JSON.parse((await docker(['image', 'inspect', ref])).stdout) as Array<{ Id: string; RepoTags: string[] | null; RepoDigests: string[] | null }>
        if (image === undefined) throw new Error(`docker image inspect ${ref}: no image`)
        return { id: image.Id, repoTags: image.RepoTags ?? [], repoDigests: image.RepoDigests ?? [] }
      },
      cliConfig: async () => JSON.parse(await readFile(join(path('cli'), 'config.json'), 'utf8')) as { auths?: Record<string, { auth?: string }> },
      stop,
    }
  }
}

/** Never throws. The PID is taken only if its command line names our exec root: a stale file must not kill a stranger. */
async function stopOrphanedContainerd(execRoot: string): Promise<void> {
  const pid = Number((await readFile(join(execRoot, 'containerd', 'containerd.pid'), 'utf8').catch(() => '')).trim())
  if (!Number.isInteger(pid) || pid <= 0) return
  const ours = async (): Promise<boolean> => (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes(execRoot)
  if (!(await ours())) return
  for (const [signal, waitMs] of [['SIGTERM', 5000], ['SIGKILL', 5000]] as const) {
    try {
      process.kill(pid, signal)
    } catch {
      return
    }
    const deadline = Date.now() + waitMs
    while (Date.now() < deadline) {
      if (!(await ours())) return
      await delay(50)
    }
  }
}

async function executable(bin: string): Promise<boolean> {
  const candidates = bin.includes('/') ? [bin] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map(dir => join(dir, bin))
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK)
      return true
    } catch {
      // not here
    }
  }
  return false
}
