// The command line as a user meets it: --help, a broken config, the embedded
// default (Docker Hub mirror, ./data) and TLS from Distribution's http.tls keys.
import { execFile } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'node:https'
import { promisify } from 'node:util'
import t from 'tap'
import { freePort } from './helpers/ports.js'
import { spawnServer } from './helpers/proc.js'
import { REPO_ROOT, stevedoreCommand } from './helpers/stevedore.js'

const run = promisify(execFile)

async function stevedore(args: string[], env: Record<string, string> = {}, cwd = REPO_ROOT): Promise<{ code: number; stdout: string; stderr: string }> {
  const command = stevedoreCommand(args, { ...process.env, ...env })
  try {
    const { stdout, stderr } = await run(command.command, command.args, { env: command.env, cwd })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

t.test('--help and --version', async t => {
  const help = await stevedore(['--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /stevedore serve|serve \[--config\]/)
  t.match(help.stdout, /docs\/configuration\.md/)
  const version = await stevedore(['--version'])
  t.match(version.stdout, /^stevedore \d+\.\d+\.\d+/)
  const wrong = await stevedore(['frobnicate'])
  t.equal(wrong.code, 64, 'an unknown command is a usage error')
  t.match(wrong.stderr, /unknown command "frobnicate"/)
})

t.test('a broken config is reported key by key, and nothing starts', async t => {
  const dir = t.testdir()
  const config = join(dir, 'config.yml')
  writeFileSync(config, 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /tmp/x\nproxy:\n  remoteurl: ftp://nope\n  ttl: soon\nhttp:\n  addr: :5000\n  bogus: 1\n')
  const result = await stevedore(['serve', config])
  t.equal(result.code, 2)
  t.match(result.stderr, /proxy\.remoteurl/, 'names the bad URL')
  t.match(result.stderr, /proxy\.ttl/, 'names the bad duration')
  t.match(result.stderr, /warn: http\.bogus/, 'and the unknown key, as a warning')
})

t.test('the embedded default: a Docker Hub mirror keeping ./data', async t => {
  const cwd = t.testdir()
  const port = await freePort()
  const command = stevedoreCommand(['serve'], { ...process.env, REGISTRY_HTTP_ADDR: `127.0.0.1:${port}` })
  const proc = await spawnServer({ name: 'stevedore', ...command, cwd, readyUrl: `http://127.0.0.1:${port}/v2/`, ready: s => s === 200 })
  t.teardown(proc.stop)
  const listening = proc.stdout().split('\n').find(l => l.includes('stevedore listening'))
  t.ok(listening, 'logs that it listens')
  const record = JSON.parse(listening ?? '{}') as { upstream: string; storage: string; config: string }
  t.equal(record.upstream, 'https://registry-1.docker.io')
  t.equal(record.storage, './data')
  t.equal(record.config, '(embedded default)')
  t.match(listening, /"auth":"none"/, 'no authentication in the embedded default')
  t.match(proc.stdout(), /no auth section: anyone who can reach this port may pull/, 'and the log says the registry is open')
  const base = await fetch(`http://127.0.0.1:${port}/v2/`)
  t.equal(base.headers.get('docker-distribution-api-version'), 'registry/2.0')
  const catalog = await fetch(`http://127.0.0.1:${port}/v2/_catalog`)
  t.same(await catalog.json(), { repositories: [] }, 'an empty cache')
  await proc.stop()
  t.notOk(existsSync(join(cwd, 'data', 'docker', 'registry', 'v2', 'blobs')), 'nothing written without a pull')
})

t.test('TLS from http.tls.certificate and key', async t => {
  const dir = t.testdir()
  const cert = join(dir, 'cert.pem')
  const key = join(dir, 'key.pem')
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'])
  const port = await freePort()
  const config = join(dir, 'config.yml')
  writeFileSync(config, `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'storage')}\nhttp:\n  addr: 127.0.0.1:${port}\n  tls:\n    certificate: ${cert}\n    key: ${key}\n`)
  const command = stevedoreCommand(['serve', config], process.env)
  // Only the readiness poll skips verification; the real check below verifies against the certificate.
  process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0'
  const proc = await spawnServer({ name: 'stevedore', ...command, readyUrl: `https://127.0.0.1:${port}/v2/`, ready: () => true }).finally(() => {
    delete process.env.NODE_TLS_REJECT_UNAUTHORIZED
  })
  t.teardown(proc.stop)
  const status = await new Promise<number>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/v2/', ca: readFileSync(cert) }, res => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.on('error', reject)
    req.end()
  })
  t.equal(status, 200, 'answers over HTTPS, verified against its certificate')
})
