// Stevedore verifying an external issuer's bearer tokens (`auth.token`), in
// front of a real Distribution: skopeo does Docker's token flow against a
// token server written with jose (keys from `rootcertbundle` named by `x5c`
// or by libtrust `kid`, or from a JWKS file or URL); minted tokens that are
// forged, expired, early, for another audience or issuer, or that do not
// grant the repository are refused with the right challenge; and
// Distribution itself accepts the same `kid`-only tokens, so the libtrust
// key ID is computed as it computes it.
import { createHash } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { calculateJwkThumbprint, exportJWK } from 'jose'
import t, { type Test } from 'tap'
import { libtrustKeyId } from '../../src/auth/keys.js'
import { compareLayoutBlobs } from '../helpers/blobs.js'
import { startDistribution } from '../helpers/distribution.js'
import { OCI_MANIFEST, writeOciImage } from '../helpers/images.js'
import {
  asIssuer,
  caSignedKey,
  certificateAuthority,
  hmacWithPublicKey,
  jwkOf,
  mint,
  pullOf,
  selfSignedKey,
  startJwtIssuer,
  unsecuredToken,
  type Claims,
  type MintOptions,
  type SigningKey,
} from '../helpers/jwt-issuer.js'
import { pullToLayout, pushLayout } from '../helpers/skopeo.js'
import { startInProcess, type InProcess } from '../helpers/inprocess.js'

const SERVICE = 'stevedore-test'
const ISSUER = 'test-jwt-issuer'
const USER = 'puller'
const PASSWORD = 'Jwt-Pa55-5c0e11'
const CREDS = `${USER}:${PASSWORD}`
const APP = 'team/app'
const OTHER = 'team/other'

interface Answer {
  status: number
  headers: Headers
  body: Buffer
}

async function get(url: string, token?: string, accept = OCI_MANIFEST): Promise<Answer> {
  const headers: Record<string, string> = { Accept: accept }
  if (token !== undefined) headers.Authorization = `Bearer ${token}`
  const res = await fetch(url, { headers })
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) }
}

const sha256 = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`

/** `Bearer realm="…",service="…",…` → scheme and parameters. */
function challengeOf(header: string | null): { scheme: string; params: Record<string, string> } {
  const value = header ?? ''
  const space = value.indexOf(' ')
  const params: Record<string, string> = {}
  for (const m of value.slice(space + 1).matchAll(/(\w+)="([^"]*)"/g)) params[m[1] ?? ''] = m[2] ?? ''
  return { scheme: value.slice(0, space), params }
}


interface Refusal {
  /** The scope the challenge names. */
  scope: string
  /** Its `error=`; undefined: none (no token sent). */
  error?: 'invalid_token' | 'insufficient_scope'
  realm: string
}

/** A 401 UNAUTHORIZED in OCI JSON, with the Bearer challenge asked for, and nothing of the content. */
function isRefusal(t: Test, answer: Answer, expected: Refusal, secret: { digest: string; bytes: Buffer }): void {
  t.equal(answer.status, 401, '401')
  const body = JSON.parse(answer.body.toString('utf8')) as { errors?: { code?: string }[] }
  t.equal(body.errors?.[0]?.code, 'UNAUTHORIZED', 'OCI error code UNAUTHORIZED')
  const { scheme, params } = challengeOf(answer.headers.get('www-authenticate'))
  t.equal(scheme, 'Bearer', 'a Bearer challenge')
  const { scope, ...rest } = params
  t.same(
    rest,
    { realm: expected.realm, service: SERVICE, ...(expected.error === undefined ? {} : { error: expected.error }) },
    `realm, service${expected.error === undefined ? ', no error' : `, error="${expected.error}"`}`,
  )
  t.equal(scope, expected.scope, `scope="${expected.scope}"`)
  t.equal(answer.headers.get('docker-content-digest'), null, 'no Docker-Content-Digest')
  t.notOk(answer.body.includes(secret.bytes) || answer.body.includes(secret.digest), 'nothing of the content in the body')
}

t.test('bearer tokens of an external issuer', async t => {
  const dir = t.testdir()
  const ec = await selfSignedKey(dir, 'issuer-ec', 'ec')
  const rsa = await selfSignedKey(dir, 'issuer-rsa', 'rsa')
  const ca = await certificateAuthority(dir, 'issuer-ca')
  const leaf = await caSignedKey(dir, 'issuer-leaf', ca, 'ec')
  // Never trusted: signs the forgeries.
  const rogue = await selfSignedKey(dir, 'rogue', 'ec')
  // Signed by `leaf`, which the bundle CA issued but is not a CA itself: Go's x509 (so Distribution) refuses the chain.
  const underLeaf = await caSignedKey(dir, 'under-leaf', asIssuer(leaf))
  const bundle = join(dir, 'bundle.pem')
  await writeFile(bundle, ec.certPem + rsa.certPem + ca.certPem)

  const upstream = await startDistribution(t)
  const image = await writeOciImage(join(dir, 'image'), { tag: 'v1', seed: 'auth-token', layerSizes: [1500, 40_000] })
  await pushLayout(join(dir, 'image'), 'v1', `${upstream.host}/${APP}:v1`)
  await pushLayout(join(dir, 'image'), 'v1', `${upstream.host}/${OTHER}:v1`)
  const manifest = image.manifests[0]
  const layer = manifest?.layers[1]
  if (manifest === undefined || layer === undefined) throw new Error('the image has no manifest or second layer')

  const issuer = await startJwtIssuer(t, { issuer: ISSUER, service: SERVICE, users: { [USER]: PASSWORD }, signer: { key: ec, header: 'x5c' } })
  const proxy = { remoteurl: upstream.url, tagttl: '5m' }
  const tokenConfig = { realm: issuer.realm, service: SERVICE, issuer: ISSUER }
  let instances = 0
  // In this process (so coverage sees the verifier), each instance on storage of its own.
  const start = (t: Test, config: Record<string, unknown>): Promise<InProcess> => startInProcess(t, join(dir, `cache-${instances++}`), config, {}, { capture: 'info' })
  const stevedore = await start(t, { proxy, auth: { token: { ...tokenConfig, rootcertbundle: bundle } } })

  const good: Claims = { issuer: ISSUER, audience: SERVICE, subject: USER, access: [pullOf(APP)] }
  const manifestUrl = (proc: InProcess | { url: string }, name = APP): string => `${proc.url}/v2/${name}/manifests/v1`
  /** The manifest bytes as Distribution serves them, to recognise them in refusals and check good answers. */
  const direct = await get(manifestUrl(upstream))
  t.equal(sha256(direct.body), image.manifestDigest, 'the upstream serves the manifest')
  const secret = { digest: image.manifestDigest, bytes: direct.body }

  /** The good token on the same URL is served: 200 and the right digest. */
  const served = async (t: Test, url: string, token: string, digest = image.manifestDigest): Promise<void> => {
    const answer = await get(url, token)
    t.equal(answer.status, 200, 'a good token: 200')
    t.equal(sha256(answer.body), digest, 'with the right content')
    if (url.includes('/manifests/')) t.equal(answer.headers.get('docker-content-digest'), digest, 'and digest header')
  }

  const pull = async (t: Test, proc: InProcess, name: string): Promise<void> => {
    const before = issuer.issued(USER)
    const out = join(t.testdir(), 'pulled')
    await pullToLayout(`${proc.host}/${APP}:v1`, out, 'v1', { creds: CREDS })
    t.same(await compareLayoutBlobs(join(dir, 'image'), out), [], `skopeo pulled byte-identical with ${name} tokens`)
    t.ok(issuer.issued(USER) > before, 'after fetching a token from the issuer')
  }

  t.test('skopeo pulls, keys from rootcertbundle', async t => {
    const signers = [
      { name: 'x5c (self-signed EC certificate)', signer: { key: ec, header: 'x5c' as const } },
      { name: 'x5c (leaf and CA chain)', signer: { key: leaf, header: 'x5c' as const } },
      { name: 'kid-only (libtrust ID of the EC key)', signer: { key: ec, header: 'kid' as const } },
      { name: 'kid-only (libtrust ID of the RSA key)', signer: { key: rsa, header: 'kid' as const } },
    ]
    for (const { name, signer } of signers) {
      issuer.signer = signer
      await t.test(name, async t => pull(t, stevedore, name))
    }
    issuer.signer = { key: ec, header: 'x5c' }
    t.notOk(stevedore.logRecords().some(r => r.msg === 'bearer token refused'), 'no token skopeo fetched was refused')
  })

  t.test('refusals, and the good token on the same URL', async t => {
    const url = manifestUrl(stevedore)
    const goodToken = await mint({ key: ec, ...good })
    const refusal = (error: 'invalid_token' | 'insufficient_scope', scope = `repository:${APP}:pull`): Refusal => ({ realm: issuer.realm, scope, error })

    t.test('no token at all: the challenge, without an error', async t => {
      isRefusal(t, await get(url), { realm: issuer.realm, scope: `repository:${APP}:pull` }, secret)
      await served(t, url, goodToken)
    })

    const forged: [string, () => Promise<string> | string][] = [
      ['signed by another key, x5c naming a trusted certificate', () => mint({ key: rogue, ...good, x5c: ec.x5c })],
      ['signed by another key, kid of a trusted key', () => mint({ key: rogue, ...good, header: 'kid', kid: ec.kid })],
      ['an unknown kid', () => mint({ key: rogue, ...good, header: 'kid' })],
      ['x5c of an untrusted self-signed certificate', () => mint({ key: rogue, ...good })],
      ['x5c chain whose CA is not the bundle\'s', async () => {
        const otherCa = await certificateAuthority(dir, 'other-ca')
        return mint({ key: await caSignedKey(dir, 'other-leaf', otherCa), ...good })
      }],
      ['x5c chain through a certificate that is not a CA', () => mint({ key: underLeaf, ...good })],
      ['expired (exp 120 s ago, beyond the 60 s skew)', () => mint({ key: ec, ...good, expiresIn: -120 })],
      ['no exp', () => mint({ key: ec, ...good, expiresIn: null })],
      ['not yet valid (nbf in 120 s, beyond the skew)', () => mint({ key: ec, ...good, notBefore: 120 })],
      ['a wrong aud', () => mint({ key: ec, ...good, audience: 'another-service' })],
      ['no aud', () => mint({ key: ec, ...good, audience: undefined } as MintOptions)],
      ['a wrong iss', () => mint({ key: ec, ...good, issuer: 'another-issuer' })],
      ['alg none, naming a trusted kid', () => unsecuredToken(good, ec.kid)],
      ['HS256 with the public key as secret, by kid', () => hmacWithPublicKey(ec, good, 'kid')],
      ['HS256 with the public key as secret, by x5c', () => hmacWithPublicKey(ec, good, 'x5c')],
      ['a tampered payload', () => {
        const [head, , sig] = goodToken.split('.')
        const payload = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(goodToken.split('.')[1] ?? '', 'base64url').toString()), access: [pullOf(OTHER)] }))
        return `${head}.${payload.toString('base64url')}.${sig}`
      }],
      ['a truncated signature', () => goodToken.slice(0, -8)],
      ['garbage', () => 'garbage'],
      ['three segments of garbage', () => 'abc.def.ghi'],
    ]
    for (const [name, make] of forged) {
      t.test(`${name}: invalid_token`, async t => {
        isRefusal(t, await get(url, await make()), refusal('invalid_token'), secret)
        await served(t, url, goodToken)
      })
    }

    const narrow: [string, Claims['access'], string?][] = [
      ['access lacking the repository', []],
      ['access to the repository for push only', [{ type: 'repository', name: APP, actions: ['push'] }]],
      ['access of another type with the same name', [{ type: 'registry', name: APP, actions: ['pull'] }]],
      [`a token for ${OTHER} used on ${APP}`, [pullOf(OTHER)]],
    ]
    for (const [name, access] of narrow) {
      t.test(`${name}: insufficient_scope`, async t => {
        isRefusal(t, await get(url, await mint({ key: ec, ...good, access })), refusal('insufficient_scope'), secret)
        await served(t, url, goodToken)
      })
    }

    t.test('a token for A on B, and on B for B', async t => {
      const forApp = await mint({ key: ec, ...good })
      isRefusal(t, await get(manifestUrl(stevedore, OTHER), forApp), refusal('insufficient_scope', `repository:${OTHER}:pull`), secret)
      await served(t, manifestUrl(stevedore, OTHER), await mint({ key: ec, ...good, access: [pullOf(OTHER)] }))
    })

    t.test('blobs are guarded the same way', async t => {
      const blobUrl = `${stevedore.url}/v2/${APP}/blobs/${layer.digest}`
      const blob = await get(`${upstream.url}/v2/${APP}/blobs/${layer.digest}`)
      const blobSecret = { digest: layer.digest, bytes: blob.body.subarray(0, 512) }
      isRefusal(t, await get(blobUrl, await mint({ key: rogue, ...good, header: 'kid', kid: ec.kid })), refusal('invalid_token'), blobSecret)
      isRefusal(t, await get(blobUrl, await mint({ key: ec, ...good, access: [pullOf(OTHER)] })), refusal('insufficient_scope'), blobSecret)
      await served(t, blobUrl, goodToken, layer.digest)
    })

    const accepted: [string, () => Promise<string>][] = [
      ['exp 30 s ago, within the 60 s skew', () => mint({ key: ec, ...good, expiresIn: -30 })],
      ['nbf in 30 s, within the skew', () => mint({ key: ec, ...good, notBefore: 30 })],
      ['aud a list holding the service', () => mint({ key: ec, ...good, audience: ['another-service', SERVICE] })],
      ['x5c the leaf alone, issued by a bundle CA', () => mint({ key: leaf, ...good, x5c: leaf.x5c.slice(0, 1) })],
      ['kid the RFC 7638 thumbprint of a bundle key', async () => mint({ key: rsa, ...good, header: 'kid', kid: await calculateJwkThumbprint(await exportJWK(rsa.publicKey)) })],
      ['access actions "*"', () => mint({ key: ec, ...good, access: [{ type: 'repository', name: APP, actions: ['*'] }] })],
    ]
    for (const [name, make] of accepted) {
      t.test(`accepted: ${name}`, async t => served(t, url, await make()))
    }

    t.test('the base URL: a bad token refused, a good one welcome', async t => {
      const bad = await get(`${stevedore.url}/v2/`, await mint({ key: ec, ...good, expiresIn: -120 }))
      t.equal(bad.status, 401)
      t.equal(challengeOf(bad.headers.get('www-authenticate')).params.error, 'invalid_token')
      t.equal((await get(`${stevedore.url}/v2/`, goodToken)).status, 200)
    })

    t.test('no token reaches the log', async t => {
      const log = stevedore.logs()
      t.notOk(log.includes(goodToken), 'the good token is not logged')
      t.notOk(log.includes(goodToken.split('.')[2] ?? '-'), 'nor its signature')
    })
  })

  t.test('the catalog wants registry:catalog:*', async t => {
    const url = `${stevedore.url}/v2/_catalog`
    const noCatalog = await mint({ key: ec, ...good })
    const answer = await get(url, noCatalog, 'application/json')
    t.equal(answer.status, 401)
    t.equal((JSON.parse(answer.body.toString()) as { errors: { code: string }[] }).errors[0]?.code, 'UNAUTHORIZED')
    t.same(challengeOf(answer.headers.get('www-authenticate')).params, { realm: issuer.realm, service: SERVICE, scope: 'registry:catalog:*', error: 'insufficient_scope' })
    t.notOk(answer.body.includes(APP), 'no repository named')
    const ok = await get(url, await mint({ key: ec, ...good, access: [{ type: 'registry', name: 'catalog', actions: ['*'] }] }), 'application/json')
    t.equal(ok.status, 200, 'with registry:catalog:*: 200')
    t.ok(((JSON.parse(ok.body.toString()) as { repositories: string[] }).repositories).includes(APP), `listing ${APP}, pulled before`)
  })

  t.test('Distribution accepts the same kid-only tokens', async t => {
    // A second Distribution over the upstream's storage, guarded by the same issuer and bundle.
    const guarded = await startDistribution(t, {
      root: upstream.root,
      config: { auth: { token: { realm: issuer.realm, service: SERVICE, issuer: ISSUER, rootcertbundle: bundle } } },
    })
    const refused = await get(manifestUrl(guarded))
    t.equal(refused.status, 401, 'Distribution refuses a request without a token')
    for (const key of [ec, rsa]) {
      const kid = libtrustKeyId(key.publicKey)
      const token = await mint({ key, ...good, header: 'kid', kid })
      t.equal(JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString()).x5c, undefined, 'the header has no x5c')
      await t.test(`${key.alg}: kid ${kid}`, async t => {
        await served(t, manifestUrl(guarded), token)
        await served(t, manifestUrl(stevedore), token)
      })
    }
    t.test('and both refuse the same forgeries', async t => {
      for (const [name, token] of [
        ['another key under a trusted kid', await mint({ key: rogue, ...good, header: 'kid', kid: ec.kid })],
        ['an unknown kid', await mint({ key: rogue, ...good, header: 'kid' })],
      ] as const) {
        t.equal((await get(manifestUrl(guarded), token)).status, 401, `Distribution: ${name}`)
        t.equal((await get(manifestUrl(stevedore), token)).status, 401, `Stevedore: ${name}`)
      }
    })
    t.test('an x5c chain through a leaf that is not a CA: both refuse', async t => {
      const token = await mint({ key: underLeaf, ...good })
      t.equal((await get(manifestUrl(guarded), token)).status, 401, 'Distribution')
      t.equal((await get(manifestUrl(stevedore), token)).status, 401, 'Stevedore')
    })
    t.test('a token without sub: Distribution serves it', async t => {
      const token = await mint({ key: ec, ...good, subject: undefined, header: 'kid' } as MintOptions)
      await served(t, manifestUrl(guarded), token)
      const answer = await get(manifestUrl(stevedore), token)
      t.equal(answer.status, 200, `Stevedore: ${answer.status}`)
    })
    t.test('an x5c chain through the bundle CA: both accept', async t => {
      const token = await mint({ key: leaf, ...good })
      await served(t, manifestUrl(guarded), token)
      await served(t, manifestUrl(stevedore), token)
    })
  })

  const jwksCase = async (t: Test, jwks: (keys: SigningKey[]) => Promise<string>, what: string): Promise<InProcess> => {
    const proc = await start(t, { proxy, auth: { token: { ...tokenConfig, jwks: await jwks([ec, rsa]) } } })
    for (const [key, kid] of [[ec, 'jwks-ec-1'], [rsa, 'jwks-rsa-1']] as const) {
      issuer.signer = { key, header: 'kid', kid }
      await t.test(`skopeo pulls with ${key.alg} tokens named by a ${what} kid`, async t => pull(t, proc, `${what} ${key.alg}`))
    }
    issuer.signer = { key: ec, header: 'x5c' }
    const url = manifestUrl(proc)
    const goodToken = await mint({ key: ec, ...good, header: 'kid', kid: 'jwks-ec-1' })
    const refusal: Refusal = { realm: issuer.realm, scope: `repository:${APP}:pull`, error: 'invalid_token' }
    for (const [name, make] of [
      ['signed by another key under a JWKS kid', () => mint({ key: rogue, ...good, header: 'kid', kid: 'jwks-ec-1' })],
      ['an RSA kid on an EC-signed token', () => mint({ key: ec, ...good, header: 'kid', kid: 'jwks-rsa-1' })],
      ['a kid the JWKS does not hold', () => mint({ key: rogue, ...good, header: 'kid', kid: 'jwks-unknown' })],
      ['x5c without a rootcertbundle', () => mint({ key: ec, ...good })],
      ['HS256 with the public key as secret', () => hmacWithPublicKey({ ...ec, kid: 'jwks-ec-1' }, good, 'kid')],
      ['expired beyond the skew', () => mint({ key: ec, ...good, header: 'kid', kid: 'jwks-ec-1', expiresIn: -120 })],
    ] as const) {
      await t.test(`${what}: ${name}: invalid_token`, async t => {
        isRefusal(t, await get(url, await make()), refusal, secret)
        await served(t, url, goodToken)
      })
    }
    await t.test(`${what}: a JWKS token lacking the repository: insufficient_scope`, async t => {
      isRefusal(t, await get(url, await mint({ key: rsa, ...good, header: 'kid', kid: 'jwks-rsa-1', access: [pullOf(OTHER)] })), { ...refusal, error: 'insufficient_scope' }, secret)
      await served(t, url, goodToken)
    })
    return proc
  }

  t.test('keys from a JWKS file', async t => {
    const file = join(t.testdir(), 'jwks.json')
    const proc = await jwksCase(t, async keys => {
      await writeFile(file, JSON.stringify({ keys: [await jwkOf(keys[0] as SigningKey, 'jwks-ec-1'), await jwkOf(keys[1] as SigningKey, 'jwks-rsa-1')] }))
      return file
    }, 'JWKS file')

    t.test('a key dropped from the file: its tokens refused, even ones verified before', async t => {
      const ecToken = await mint({ key: ec, ...good, header: 'kid', kid: 'jwks-ec-1' })
      const rsaToken = await mint({ key: rsa, ...good, header: 'kid', kid: 'jwks-rsa-1' })
      await served(t, manifestUrl(proc), ecToken)
      await writeFile(file, JSON.stringify({ keys: [await jwkOf(rsa, 'jwks-rsa-1')] }))
      // The file is looked at again at most once a second.
      let status = 0
      for (const end = Date.now() + 5000; Date.now() < end; await new Promise(resolve => setTimeout(resolve, 100))) {
        status = (await get(manifestUrl(proc), ecToken)).status
        if (status === 401) break
      }
      t.equal(status, 401, 'the EC token, accepted (and remembered) before, is refused')
      await served(t, manifestUrl(proc), rsaToken)
    })
  })

  t.test('keys from a JWKS URL', async t => {
    const fetches = (): number => issuer.requests.filter(r => r.path === '/jwks.json').length
    await jwksCase(t, async keys => {
      issuer.jwks = [await jwkOf(keys[0] as SigningKey, 'jwks-ec-1'), await jwkOf(keys[1] as SigningKey, 'jwks-rsa-1')]
      return issuer.jwksUrl
    }, 'JWKS URL')
    t.ok(fetches() >= 1, `Stevedore fetched the JWKS (${fetches()} times)`)
  })
})
