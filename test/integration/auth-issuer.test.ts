// Stevedore's own token endpoint (auth.token.issue): `skopeo login` and a
// pull through the bearer flow, tokens granting exactly what the access
// rules allow, anonymous tokens, the OAuth2 password grant, bcrypt once per
// token rather than once per request, and a signing key created on first
// start and kept across restarts.
import { execFile } from 'node:child_process'
import { stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import t from 'tap'
import { compareLayoutBlobs } from '../helpers/blobs.js'
import { startDistribution } from '../helpers/distribution.js'
import { writeOciImage, type ImageDescription } from '../helpers/images.js'
import { pullToLayout, pushLayout, skopeo } from '../helpers/skopeo.js'
import { startInProcess } from '../helpers/inprocess.js'

const run = promisify(execFile)
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

interface TokenAnswer {
  token: string
  access_token: string
  expires_in: number
  issued_at: string
}

t.test("Stevedore's own token issuer", async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  const images = new Map<string, ImageDescription>()
  for (const repo of ['team/app', 'other/secret', 'library/base']) {
    images.set(repo, await writeOciImage(join(dir, repo), { tag: 'v1', seed: `issuer-${repo}`, layerSizes: [2500, 40_000] }))
    await pushLayout(join(dir, repo), 'v1', `${upstream.host}/${repo}:v1`)
  }
  const htpasswd = join(dir, 'htpasswd')
  await writeFile(htpasswd, (await run('htpasswd', ['-nbBC', '4', 'alice', 'alice-pw'])).stdout)
  const key = join(dir, 'token-key.pem')
  const config = {
    proxy: { remoteurl: upstream.url },
    auth: { token: { issue: { key, users: htpasswd, expiry: '10m' } } },
    access: [
      { repositories: ['library/**'], anonymous: true, actions: ['pull'] },
      { repositories: ['team/**'], users: ['alice'], actions: ['pull'] },
    ],
  }
  const stevedore = await startInProcess(t, join(dir, 'cache'), config, {}, { capture: 'debug' })
  const realm = `${stevedore.url}/auth/token`
  const token = async (query: string, headers: Record<string, string> = {}): Promise<{ status: number; body: TokenAnswer; headers: Headers }> => {
    const res = await fetch(`${stevedore.url}/auth/token?${query}`, { headers })
    return { status: res.status, body: (await res.json()) as TokenAnswer, headers: res.headers }
  }
  const access = (jwt: string) => decodeJwt(jwt).access

  t.test('the challenge sends clients to /auth/token', async t => {
    const res = await fetch(`${stevedore.url}/v2/`)
    t.equal(res.status, 401)
    t.equal(res.headers.get('www-authenticate'), `Bearer realm="${realm}",service="stevedore"`)
    const repo = await fetch(`${stevedore.url}/v2/team/app/manifests/v1`, { headers: { Accept: OCI_MANIFEST } })
    t.equal(repo.status, 401)
    t.equal(repo.headers.get('www-authenticate'), `Bearer realm="${realm}",service="stevedore",scope="repository:team/app:pull"`, 'with the scope the request needs')
    const mode = (await stat(key)).mode & 0o777
    t.equal(mode, 0o600, 'the signing key was created, readable by its owner only')
  })

  t.test('a token grants exactly what the rules allow', async t => {
    const scopes = ['repository:team/app:pull,push', 'repository:other/secret:pull', 'repository:library/base:pull', 'registry:catalog:*']
    const query = `service=stevedore&${scopes.map(s => `scope=${encodeURIComponent(s)}`).join('&')}`
    const alice = await token(query, { Authorization: basic('alice', 'alice-pw') })
    t.equal(alice.status, 200)
    t.equal(alice.body.token, alice.body.access_token, 'token and access_token (OAuth2 clients read the latter)')
    t.equal(alice.body.expires_in, 600)
    t.equal(alice.headers.get('cache-control'), 'no-store')
    t.same(access(alice.body.token), [
      { type: 'repository', name: 'team/app', actions: ['pull'] },
      { type: 'repository', name: 'library/base', actions: ['pull'] },
      { type: 'registry', name: 'catalog', actions: ['*'] },
    ], 'pull of team/app (not push), library/base, the catalog; nothing of other/secret')
    const claims = decodeJwt(alice.body.token)
    t.match(claims, { iss: 'stevedore', aud: 'stevedore', sub: 'alice' })
    t.equal((claims.exp ?? 0) - (claims.iat ?? 0), 600)
    t.match(decodeProtectedHeader(alice.body.token), { alg: 'ES256', typ: 'JWT', kid: /^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$/ })

    const anonymous = await token(query)
    t.equal(anonymous.status, 200, 'anonymous callers get a token too')
    t.same(access(anonymous.body.token), [
      { type: 'repository', name: 'library/base', actions: ['pull'] },
      { type: 'registry', name: 'catalog', actions: ['*'] },
    ], 'with what anonymous callers may do')
    t.equal(decodeJwt(anonymous.body.token).sub, '')

    const wrong = await token(query, { Authorization: basic('alice', 'nope') })
    t.equal(wrong.status, 401, 'a wrong password gets no token')
    t.match(wrong.headers.get('www-authenticate'), /^Bearer realm=/)
    t.same(access((await token('service=stevedore&scope=repository%3A..%2Fetc%3Apull&scope=garbage', { Authorization: basic('alice', 'alice-pw') })).body.token), [], 'malformed scopes grant nothing')
  })

  t.test('tokens open what they grant and nothing else', async t => {
    const { body } = await token('service=stevedore&scope=repository:team/app:pull', { Authorization: basic('alice', 'alice-pw') })
    const bearer = { Authorization: `Bearer ${body.token}`, Accept: OCI_MANIFEST }
    const ok = await fetch(`${stevedore.url}/v2/team/app/manifests/v1`, { headers: bearer })
    t.equal(ok.status, 200)
    t.equal(ok.headers.get('docker-content-digest'), images.get('team/app')?.manifestDigest)
    const other = await fetch(`${stevedore.url}/v2/other/secret/manifests/v1`, { headers: bearer })
    t.equal(other.status, 401, 'another repository: 401')
    t.equal(other.headers.get('www-authenticate'), `Bearer realm="${realm}",service="stevedore",scope="repository:other/secret:pull",error="insufficient_scope"`)
    t.match(await other.json(), { errors: [{ code: 'UNAUTHORIZED', detail: [{ Type: 'repository', Name: 'other/secret', Action: 'pull' }] }] })
    const catalog = await fetch(`${stevedore.url}/v2/_catalog`, { headers: bearer })
    t.equal(catalog.status, 401, 'the catalog needs its own scope')
    t.match(catalog.headers.get('www-authenticate'), /scope="registry:catalog:\*",error="insufficient_scope"/)
    const forged = `${body.token.slice(0, -4)}AAAA`
    const bad = await fetch(`${stevedore.url}/v2/team/app/manifests/v1`, { headers: { ...bearer, Authorization: `Bearer ${forged}` } })
    t.equal(bad.status, 401, 'a tampered token: 401')
    t.match(bad.headers.get('www-authenticate'), /error="invalid_token"/)
  })

  t.test('skopeo login, then pulls with the bearer flow; bcrypt runs per token, not per request', async t => {
    const authFile = join(dir, 'auth.json')
    await writeFile(authFile, '{"auths":{}}\n')
    const env = { REGISTRY_AUTH_FILE: authFile }
    const bcryptBefore = stevedore.logRecords().filter(r => r.msg === 'password checked with bcrypt').length
    await skopeo(['login', '--tls-verify=false', '-u', 'alice', '-p', 'alice-pw', stevedore.host], { env })
    await pullToLayout(`${stevedore.host}/team/app:v1`, join(dir, 'pulled'), 'v1', { env })
    t.same(await compareLayoutBlobs(join(dir, 'team/app'), join(dir, 'pulled')), [], 'byte-identical')
    await pullToLayout(`${stevedore.host}/team/app:v1`, join(dir, 'again'), 'v1', { env })
    const records = stevedore.logRecords()
    const tokens = records.filter(r => r.msg === 'request' && r.path === '/auth/token').length
    const bearerRequests = records.filter(r => r.msg === 'request' && typeof r.path === 'string' && r.path.startsWith('/v2/team/app/') && r.status === 200).length
    t.ok(bearerRequests >= 6, `${bearerRequests} authorized registry requests`)
    t.ok(tokens >= 1 && tokens < bearerRequests, `${tokens} token requests for them`)
    const bcrypt = records.filter(r => r.msg === 'password checked with bcrypt').length - bcryptBefore
    t.ok(bcrypt <= 1, `bcrypt ran ${bcrypt} time(s): verified passwords are remembered`)
    await t.rejects(pullToLayout(`${stevedore.host}/other/secret:v1`, join(dir, 'secret'), 'v1', { env }), /unauthorized|denied|authentication required/i, 'alice cannot pull outside her rules')
    await pullToLayout(`${stevedore.host}/library/base:v1`, join(dir, 'anon'), 'v1')
    t.pass('an anonymous skopeo pulls library/base through an anonymous token')
  })

  t.test('the OAuth2 password grant (containerd asks this way first)', async t => {
    const post = (form: Record<string, string>) =>
      fetch(realm, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString() })
    const good = await post({ grant_type: 'password', username: 'alice', password: 'alice-pw', service: 'stevedore', scope: 'repository:team/app:pull', client_id: 'test' })
    t.equal(good.status, 200)
    t.same(access(((await good.json()) as TokenAnswer).access_token), [{ type: 'repository', name: 'team/app', actions: ['pull'] }])
    const wrong = await post({ grant_type: 'password', username: 'alice', password: 'x', service: 'stevedore' })
    t.equal(wrong.status, 401)
    const refresh = await post({ grant_type: 'refresh_token', refresh_token: 'x', service: 'stevedore' })
    t.equal(refresh.status, 400)
    t.match(await refresh.json(), { error: 'unsupported_grant_type' })
  })

  t.test('the key is kept: a new instance on the same key file accepts the tokens issued before', async t => {
    const { body } = await token('service=stevedore&scope=repository:team/app:pull', { Authorization: basic('alice', 'alice-pw') })
    const next = await startInProcess(t, join(dir, 'cache'), config)
    const res = await fetch(`${next.url}/v2/team/app/manifests/v1`, { headers: { Authorization: `Bearer ${body.token}`, Accept: OCI_MANIFEST } })
    t.equal(res.status, 200)
  })
})
