// Basic authentication against an htpasswd file, with access rules over
// routed names, through a real Stevedore proxying a real Distribution, pulled
// by skopeo, podman and containerd: good credentials pull, none or wrong ones
// get 401 and no content, bcrypt does not run per request, a user sees only
// what its rules allow, and what it may not see answers exactly as what does
// not exist.
import { execFile } from 'node:child_process'
import { appendFile, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { compareLayoutBlobs } from '../helpers/blobs.js'
import { startContainerd, writeHostsDir } from '../helpers/containerd.js'
import { startDistribution } from '../helpers/distribution.js'
import { writeOciImage, type ImageDescription } from '../helpers/images.js'
import { podmanSandbox } from '../helpers/podman.js'
import { pullToLayout, pushLayout } from '../helpers/skopeo.js'
import { startInProcess } from '../helpers/inprocess.js'

const run = promisify(execFile)
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

async function htpasswdLine(user: string, password: string): Promise<string> {
  // Cost 4: the file is bcrypt as `htpasswd -B` writes it, without slowing the test down.
  return (await run('htpasswd', ['-nbBC', '4', user, password])).stdout.trim() + '\n'
}

interface Answer {
  status: number
  code?: string
  body: string
  headers: Headers
}

async function ask(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Answer> {
  const res = await fetch(url, { method, headers: { Accept: OCI_MANIFEST, ...headers } })
  const body = await res.text()
  let code: string | undefined
  try {
    code = (JSON.parse(body) as { errors?: { code: string }[] }).errors?.[0]?.code
  } catch {}
  return { status: res.status, ...(code === undefined ? {} : { code }), body, headers: res.headers }
}

const bcryptRuns = (stevedore: { logRecords(): Record<string, unknown>[] }) => stevedore.logRecords().filter(r => r.msg === 'password checked with bcrypt').length

t.test('htpasswd: who may pull what', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  const images = new Map<string, ImageDescription>()
  for (const repo of ['team/app', 'other/secret', 'library/base']) {
    const image = await writeOciImage(join(dir, repo), { tag: 'v1', seed: `auth-${repo}`, layerSizes: [3000, 70_000] })
    images.set(repo, image)
    await pushLayout(join(dir, repo), 'v1', `${upstream.host}/${repo}:v1`)
  }
  const image = (repo: string) => images.get(repo) as ImageDescription

  const htpasswd = join(dir, 'htpasswd')
  await writeFile(htpasswd, (await htpasswdLine('alice', 'alice-pw')) + (await htpasswdLine('carol', 'carol-pw')) + (await htpasswdLine('admin', 'admin-pw')))
  const groups = join(dir, 'groups.yml')
  await writeFile(groups, 'ci: [carol]\n')
  const stevedore = await startInProcess(
    t,
    join(dir, 'cache'),
    {
      proxy: { remoteurl: upstream.url },
      http: { trustedproxies: ['127.0.0.1'] },
      auth: { htpasswd: { realm: 'Stevedore test', path: htpasswd }, groups, lockout: { attempts: 20, window: '10m' } },
      access: [
        { repositories: ['library/**'], anonymous: true, actions: ['pull'] },
        { repositories: ['team/**'], users: ['alice', 'group:ci'], actions: ['pull'] },
        { repositories: ['**'], users: ['admin'], actions: ['pull'] },
      ],
    },
    {},
    { capture: 'debug' },
  )
  const v2 = `${stevedore.url}/v2`

  t.test('no credentials: 401 with a Basic challenge and no content', async t => {
    // (the catalog is open to anonymous callers here, filtered: an anonymous rule exists)
    for (const path of ['/', '/team/app/manifests/v1', `/team/app/blobs/${image('team/app').blobs[0]?.digest}`, '/team/app/tags/list']) {
      const answer = await ask(`${v2}${path}`)
      t.equal(answer.status, 401, path)
      t.equal(answer.code, 'UNAUTHORIZED', `${path}: an OCI error body`)
      t.equal(answer.headers.get('www-authenticate'), 'Basic realm="Stevedore test"', `${path}: the challenge`)
      t.notMatch(answer.body, /schemaVersion|layers/, `${path}: no content`)
    }
    await t.rejects(pullToLayout(`${stevedore.host}/team/app:v1`, join(dir, 'anon'), 'v1'), /unauthorized: authentication required/, 'skopeo without credentials fails')
  })

  t.test('wrong credentials: 401, and the log names the user but not the password', async t => {
    for (const header of [basic('alice', 'wrong-pw'), basic('nobody', 'x'), basic('alice', ''), 'Basic !!!', 'Digest username="alice"', 'Bearer abc.def.ghi']) {
      const answer = await ask(`${v2}/team/app/manifests/v1`, { Authorization: header, 'X-Forwarded-For': '10.1.0.1' })
      t.equal(answer.status, 401, header)
      t.equal(answer.code, 'UNAUTHORIZED', header)
      t.match(answer.headers.get('www-authenticate'), /^Basic realm=/, header)
    }
    await t.rejects(pullToLayout(`${stevedore.host}/team/app:v1`, join(dir, 'wrong'), 'v1', { creds: 'alice:wrong-pw' }), /unauthorized: authentication required: wrong user name or password/, 'skopeo with a wrong password fails')
    const failed = stevedore.logRecords().filter(r => r.msg === 'login failed')
    t.ok(failed.some(r => r.user === 'alice' && r.client === '10.1.0.1'), 'failed logins are logged with user and client')
    t.notMatch(stevedore.logs(), /wrong-pw|alice-pw/, 'no password in the log')
  })

  t.test('good credentials: skopeo pulls; bcrypt ran once, not per request', async t => {
    const before = bcryptRuns(stevedore)
    await pullToLayout(`${stevedore.host}/team/app:v1`, join(dir, 'cold'), 'v1', { creds: 'alice:alice-pw' })
    t.same(await compareLayoutBlobs(join(dir, 'team/app'), join(dir, 'cold')), [], 'cold pull byte-identical')
    await pullToLayout(`${stevedore.host}/team/app:v1`, join(dir, 'warm'), 'v1', { creds: 'alice:alice-pw' })
    t.same(await compareLayoutBlobs(join(dir, 'team/app'), join(dir, 'warm')), [], 'warm pull byte-identical')
    const requests = stevedore.logRecords().filter(r => r.msg === 'request' && r.user === 'alice').length
    t.ok(requests >= 8, `alice made ${requests} requests`)
    t.equal(bcryptRuns(stevedore) - before, 1, 'one bcrypt comparison for all of them')
    t.notMatch(stevedore.logs(), /alice-pw/, 'no password in the log')
  })

  t.test('a group member pulls; anonymous callers pull what the anonymous rule allows', async t => {
    await pullToLayout(`${stevedore.host}/team/app:v1`, join(dir, 'carol'), 'v1', { creds: 'carol:carol-pw' })
    t.same(await compareLayoutBlobs(join(dir, 'team/app'), join(dir, 'carol')), [], 'carol (group ci) pulled team/app')
    await pullToLayout(`${stevedore.host}/library/base:v1`, join(dir, 'anon-base'), 'v1')
    t.same(await compareLayoutBlobs(join(dir, 'library/base'), join(dir, 'anon-base')), [], 'anonymous pull of library/base')
    await pullToLayout(`${stevedore.host}/library/base:v1`, join(dir, 'alice-base'), 'v1', { creds: 'alice:alice-pw' })
    t.pass('an anonymous rule covers logged-in callers too')
  })

  t.test('outside its rules a repository answers as one that does not exist', async t => {
    // admin caches other/secret, so it exists here as well as upstream
    await pullToLayout(`${stevedore.host}/other/secret:v1`, join(dir, 'admin'), 'v1', { creds: 'admin:admin-pw' })
    const alice = { Authorization: basic('alice', 'alice-pw') }
    for (const [what, existing, missing] of [
      ['manifest by tag', '/other/secret/manifests/v1', '/other/missing/manifests/v1'],
      ['manifest by digest', `/other/secret/manifests/${image('other/secret').manifestDigest}`, `/other/missing/manifests/${image('other/secret').manifestDigest}`],
      ['blob', `/other/secret/blobs/${image('other/secret').blobs[0]?.digest}`, `/other/missing/blobs/${image('other/secret').blobs[0]?.digest}`],
      ['tags', '/other/secret/tags/list', '/other/missing/tags/list'],
    ] as const) {
      for (const method of ['GET', 'HEAD']) {
        const a = await ask(`${v2}${existing}`, alice, method)
        const b = await ask(`${v2}${missing}`, alice, method)
        t.equal(a.status, 404, `${method} ${what}: 404 for the existing repository`)
        t.same([a.status, a.body, a.headers.get('content-type'), a.headers.get('content-length')], [b.status, b.body, b.headers.get('content-type'), b.headers.get('content-length')], `${method} ${what}: the same answer as for a missing one`)
        if (method === 'GET') t.equal(a.code, 'NAME_UNKNOWN', `${what}: NAME_UNKNOWN`)
      }
    }
    await t.rejects(pullToLayout(`${stevedore.host}/other/secret:v1`, join(dir, 'alice-secret'), 'v1', { creds: 'alice:alice-pw' }), /manifest unknown|name unknown|not known/i, 'skopeo as alice cannot pull other/secret')
    const anonymous = await ask(`${v2}/other/secret/manifests/v1`)
    const anonymousMissing = await ask(`${v2}/other/missing/manifests/v1`)
    t.equal(anonymous.status, 401, 'anonymous: 401')
    const named = (answer: Answer, name: string) => [answer.status, answer.body.replaceAll(name, 'NAME'), answer.headers.get('www-authenticate')?.replaceAll(name, 'NAME')]
    t.same(named(anonymous, 'other/secret'), named(anonymousMissing, 'other/missing'), 'anonymous: the same 401 for an existing and a missing repository, but for the name')
  })

  t.test('the catalog lists only what the caller may pull', async t => {
    const catalog = async (headers: Record<string, string>, query = '') => {
      const res = await fetch(`${v2}/_catalog${query}`, { headers })
      t.equal(res.status, 200)
      return ((await res.json()) as { repositories: string[] }).repositories
    }
    t.same(await catalog({ Authorization: basic('admin', 'admin-pw') }), ['library/base', 'other/secret', 'team/app'], 'admin sees everything cached')
    t.same(await catalog({ Authorization: basic('alice', 'alice-pw') }), ['library/base', 'team/app'], 'alice sees library/ (anonymous) and team/')
    t.same(await catalog({}), ['library/base'], 'anonymous callers see library/')
    const first = await fetch(`${v2}/_catalog?n=1`, { headers: { Authorization: basic('alice', 'alice-pw') } })
    t.same(((await first.json()) as { repositories: string[] }).repositories, ['library/base'], 'n=1: the first allowed name')
    t.match(first.headers.get('link'), /last=library%2Fbase/, 'a Link to the next page')
    t.same(await catalog({ Authorization: basic('alice', 'alice-pw') }, '?n=1&last=library%2Fbase'), ['team/app'], 'the next page skips other/secret')
  })

  t.test('the htpasswd file is re-read when it changes', async t => {
    const dave = { Authorization: basic('dave', 'dave-pw') }
    t.equal((await ask(`${v2}/`, dave)).status, 401, 'dave is unknown')
    await appendFile(htpasswd, await htpasswdLine('dave', 'dave-pw'))
    await until(async () => (await ask(`${v2}/`, dave)).status === 200, 'dave can log in')
    t.equal((await ask(`${v2}/library/base/manifests/v1`, dave)).status, 200, 'and pull')
    // dave's password changes: the remembered verification of the old one must not survive
    const lines = (await readFile(htpasswd, 'utf8')).split('\n').filter(l => !l.startsWith('dave:'))
    await writeFile(htpasswd, lines.join('\n') + (await htpasswdLine('dave', 'dave-new')))
    await until(async () => (await ask(`${v2}/`, { Authorization: basic('dave', 'dave-pw') })).status === 401, 'the old password no longer works')
    t.equal((await ask(`${v2}/`, { Authorization: basic('dave', 'dave-new') })).status, 200, 'the new one does')
  })

  t.test('failed logins are rate-limited per client and per user', async t => {
    const from = (address: string, header: string) => ask(`${v2}/`, { Authorization: header, 'X-Forwarded-For': address })
    for (let i = 0; i < 20; i++) t.equal((await from('10.9.0.1', basic('carol', 'guess'))).status, 401, `guess ${i + 1}`)
    const locked = await from('10.9.0.1', basic('carol', 'carol-pw'))
    t.equal(locked.status, 429, 'the right password is refused while locked out')
    t.equal(locked.code, 'TOOMANYREQUESTS')
    t.ok(Number(locked.headers.get('retry-after')) > 0, 'with Retry-After')
    t.equal((await from('10.9.0.2', basic('carol', 'carol-pw'))).status, 429, 'carol is locked out from another address too')
    t.equal((await from('10.9.0.2', basic('admin', 'admin-pw'))).status, 200, 'another user from another address is not')
    t.equal((await from('10.9.0.1', basic('admin', 'admin-pw'))).status, 429, 'the guessing address is locked out for every user')
  })
})

t.test('podman login and containerd hosts.toml credentials pull through an htpasswd-protected mirror', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  const pushed = await writeOciImage(join(dir, 'image'), { tag: '1.0', seed: 'auth-clients', layerSizes: [2000, 30_000] })
  await pushLayout(join(dir, 'image'), '1.0', `${upstream.host}/library/hello:1.0`)
  const htpasswd = join(dir, 'htpasswd')
  await writeFile(htpasswd, await htpasswdLine('ci', 'ci-pw'))
  const stevedore = await startInProcess(t, join(dir, 'cache'), {
    proxy: { remoteurl: upstream.url },
    routing: { unknownns: 'default' },
    auth: { htpasswd: { realm: 'mirror', path: htpasswd } },
  })

  t.test('podman', async t => {
    const podman = await podmanSandbox(t)
    await podman.writeRegistriesConf([{ prefix: 'docker.io', location: '127.0.0.1:1', mirrors: [stevedore.host] }])
    const denied = await podman.pull('docker.io/library/hello:1.0').then(() => 'pulled', (err: Error) => err.message)
    t.match(denied, /401|unauthorized|authentication required/i, 'without login the pull fails')
    await podman.run(['login', '--tls-verify=false', '-u', 'ci', '-p', 'ci-pw', stevedore.host])
    await podman.pull('docker.io/library/hello:1.0')
    t.equal((await podman.inspect('docker.io/library/hello:1.0')).digest, pushed.manifestDigest, 'podman pulled the pushed image after podman login')
  })

  t.test('containerd', async t => {
    const containerd = await startContainerd(t)
    const hosts = join(containerd.dir, 'hosts')
    await writeHostsDir(hosts, {
      'docker.io': { server: 'http://127.0.0.1:1', mirrors: [{ url: stevedore.url, headers: { Authorization: basic('ci', 'ci-pw') } }] },
    })
    await containerd.pull('docker.io/library/hello:1.0', hosts)
    t.equal((await containerd.images()).get('docker.io/library/hello:1.0'), pushed.manifestDigest, 'containerd pulled with the credentials of hosts.toml')
  })
})

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}
