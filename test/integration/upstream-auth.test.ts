// Upstreams that want credentials, with a real Distribution as the upstream:
// `auth: htpasswd` (Basic, where Distribution's own proxy fails) and
// `auth: token` (Bearer, tokens from a token server written here), pulled
// through Stevedore by skopeo. Images come back byte-identical, tokens are
// reused until they expire, and no credential reaches Stevedore's logs.
import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { fromStevedore, settle } from '../helpers/access-log.js'
import { compareLayoutBlobs } from '../helpers/blobs.js'
import { startDistribution } from '../helpers/distribution.js'
import { OCI_MANIFEST, writeOciImage } from '../helpers/images.js'
import { pullToLayout, pushLayout } from '../helpers/skopeo.js'
import { startStevedore, type StevedoreProc } from '../helpers/stevedore.js'
import { startTokenServer } from '../helpers/token-server.js'

const run = promisify(execFile)

interface ErrorBody {
  errors?: { code: string; message?: string }[]
}

/** Everything a Stevedore process wrote: stdout (JSON log) and stderr. */
const output = (proc: StevedoreProc): string => `${proc.logs()}${proc.stderr()}`

const basic = (user: string, password: string): string => Buffer.from(`${user}:${password}`).toString('base64')

/** Waits (2 s deadline) for the access-log line of a request: Stevedore writes it after the response. */
async function logged(proc: StevedoreProc, path: string, status: number): Promise<boolean> {
  for (const end = Date.now() + 2000; Date.now() < end; await new Promise(resolve => setTimeout(resolve, 50))) {
    if (proc.logRecords().some(r => r.path === path && r.status === status)) return true
  }
  return false
}

/** GET/HEAD of a manifest by tag through Stevedore, as a client that wants OCI. */
function manifest(proc: StevedoreProc, repo: string, tag: string, method = 'GET'): Promise<Response> {
  return fetch(`${proc.url}/v2/${repo}/manifests/${tag}`, { method, headers: { Accept: OCI_MANIFEST } })
}

t.test('a Basic-auth upstream (Distribution auth: htpasswd)', async t => {
  const dir = t.testdir()
  const USER = 'puller'
  const PASSWORD = 'Basic-Pa55-7d1e0c'
  const WRONG = 'Wrong-Pa55-93bf42'
  const htpasswd = join(dir, 'htpasswd')
  const { stdout: entry } = await run('htpasswd', ['-Bbn', USER, PASSWORD])
  await writeFile(htpasswd, entry.trim() + '\n')
  const upstream = await startDistribution(t, { config: { auth: { htpasswd: { realm: 'test', path: htpasswd } } } })
  await writeOciImage(join(dir, 'image'), { tag: 'v1', seed: 'ua-basic', layerSizes: [1500, 120_000, 30_000] })
  await pushLayout(join(dir, 'image'), 'v1', `${upstream.host}/team/basic:v1`, { creds: `${USER}:${PASSWORD}` })
  const anonymous = await fetch(`${upstream.url}/v2/team/basic/manifests/v1`, { headers: { Accept: OCI_MANIFEST } })
  t.equal(anonymous.status, 401, 'the upstream refuses anonymous pulls')
  t.match(anonymous.headers.get('www-authenticate') ?? '', /^Basic /i, 'with a Basic challenge')

  t.test('with the right password: byte-identical pull', async t => {
    const stevedore = await startStevedore(t, {
      config: { proxy: { remoteurl: upstream.url, username: USER, password: PASSWORD, tagttl: '5m' } },
    })
    await pullToLayout(`${stevedore.host}/team/basic:v1`, join(dir, 'pulled'), 'v1')
    t.same(await compareLayoutBlobs(join(dir, 'image'), join(dir, 'pulled')), [], 'pulled through Stevedore byte-identical')

    const seen = await settle(upstream)
    const refused = seen.filter(r => r.status === 401)
    t.ok(refused.length <= 1, `at most one 401 (the first, anonymous request): saw ${refused.length}`)
    t.ok(seen.filter(r => r.status === 200).length >= 5, 'manifest, config and 3 layers came from the upstream with credentials')
    t.notMatch(output(stevedore), PASSWORD, 'the password is not in the logs')
    t.notMatch(output(stevedore), basic(USER, PASSWORD), 'nor the Authorization header')
  })

  t.test('with a wrong password: a clear refusal, no password in the logs', async t => {
    const stevedore = await startStevedore(t, {
      config: { proxy: { remoteurl: upstream.url, username: USER, password: WRONG, tagttl: '5m' } },
    })
    const before = fromStevedore(upstream).length
    const res = await manifest(stevedore, 'team/basic', 'v1')
    const text = await res.text()
    const body = JSON.parse(text) as ErrorBody
    const code = body.errors?.[0]?.code
    t.ok(
      (res.status === 403 && code === 'DENIED') || (res.status === 401 && code === 'UNAUTHORIZED'),
      `manifest GET refused with 403 DENIED or 401 UNAUTHORIZED: got ${res.status} ${code}`,
    )
    t.match(body.errors?.[0]?.message ?? '', /upstream/, 'the message names the upstream as the one refusing')
    t.notMatch(text, WRONG, 'the response does not echo the password')
    const upstreamSaw = (await settle(upstream)).slice(before)
    t.ok(upstreamSaw.length >= 1 && upstreamSaw.every(r => r.status === 401), 'the upstream was asked, and refused')

    await t.rejects(pullToLayout(`${stevedore.host}/team/basic:v1`, join(dir, 'refused'), 'v1'), 'skopeo pull through Stevedore fails')
    t.ok(await logged(stevedore, '/v2/team/basic/manifests/v1', res.status), 'the refusal is in the access log')
    const log = output(stevedore)
    t.notMatch(log, WRONG, 'the wrong password is not in the logs')
    t.notMatch(log, basic(USER, WRONG), 'nor the Authorization header')
  })
})

t.test('a Bearer-token upstream (Distribution auth: token)', async t => {
  const dir = t.testdir()
  const SERVICE = 'test-registry'
  const users = { pusher: 'push-Pa55-41c2', stevedore: 'Token-Pa55-0e77b9' }
  const tokens = await startTokenServer(t, { service: SERVICE, issuer: 'test-issuer', users, expiresIn: 300 })
  const upstream = await startDistribution(t, {
    config: { auth: { token: { realm: tokens.realm, service: SERVICE, issuer: 'test-issuer', rootcertbundle: tokens.certPath } } },
  })
  const image = await writeOciImage(join(dir, 'image'), { tag: 'v1', seed: 'ua-token', layerSizes: [2000, 90_000, 150_000, 12_000] })
  t.equal(image.manifests[0]?.layers.length, 4, 'a 4-layer image')
  await pushLayout(join(dir, 'image'), 'v1', `${upstream.host}/team/tokens:v1`, { creds: `pusher:${users.pusher}` })
  t.ok(tokens.count('pusher') >= 1, `skopeo's push did the token dance (${tokens.count('pusher')} tokens)`)
  const anonymous = await fetch(`${upstream.url}/v2/team/tokens/manifests/v1`, { headers: { Accept: OCI_MANIFEST } })
  t.equal(anonymous.status, 401, 'the upstream refuses requests without a token')
  t.match(anonymous.headers.get('www-authenticate') ?? '', /^Bearer realm=/i, 'with a Bearer challenge')

  // tagttl 0: every pull asks the upstream about the tag, so the second pull needs a token too.
  const proxy = { remoteurl: upstream.url, username: 'stevedore', password: users.stevedore, tagttl: '0s' }

  t.test('two pulls of a 4-layer image cost one token', async t => {
    const stevedore = await startStevedore(t, { config: { proxy } })
    const started = Date.now()
    await pullToLayout(`${stevedore.host}/team/tokens:v1`, join(dir, 'first'), 'v1')
    const firstMs = Date.now() - started
    t.same(await compareLayoutBlobs(join(dir, 'image'), join(dir, 'first')), [], 'first pull byte-identical')
    const afterFirst = tokens.count('stevedore')
    const first = await settle(upstream)
    const served = first.filter(r => r.status === 200)
    t.ok(served.length >= 6, `the upstream served ${served.length} requests to Stevedore (manifest, config, 4 layers)`)
    t.ok(afterFirst >= 1 && afterFirst <= 2, `first pull: ${afterFirst} token request(s) for ${first.length} upstream requests`)
    t.ok(first.filter(r => r.status === 401).length <= 1, 'only the first, tokenless request met a 401')

    await pullToLayout(`${stevedore.host}/team/tokens:v1`, join(dir, 'second'), 'v1')
    t.same(await compareLayoutBlobs(join(dir, 'image'), join(dir, 'second')), [], 'second pull byte-identical')
    const second = (await settle(upstream)).slice(first.length)
    t.ok(second.length >= 1 && second.every(r => r.status === 200), 'the second pull asked the upstream about the tag, with a valid token')
    t.equal(tokens.count('stevedore'), afterFirst, 'and reused the token: no new token request')

    const asked = tokens.requests.filter(r => r.user === 'stevedore')
    t.same(
      [...new Set(asked.map(r => `${r.service} ${r.scopes.join(' ')}`))],
      [`${SERVICE} repository:team/tokens:pull`],
      'Stevedore asked for pull on the repository, for the upstream service, with its credentials',
    )
    t.equal(tokens.requests.filter(r => r.user === undefined).length, 0, 'and never anonymously')
    t.notMatch(output(stevedore), users.stevedore, 'the password is not in the logs')
    t.comment(`first pull ${firstMs} ms; tokens for Stevedore: ${afterFirst} after pull 1, ${tokens.count('stevedore')} after pull 2`)
  })

  t.test('a token is fetched again once it expires', async t => {
    tokens.expiresIn = 2
    t.teardown(() => {
      tokens.expiresIn = 300
    })
    const stevedore = await startStevedore(t, { config: { proxy } })
    const before = tokens.count('stevedore')
    const head = async (): Promise<number> => (await manifest(stevedore, 'team/tokens', 'v1', 'HEAD')).status
    t.equal(await head(), 200, 'a tag HEAD through Stevedore (asks the upstream: tagttl 0)')
    t.equal(tokens.count('stevedore'), before + 1, 'fetched one token')
    const firstToken = tokens.requests.filter(r => r.user === 'stevedore').at(-1)
    if (firstToken === undefined) throw new Error('no token request recorded')
    t.same([await head(), await head(), await head()], [200, 200, 200], 'three more HEADs at once')
    t.equal(tokens.count('stevedore'), before + 1, 'reuse the token while it is valid')

    // Poll with a deadline until the token server sees the next request for Stevedore.
    const deadline = firstToken.at + 2000 + 5000
    const statuses: number[] = []
    while (tokens.count('stevedore') === before + 1 && Date.now() < deadline) {
      statuses.push(await head())
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    t.equal(tokens.count('stevedore'), before + 2, 'a second token was fetched')
    t.ok(statuses.every(s => s === 200), `every HEAD while waiting succeeded (${statuses.length} HEADs)`)
    const refetch = tokens.requests.filter(r => r.user === 'stevedore').at(-1)
    const gapMs = (refetch?.at ?? Infinity) - firstToken.at
    t.ok(gapMs >= 1000, `not before the token was due (${gapMs} ms after the first)`)
    t.ok(gapMs <= 2000 + 1000, `nor long after it expired (expires_in 2 s; refetched after ${gapMs} ms)`)
    t.comment(`token refetched ${gapMs} ms after the first (expires_in 2 s), ${statuses.length} polling HEADs`)
  })

  t.test('with a wrong password: the token server refuses, Stevedore says so', async t => {
    const WRONG = 'Wrong-Token-Pa55-5a1f'
    const stevedore = await startStevedore(t, { config: { proxy: { ...proxy, password: WRONG } } })
    const refusedBefore = tokens.requests.filter(r => r.user === 'stevedore' && r.status === 401).length
    const res = await manifest(stevedore, 'team/tokens', 'v1')
    const text = await res.text()
    const body = JSON.parse(text) as ErrorBody
    const code = body.errors?.[0]?.code
    t.ok(
      (res.status === 401 && code === 'UNAUTHORIZED') || (res.status === 403 && code === 'DENIED'),
      `manifest GET refused with 401 UNAUTHORIZED or 403 DENIED: got ${res.status} ${code}`,
    )
    t.match(body.errors?.[0]?.message ?? '', /token server|upstream/, `a clear message: ${body.errors?.[0]?.message}`)
    t.notMatch(text, WRONG, 'the response does not echo the password')
    t.equal(tokens.requests.filter(r => r.user === 'stevedore' && r.status === 401).length, refusedBefore + 1, 'the token server refused it once')
    t.ok(await logged(stevedore, '/v2/team/tokens/manifests/v1', res.status), 'the refusal is in the access log')
    t.notMatch(output(stevedore), WRONG, 'the password is not in the logs')
    t.notMatch(output(stevedore), basic('stevedore', WRONG), 'nor the Authorization header')
  })
})
