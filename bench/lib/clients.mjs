/**
 * The clients a row is measured with: skopeo (pulls), curl (one warm blob),
 * ab (manifest HEADs), wrk (manifest GETs), and node:http (a herd of cold
 * GETs, and 64 slow readers while the server's memory is sampled).
 *
 * CPU and memory are read from /proc for a set of PIDs: the server and its
 * descendants (nginx's master and workers; one process for the others).
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { Agent, get, request } from 'node:http'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { MANIFEST_ACCEPT } from './image.mjs'
import { removeDir, run, tempDir } from './procs.mjs'

/** skopeo with nothing from the machine's or user's container config. */
function skopeoEnv(home) {
  mkdirSync(join(home, 'run'), { mode: 0o700 })
  mkdirSync(join(home, 'config/containers'), { recursive: true })
  writeFileSync(join(home, 'auth.json'), '{"auths":{}}\n')
  writeFileSync(join(home, 'config/containers/registries.conf'), 'unqualified-search-registries = []\n')
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    TMPDIR: home,
    XDG_RUNTIME_DIR: join(home, 'run'),
    XDG_CONFIG_HOME: join(home, 'config'),
    REGISTRY_AUTH_FILE: join(home, 'auth.json'),
    CONTAINERS_REGISTRIES_CONF: join(home, 'config/containers/registries.conf'),
  }
}

/**
 * `skopeo copy docker://host/repo:tag oci:DIR:tag` into a fresh dir; seconds of wall time.
 * skopeo verifies every blob's digest, so a wrong byte fails the row.
 * @param {string} host @param {string} repo @param {string} tag
 */
export async function skopeoPull(host, repo, tag) {
  const home = tempDir('skopeo')
  try {
    const env = skopeoEnv(home)
    const args = ['--insecure-policy', 'copy', '--src-tls-verify=false', `docker://${host}/${repo}:${tag}`, `oci:${join(home, 'layout')}:${tag}`]
    const started = performance.now()
    await run('skopeo', args, { env, timeoutMs: 600_000 })
    return (performance.now() - started) / 1000
  } finally {
    removeDir(home)
  }
}

/** One GET with curl into /dev/null; MB/s (10^6 bytes) as curl measured it. @param {string} url @param {number} size */
export async function curlMBps(url, size) {
  const { stdout } = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{speed_download}', url])
  const [status, bytes, speed] = stdout.trim().split(' ').map(Number)
  if (status !== 200 || bytes !== size) throw new Error(`curl ${url}: HTTP ${status}, ${bytes} of ${size} bytes`)
  return speed / 1e6
}

/**
 * `ab -i -k -c32 -t<seconds>` HEADs with the manifest Accept header. `-n` (200k/s) after
 * `-t` lifts ab's implied 50,000-request cap, so the run lasts the full time.
 * @param {string} url @param {number} seconds
 */
export async function abHead(url, seconds) {
  const args = ['-i', '-k', '-c32', `-t${seconds}`, '-n', String(seconds * 200_000), '-H', `Accept: ${MANIFEST_ACCEPT}`, url]
  const { stdout } = await run('ab', args, { timeoutMs: (seconds + 60) * 1000 })
  const num = re => Number(re.exec(stdout)?.[1] ?? 0)
  const rps = num(/Requests per second:\s+([\d.]+)/)
  const complete = num(/Complete requests:\s+(\d+)/)
  const failed = num(/Failed requests:\s+(\d+)/) + num(/Non-2xx responses:\s+(\d+)/)
  if (complete === 0) throw new Error(`ab ${url}: no request completed\n${stdout}`)
  return { rps, complete, failed }
}

/**
 * `wrk -t2 -c32 -d<seconds>s` GETs with the manifest Accept header (wrk, not
 * ab: FIELD-NOTES measured the GET rows with wrk; wrk stalls on HEAD, so
 * HEAD stays with ab). Socket errors and non-2xx/3xx answers count as failed.
 * @param {string} url @param {number} seconds
 */
export async function wrkGet(url, seconds) {
  const args = ['-t2', '-c32', `-d${seconds}s`, '-H', `Accept: ${MANIFEST_ACCEPT}`, url]
  const { stdout } = await run('wrk', args, { timeoutMs: (seconds + 60) * 1000 })
  const num = re => Number(re.exec(stdout)?.[1] ?? 0)
  const rps = num(/Requests\/sec:\s+([\d.]+)/)
  const complete = num(/(\d+) requests in /)
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout)
  const failed = num(/Non-2xx or 3xx responses:\s+(\d+)/) + (socket ? socket.slice(1).reduce((sum, v) => sum + Number(v), 0) : 0)
  if (complete === 0) throw new Error(`wrk ${url}: no request completed\n${stdout}`)
  return { rps, complete, failed }
}

/**
 * HEADs from this process: `concurrency` keep-alive connections, each
 * sending the next request when the last answered, for `seconds`; each
 * request's path from `pick()` (so one client can spread over many
 * repositories, which ab cannot). An answer counts as failed unless it is
 * 200 with the `Docker-Content-Digest` `pick` expected. Bound by this Node
 * process well below ab's rate: compare these rows with each other.
 * @param {string} base http://host:port
 * @param {() => {path: string, digest: string}} pick
 * @param {number} seconds @param {number} [concurrency]
 */
export async function nodeHeads(base, pick, seconds, concurrency = 32) {
  const { hostname, port } = new URL(base)
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency })
  let complete = 0
  let failed = 0
  const one = ({ path, digest }) =>
    new Promise(resolve => {
      const req = request({ host: hostname, port, path, method: 'HEAD', agent, headers: { Accept: MANIFEST_ACCEPT } }, res => {
        const ok = res.statusCode === 200 && res.headers['docker-content-digest'] === digest
        res.resume()
        res.once('end', () => resolve(ok))
        res.once('error', () => resolve(false))
      })
      req.once('error', () => resolve(false))
      req.end()
    })
  const started = performance.now()
  const deadline = started + seconds * 1000
  const loop = async () => {
    while (performance.now() < deadline) {
      const ok = await one(pick())
      complete++
      if (!ok) failed++
    }
  }
  try {
    await Promise.all(Array.from({ length: concurrency }, loop))
  } finally {
    agent.destroy()
  }
  const elapsed = (performance.now() - started) / 1000
  return { rps: complete / elapsed, complete, failed }
}

/**
 * GETs `url` with a fresh connection and discards the body, reading at most
 * `rate` bytes/s (by pausing the socket, so the server sees TCP backpressure).
 * @param {string} url @param {number} [rate] @returns {Promise<number>} bytes read
 */
export function drain(url, rate = Infinity) {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent: false }, res => {
      if (res.statusCode !== 200) {
        res.resume()
        reject(new Error(`GET ${url}: HTTP ${res.statusCode}`))
        return
      }
      const started = performance.now()
      let bytes = 0
      res.on('data', chunk => {
        bytes += chunk.length
        if (rate === Infinity) return
        const ahead = (bytes / rate) * 1000 - (performance.now() - started)
        if (ahead > 10) {
          res.pause()
          setTimeout(() => res.resume(), ahead)
        }
      })
      res.on('end', () => resolve(bytes))
      res.on('error', reject)
    })
    req.on('error', reject)
  })
}

/**
 * `clients` concurrent GETs of one blob; seconds until the last completes.
 * @param {string} url @param {number} size @param {number} clients
 */
export async function herd(url, size, clients) {
  const started = performance.now()
  const got = await Promise.all(Array.from({ length: clients }, () => drain(url)))
  const seconds = (performance.now() - started) / 1000
  const short = got.filter(bytes => bytes !== size).length
  if (short > 0) throw new Error(`herd ${url}: ${short} of ${clients} clients got a wrong length`)
  return seconds
}

/**
 * A status field summed over `pids`; a process gone meanwhile counts 0.
 * @param {number | number[]} pids @param {string} field VmRSS or VmHWM @returns {number} KiB
 */
function statusKiB(pids, field) {
  let sum = 0
  for (const pid of [pids].flat()) {
    try {
      const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
      sum += Number(m?.[1] ?? 0)
    } catch {
      // gone (an nginx cache loader exits a minute after start)
    }
  }
  return sum
}

/** CPU seconds (user + system, every thread) `pid` has used so far, undefined when it is gone. @param {number} pid */
function cpuOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100 // clock ticks: USER_HZ is 100 on Linux
  } catch {
    return undefined
  }
}

/** CPU seconds `pid` has used so far. @param {number} pid */
export function cpuSeconds(pid) {
  return cpuOf(pid) ?? 0
}

/**
 * Starts counting the CPU of a process set; the function returned gives the
 * seconds used since, summed per PID (a process born meanwhile counts all
 * of its CPU; one gone meanwhile is left out; neither happens to nginx's
 * workers during a row).
 * @param {() => number[]} pids @returns {() => number}
 */
export function cpuMeter(pids) {
  const read = () => {
    const map = new Map()
    for (const pid of pids()) {
      const v = cpuOf(pid)
      if (v !== undefined) map.set(pid, v)
    }
    return map
  }
  const start = read()
  return () => {
    let sum = 0
    for (const [pid, v] of read()) sum += v - (start.get(pid) ?? 0)
    return sum
  }
}

/** Current RSS of `pids` in MiB, summed (shared pages count once per process). @param {number | number[]} pids */
export function statusMiB(pids) {
  return statusKiB(pids, 'VmRSS') / 1024
}

/**
 * Peak RSS (MiB) of `pids` while `clients` readers download `url` at `rate`
 * bytes/s each: their summed VmRSS sampled every 20 ms, and the sum of their
 * VmHWM after resetting it (`echo 5 > /proc/PID/clear_refs`) when the kernel
 * lets us. For one process that is its peak; for several (nginx) the sum of
 * peaks is an upper bound of the peak of the sum.
 * @param {number[]} pids @param {string} url @param {number} size @param {number} clients @param {number} rate
 */
export async function peakRss(pids, url, size, clients, rate) {
  const baseline = statusKiB(pids, 'VmRSS')
  let hwmReset = true
  for (const pid of pids) {
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5')
    } catch {
      hwmReset = false
    }
  }
  let peak = baseline
  const sampler = setInterval(() => {
    peak = Math.max(peak, statusKiB(pids, 'VmRSS'))
  }, 20)
  const started = performance.now()
  try {
    const got = await Promise.all(Array.from({ length: clients }, () => drain(url, rate)))
    if (got.some(bytes => bytes !== size)) throw new Error(`slow clients of ${url}: a wrong length`)
  } finally {
    clearInterval(sampler)
  }
  if (hwmReset) peak = Math.max(peak, statusKiB(pids, 'VmHWM'))
  return { peakMiB: peak / 1024, baselineMiB: baseline / 1024, seconds: (performance.now() - started) / 1000 }
}
