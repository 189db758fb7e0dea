/**
 * Calibration for blob throughput: nginx serving a plain file with sendfile,
 * the practical upper bound FIELD-NOTES names. Optional: without nginx on
 * PATH (`apt-get install nginx-light`) the row is skipped and the report says so.
 */
import { chmodSync, createWriteStream, mkdirSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { join } from 'node:path'
import { freePort, run, startServer, tempDir } from './procs.mjs'

export async function nginxAvailable() {
  return run('nginx', ['-v']).then(() => true, () => false)
}

/** Starts nginx on a free port serving a `size`-byte file at `/blob`. @param {number} size */
export async function startNginx(size) {
  const dir = tempDir('nginx')
  // nginx's workers run as an unprivileged user when started by root: they must be able to read the file.
  chmodSync(dir, 0o755)
  const www = join(dir, 'www')
  mkdirSync(join(www, 'v2'), { recursive: true })
  writeFileSync(join(www, 'v2', 'index.html'), '{}')
  const out = createWriteStream(join(www, 'blob'))
  for (let left = size; left > 0; left -= 1 << 20) {
    if (!out.write(randomBytes(Math.min(left, 1 << 20)))) await once(out, 'drain')
  }
  out.end()
  await once(out, 'finish')
  const port = await freePort()
  const conf = join(dir, 'nginx.conf')
  writeFileSync(
    conf,
    `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 512; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path ${dir}/tmp-body;
  proxy_temp_path ${dir}/tmp-proxy;
  fastcgi_temp_path ${dir}/tmp-fastcgi;
  uwsgi_temp_path ${dir}/tmp-uwsgi;
  scgi_temp_path ${dir}/tmp-scgi;
  server { listen 127.0.0.1:${port}; root ${www}; }
}
`,
  )
  const server = await startServer({ name: 'nginx', command: 'nginx', args: ['-c', conf, '-g', 'daemon off;'], port })
  return { ...server, fileUrl: `${server.url}/blob` }
}
