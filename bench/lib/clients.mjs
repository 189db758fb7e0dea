/**
 * The clients a row is measured with: skopeo (pulls), curl (one warm blob),
 * ab (manifest HEADs), and node:http (a herd of cold GETs, and 64 slow
 * readers while the server's memory is sampled).
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { get } from 'node:http'
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

/** @param {number} pid @param {string} field VmRSS or VmHWM @returns {number} KiB */
function statusKiB(pid, field) {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(m?.[1] ?? 0)
}

/** CPU seconds (user + system, every thread) `pid` has used so far. @param {number} pid */
export function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100 // clock ticks: USER_HZ is 100 on Linux
}

/** Current RSS of `pid` in MiB. @param {number} pid */
export function statusMiB(pid) {
  return statusKiB(pid, 'VmRSS') / 1024
}

/**
 * Peak RSS (MiB) of `pid` while `clients` readers download `url` at `rate`
 * bytes/s each: VmRSS sampled every 20 ms, and VmHWM after resetting it
 * (`echo 5 > /proc/PID/clear_refs`) when the kernel lets us.
 * @param {number} pid @param {string} url @param {number} size @param {number} clients @param {number} rate
 */
export async function peakRss(pid, url, size, clients, rate) {
  const baseline = statusKiB(pid, 'VmRSS')
  let hwmReset = true
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5')
  } catch {
    hwmReset = false
  }
  let peak = baseline
  const sampler = setInterval(() => {
    peak = Math.max(peak, statusKiB(pid, 'VmRSS'))
  }, 20)
  const started = performance.now()
  try {
    const got = await Promise.all(Array.from({ length: clients }, () => drain(url, rate)))
    if (got.some(bytes => bytes !== size)) throw new Error(`slow clients of ${url}: a wrong length`)
  } finally {
    clearInterval(sampler)
  }
  if (hwmReset) peak = Math.max(peak, statusKiB(pid, 'VmHWM'))
  return { peakMiB: peak / 1024, baselineMiB: baseline / 1024, seconds: (performance.now() - started) / 1000 }
}
