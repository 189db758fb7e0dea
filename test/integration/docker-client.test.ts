// A real Docker daemon (Debian's dockerd 20.10, run privately by
// helpers/dockerd.ts) against Stevedore's access control, proxying a real
// Distribution: `docker login` and `docker pull` with htpasswd (Basic) and
// with Stevedore's own token issuer (the bearer flow), and dockerd using
// Stevedore as its Docker Hub mirror, anonymously where the rules allow it
// and falling back to registry-1.docker.io where the mirror answers 401.
import { execFile } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { startDistribution } from '../helpers/distribution.js'
import { startDockerd } from '../helpers/dockerd.js'
import { writeOciImage, type ImageDescription } from '../helpers/images.js'
import { startInProcess, type InProcess } from '../helpers/inprocess.js'
import { pushLayout } from '../helpers/skopeo.js'
import type { Teardown } from '../helpers/tmp.js'

const run = promisify(execFile)

async function htpasswdLine(user: string, password: string): Promise<string> {
  // Cost 4: bcrypt as `htpasswd -B` writes it, without slowing the test down.
  return (await run('htpasswd', ['-nbBC', '4', user, password])).stdout.trim() + '\n'
}

/** The error message of a command expected to fail, or 'succeeded'. */
const failure = (command: Promise<unknown>): Promise<string> => command.then(() => 'succeeded', (error: Error) => error.message)

const requests = (stevedore: InProcess) => stevedore.logRecords().filter(r => r.msg === 'request')

/** A Distribution holding the given repositories, each with a small image tagged `tag`. */
async function upstreamWith(t: Teardown, dir: string, repos: string[], tag: string) {
  const upstream = await startDistribution(t)
  const images = new Map<string, ImageDescription>()
  for (const repo of repos) {
    images.set(repo, await writeOciImage(join(dir, repo), { tag, seed: `docker-${repo}`, layerSizes: [3000, 50_000] }))
    await pushLayout(join(dir, repo), tag, `${upstream.host}/${repo}:${tag}`)
  }
  return { upstream, image: (repo: string) => images.get(repo) as ImageDescription }
}

t.test('docker login and pull with htpasswd (Basic)', async t => {
  const dir = t.testdir()
  const { upstream, image } = await upstreamWith(t, dir, ['team/app'], 'v1')
  const htpasswd = join(dir, 'htpasswd')
  await writeFile(htpasswd, await htpasswdLine('alice', 'alice-pw'))
  const stevedore = await startInProcess(
    t,
    join(dir, 'cache'),
    {
      proxy: { remoteurl: upstream.url },
      auth: { htpasswd: { realm: 'Stevedore test', path: htpasswd } },
      access: [{ repositories: ['team/**'], users: ['alice'], actions: ['pull'] }],
    },
    {},
    { capture: 'info' },
  )
  const docker = await startDockerd(t)
  const ref = `${stevedore.host}/team/app:v1`

  // challenged with Basic on /v2/, docker sends nothing it has no credentials for
  t.match(await failure(docker.pull(ref)), `Head "${stevedore.url}/v2/team/app/manifests/v1": no basic auth credentials`, 'without login the pull fails')
  t.same(requests(stevedore).map(r => [r.method, r.path, r.status]), [['GET', '/v2/', 401]], 'Stevedore saw only the ping, and served nothing')

  const wrong = await failure(docker.login(stevedore.host, 'alice', 'wrong-pw'))
  t.match(wrong, `login attempt to ${stevedore.url}/v2/ failed with status: 401 Unauthorized`, 'docker login with a wrong password fails')

  await docker.login(stevedore.host, 'alice', 'alice-pw')
  const stored = (await docker.cliConfig()).auths?.[stevedore.host]?.auth
  t.equal(stored, Buffer.from('alice:alice-pw').toString('base64'), "docker login stored the credentials in the sandbox's DOCKER_CONFIG")

  await docker.pull(ref)
  const pulled = await docker.inspect(ref)
  const manifest = image('team/app').manifests[0]
  t.equal(pulled.id, manifest?.config.digest, 'the image ID is the pushed config digest')
  t.same(pulled.repoDigests, [`${stevedore.host}/team/app@${image('team/app').manifestDigest}`], 'RepoDigests names the pushed manifest digest')
  const served = requests(stevedore).filter(r => r.user === 'alice' && r.status === 200 && typeof r.path === 'string' && r.path.startsWith('/v2/team/app/'))
  t.ok(served.length >= 1 + (manifest?.layers.length ?? 0), `${served.length} requests served to alice`)
  t.notMatch(stevedore.logs(), /alice-pw|wrong-pw/, 'no password in the log')
  const home = await readFile(join(homedir(), '.docker', 'config.json'), 'utf8').catch(() => '')
  t.notMatch(home, stevedore.host, 'nothing was written to ~/.docker')
})

t.test("docker login and pull through Stevedore's own token issuer (bearer)", async t => {
  const dir = t.testdir()
  const { upstream, image } = await upstreamWith(t, dir, ['team/app'], 'v1')
  const htpasswd = join(dir, 'htpasswd')
  await writeFile(htpasswd, await htpasswdLine('alice', 'alice-pw'))
  const stevedore = await startInProcess(
    t,
    join(dir, 'cache'),
    {
      proxy: { remoteurl: upstream.url },
      auth: { token: { issue: { key: join(dir, 'token-key.pem'), users: htpasswd, expiry: '10m' } } },
      access: [{ repositories: ['team/**'], users: ['alice'], actions: ['pull'] }],
    },
    {},
    { capture: 'info' },
  )
  const docker = await startDockerd(t)
  const ref = `${stevedore.host}/team/app:v1`

  // docker reads the 401's error="insufficient_scope" as "denied"
  t.match(await failure(docker.pull(ref)), /pull access denied for .*team\/app.*denied: requested access to the resource is denied/, 'without login the pull fails: an anonymous token grants nothing here')
  t.ok(requests(stevedore).some(r => r.path === '/auth/token' && r.status === 200 && r.user === undefined), 'dockerd asked for an anonymous token')
  t.match(await failure(docker.login(stevedore.host, 'alice', 'wrong-pw')), 'unauthorized: authentication required: wrong user name or password', 'a wrong password gets no token')

  const before = requests(stevedore).length
  await docker.login(stevedore.host, 'alice', 'alice-pw')
  await docker.pull(ref)
  const pulled = await docker.inspect(ref)
  t.equal(pulled.id, image('team/app').manifests[0]?.config.digest, 'the image ID is the pushed config digest')
  t.same(pulled.repoDigests, [`${stevedore.host}/team/app@${image('team/app').manifestDigest}`], 'RepoDigests names the pushed manifest digest')

  const after = requests(stevedore).slice(before)
  const tokens = after.filter(r => r.method === 'GET' && r.path === '/auth/token')
  const bearer = after.filter(r => r.status === 200 && typeof r.path === 'string' && r.path.startsWith('/v2/team/app/'))
  t.ok(tokens.length >= 1, `docker fetched ${tokens.length} token(s) with GET /auth/token`)
  t.ok(tokens.every(r => r.status === 200), 'each was granted')
  t.ok(bearer.length >= 3 && bearer.every(r => r.user === 'alice'), `${bearer.length} registry requests served to alice with her token`)
  t.notMatch(stevedore.logs(), /alice-pw/, 'no password in the log')
})

t.test('dockerd with Stevedore as its Docker Hub mirror', async t => {
  const dir = t.testdir()
  const { upstream, image } = await upstreamWith(t, dir, ['library/hello', 'team/secret'], '1.0')
  const htpasswd = join(dir, 'htpasswd')
  await writeFile(htpasswd, await htpasswdLine('ci', 'ci-pw'))
  const access = [
    { repositories: ['library/**'], anonymous: true, actions: ['pull'] },
    { repositories: ['team/**'], users: ['ci'], actions: ['pull'] },
  ]
  const mirror = (name: string, auth: Record<string, unknown>) =>
    startInProcess(t, join(dir, name), { proxy: { remoteurl: upstream.url }, auth, access }, {}, { capture: 'info' })
  const bearer = await mirror('bearer', { token: { issue: { key: join(dir, 'token-key.pem'), users: htpasswd } } })
  const basic = await mirror('basic', { htpasswd: { realm: 'mirror', path: htpasswd } })

  t.test('token issuer: anonymous pulls where an access rule allows them', async t => {
    const docker = await startDockerd(t, { mirrors: [bearer.url] })
    await docker.pull('hello:1.0')
    const pulled = await docker.inspect('hello:1.0')
    t.equal(pulled.id, image('library/hello').manifests[0]?.config.digest, 'the pushed image, through the mirror')
    t.same(pulled.repoDigests, [`hello@${image('library/hello').manifestDigest}`], 'recorded as a Docker Hub image')
    const seen = requests(bearer)
    t.ok(seen.some(r => r.path === '/auth/token' && r.status === 200 && r.user === undefined), 'dockerd fetched an anonymous token')
    const manifests = seen.filter(r => r.path === '/v2/library/hello/manifests/1.0' && r.status === 200)
    t.ok(manifests.length >= 1 && manifests.every(r => r.user === undefined), 'and was served library/hello without credentials')

    // dockerd sends no Docker Hub credentials (none here): a name the rules keep from anonymous callers
    const denied = await failure(docker.pull('team/secret:1.0'))
    t.ok(requests(bearer).some(r => r.path === '/v2/team/secret/manifests/1.0' && r.status === 401), 'the mirror answered 401 for team/secret')
    // Docker Hub resolves to 127.0.0.1 inside its namespace (helpers/dockerd.ts): refused at once
    t.match(denied, /registry-1\.docker\.io/, 'dockerd then fell back to registry-1.docker.io, and its failure names that, not the mirror')
    const refused = docker.logs().split('\n').filter(line => line.includes('Attempting next endpoint'))
    t.match(refused, [/the token does not grant this/, /registry-1\.docker\.io/], "its log: the mirror's refusal, then Docker Hub")
  })

  t.test('htpasswd: a Basic challenge on /v2/ stops an anonymous dockerd before it asks for anything', async t => {
    // docker's Basic handler refuses to send a request it has no credentials for
    // ("no basic auth credentials"), so the anonymous rule for library/** is never
    // reached: only GET /v2/ arrives, and dockerd falls back to Docker Hub.
    // skopeo and podman do send the request and are served (auth-htpasswd.test.ts).
    const docker = await startDockerd(t, { mirrors: [basic.url] })
    const message = await failure(docker.pull('hello:1.0'))
    t.match(message, /registry-1\.docker\.io/, 'the failure names registry-1.docker.io, not the mirror')
    const refused = docker.logs().split('\n').filter(line => line.includes('Attempting next endpoint') && line.includes(`${basic.url}/v2/library/hello/manifests/1.0`))
    t.match(refused, [/no basic auth credentials/], 'its log: no basic auth credentials for the mirror, next endpoint')
    t.same(requests(basic).map(r => [r.method, r.path, r.status]), [['GET', '/v2/', 401]], 'the mirror saw the ping only')
  })
})
