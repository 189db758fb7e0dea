/**
 * nginx, twice, both optional (Debian `nginx-light`; without it the report
 * says "not installed" and the run goes on):
 *
 * - `startNginxMirror`: the second anchor of FIELD-NOTES, nginx as a caching
 *   pull-through mirror in the style of docker-registry-proxy (proxy_cache,
 *   blobs and manifests by digest keyed by digest for 60 days, tags for one
 *   minute, proxy_cache_lock, stale content on upstream errors). It is one
 *   more target, measured with the same rows as the other proxies.
 * - `startNginxStatic`: nginx serving a plain file with sendfile, the
 *   practical upper bound for blob throughput FIELD-NOTES names (the
 *   calibration under the table; target: Stevedore's warm blob GET ≥ 90 %).
 *
 * Everything (config, pid file, error and access logs, temp paths, the
 * cache) is under one temp dir, nginx runs in the foreground (`daemon off`,
 * `-p` that dir) and is stopped by PID, its workers too (procs.mjs).
 */
import { chmodSync, createWriteStream, mkdirSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { join } from 'node:path'
import { freePort, removeDir, run, startServer, tempDir } from './procs.mjs'

export const NGINX_INSTALL = 'apt-get install -y --no-install-recommends nginx-light'

/** @type {Promise<string | undefined> | undefined} */
let found
/**
 * The nginx binary, or undefined when there is none: `nginx` on PATH, else
 * /usr/sbin/nginx (Debian's, which a non-root PATH may lack); only
 * `STEVEDORE_BENCH_NGINX_BIN` when that is set (a path that does not exist
 * runs the benchmark as if nginx were not installed).
 * @returns {Promise<string | undefined>}
 */
export function nginxBinary() {
  found ??= (async () => {
    const env = process.env.STEVEDORE_BENCH_NGINX_BIN
    for (const candidate of env ? [env] : ['nginx', '/usr/sbin/nginx']) {
      if (await run(candidate, ['-v']).then(() => true, () => false)) return candidate
    }
    return undefined
  })()
  return found
}

export async function nginxAvailable() {
  return (await nginxBinary()) !== undefined
}

/** `nginx version: nginx/1.22.1` (nginx prints it on stderr), or '' without nginx. */
export async function nginxVersion() {
  const bin = await nginxBinary()
  if (bin === undefined) return ''
  const { stdout, stderr } = await run(bin, ['-v'])
  return `${stderr}${stdout}`.trim()
}

/** The lines every config here shares: pid, error log and every temp path under `dir`. @param {string} dir @param {string|number} workers */
function preamble(dir, workers) {
  return `worker_processes ${workers};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
`
}

/** @param {string} dir */
function tempPaths(dir) {
  return `  client_body_temp_path ${dir}/tmp-body;
  proxy_temp_path ${dir}/tmp-proxy;
  fastcgi_temp_path ${dir}/tmp-fastcgi;
  uwsgi_temp_path ${dir}/tmp-uwsgi;
  scgi_temp_path ${dir}/tmp-scgi;`
}

/**
 * Writes `conf` (given the port) into a fresh temp dir and starts nginx on it.
 * @param {string} label @param {(dir: string, port: number) => string} conf
 */
async function start(label, conf, prepare = (/** @type {string} */ _dir) => Promise.resolve()) {
  const bin = await nginxBinary()
  if (bin === undefined) throw new Error(`nginx is not installed (${NGINX_INSTALL})`)
  for (let attempt = 1; ; attempt++) {
    const dir = tempDir(label)
    try {
      // Started by root, nginx's workers run as nobody: they must be able to reach the dir.
      chmodSync(dir, 0o755)
      await prepare(dir)
      const port = await freePort()
      const path = join(dir, 'nginx.conf')
      writeFileSync(path, conf(dir, port))
      const server = await startServer({ name: label, command: bin, args: ['-p', `${dir}/`, '-c', path, '-e', join(dir, 'error.log'), '-g', 'daemon off;'], port, cwd: dir })
      const close = async () => {
        await server.stop()
        removeDir(dir)
      }
      return { ...server, dir, close }
    } catch (error) {
      removeDir(dir)
      if (attempt >= 3 || !/address already in use/i.test(String(error))) throw error
    }
  }
}

/**
 * nginx on a free port serving a `size`-byte file at `/blob` with sendfile,
 * one worker, no access log: the ceiling, not a proxy. @param {number} size
 */
export async function startNginxStatic(size) {
  const server = await start(
    'nginx-static',
    (dir, port) => `${preamble(dir, 1)}http {
  access_log off;
  sendfile on;
${tempPaths(dir)}
  server { listen 127.0.0.1:${port}; root ${dir}/www; }
}
`,
    async dir => {
      const www = join(dir, 'www')
      mkdirSync(join(www, 'v2'), { recursive: true })
      writeFileSync(join(www, 'v2', 'index.html'), '{}')
      const out = createWriteStream(join(www, 'blob'))
      for (let left = size; left > 0; left -= 1 << 20) {
        if (!out.write(randomBytes(Math.min(left, 1 << 20)))) await once(out, 'drain')
      }
      out.end()
      await once(out, 'finish')
    },
  )
  return { ...server, fileUrl: `${server.url}/blob` }
}

/**
 * The cache part of the mirror's config, as FIELD-NOTES describes it ("The
 * nginx mirror, for bench/"). Exported so the README can quote what runs.
 * @param {{dir: string, port: number, upstreamHost: string, workers: string|number, accessLog: boolean}} o
 */
export function mirrorConfig(o) {
  const cached = (key, valid) => `      proxy_pass http://origin;
      proxy_cache registry;
      proxy_cache_key ${key};
      proxy_cache_valid 200 ${valid};`
  return `${preamble(o.dir, o.workers)}http {
${tempPaths(o.dir)}
  sendfile on;
  tcp_nopush on;
  log_format mirror '$remote_addr - - [$time_local] "$request" $status $body_bytes_sent "$http_user_agent" cache=$upstream_cache_status';
  access_log ${o.accessLog ? `${o.dir}/access.log mirror` : 'off'};

  proxy_cache_path ${o.dir}/cache levels=1:2 keys_zone=registry:32m inactive=60d;

  upstream origin {
    server ${o.upstreamHost};
    keepalive 32;
  }

  server {
    listen 127.0.0.1:${o.port};

    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_read_timeout 900s;
    proxy_cache_lock on;
    proxy_cache_lock_timeout 880s;
    proxy_cache_lock_age 880s;
    proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;
    proxy_cache_revalidate on;
    proxy_cache_methods GET HEAD;
    proxy_cache_convert_head off;
    proxy_ignore_client_abort on;
    # How long an entry is valid is proxy_cache_valid's (60 d, 1 min), not the
    # upstream's Cache-Control (Distribution sends max-age=31536000 on blobs).
    proxy_ignore_headers Cache-Control Expires;

    location = /v2/ {
      default_type application/json;
      add_header Docker-Distribution-Api-Version registry/2.0 always;
      return 200 '{}';
    }
    location ~ "^/v2/.+/blobs/(?<digest>sha256:[0-9a-f]{64})$" {
${cached('$request_method$digest', '60d')}
    }
    location ~ "^/v2/.+/manifests/(?<digest>sha256:[0-9a-f]{64})$" {
${cached('$request_method$digest', '60d')}
    }
    # A tag: the answer depends on the manifest types the client accepts.
    location ~ ^/v2/.+/manifests/[^/]+$ {
${cached('$request_method$request_uri$http_accept', '1m')}
    }
    location /v2/ {
      proxy_pass http://origin;
    }
  }
}
`
}

/**
 * The nginx proxy_cache mirror in front of `upstreamUrl`, empty cache.
 * @param {string} upstreamUrl http://127.0.0.1:PORT
 * @param {{workers?: string|number, accessLog?: boolean}} [opts] workers: `auto` (one per core) unless told
 */
export function startNginxMirror(upstreamUrl, opts = {}) {
  const upstreamHost = new URL(upstreamUrl).host
  return start('nginx-mirror', (dir, port) =>
    mirrorConfig({ dir, port, upstreamHost, workers: opts.workers ?? 'auto', accessLog: opts.accessLog ?? true }),
  )
}
