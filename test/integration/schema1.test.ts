// Schema1 signed manifests through the cache: signatures from two fetches
// (two Distributions signing with different keys) are kept apart from the
// payload and served merged in one document; both verify, the digest never
// changes; a tampered signature is refused and nothing is stored.
import { execFile } from 'node:child_process'
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { startDistribution } from '../helpers/distribution.js'
import { blob, startFakeUpstream } from '../helpers/fake-upstream.js'
import { writeOciImage } from '../helpers/images.js'
import { startInProcess } from '../helpers/inprocess.js'
import { pushLayout } from '../helpers/skopeo.js'
import { parseSignedManifest, verifySignatures } from '../../src/registry/schema1.js'

const run = promisify(execFile)
const PRETTYJWS = 'application/vnd.docker.distribution.manifest.v1+prettyjws'
const REPO = 'team/legacy'

async function signingKey(dir: string, name: string): Promise<string> {
  const path = join(dir, `${name}.pem`)
  await run('openssl', ['ecparam', '-genkey', '-name', 'prime256v1', '-noout', '-out', path])
  return path
}

const schema1Config = (keyfile: string) => ({ compatibility: { schema1: { enabled: true, signingkeyfile: keyfile } } })

t.test('signatures from two fetches are merged, verified and kept', async t => {
  const dir = t.testdir()
  const root = join(dir, 'upstream-storage')
  const first = await startDistribution(t, { root, config: schema1Config(await signingKey(dir, 'k1')) })
  await writeOciImage(join(dir, 'image'), { tag: 'v1', seed: 'schema1', layerSizes: [1000, 2000] })
  await pushLayout(join(dir, 'image'), 'v1', `${first.host}/${REPO}:v1`, { format: 'v2s1' })

  let clock = Date.now()
  const cache = join(dir, 'cache')
  const proxy = await startInProcess(t, cache, { proxy: { remoteurl: first.url, tagttl: '1m' } }, { now: () => clock })
  const get = (reference: string): Promise<Response> => fetch(`${proxy.url}/v2/${REPO}/manifests/${reference}`, { headers: { Accept: PRETTYJWS } })

  const one = await get('v1')
  t.equal(one.status, 200)
  t.equal(one.headers.get('content-type'), PRETTYJWS)
  const digest = one.headers.get('docker-content-digest') ?? ''
  const firstDoc = parseSignedManifest(Buffer.from(await one.arrayBuffer()))
  t.equal(firstDoc.signatures.length, 1, 'the first fetch brought one signature')
  t.equal(firstDoc.digest.value, digest, 'the digest is the payload digest')

  // The same storage served by a Distribution that signs with another key.
  await first.stop()
  const second = await startDistribution(t, { root, port: first.port, config: schema1Config(await signingKey(dir, 'k2')) })
  clock += 2 * 60_000
  const two = await get('v1')
  t.equal(two.headers.get('docker-content-digest'), digest, 'the digest is unchanged')
  const merged = parseSignedManifest(Buffer.from(await two.arrayBuffer()))
  t.equal(merged.signatures.length, 2, 'one document carries both signatures')
  t.not(merged.signatures[0]?.header.jwk?.kid, merged.signatures[1]?.header.jwk?.kid, 'from two different keys')
  await t.resolves(verifySignatures(merged), 'and both verify')
  t.same(merged.canonical, firstDoc.canonical, 'over the same payload')

  const revision = join(cache, 'docker/registry/v2/repositories', REPO, '_manifests/revisions/sha256', digest.slice(7))
  t.equal((await readdir(join(revision, 'signatures/sha256'))).length, 2, 'each signature linked apart from the payload')

  await second.stop()
  const offline = await get(digest)
  t.equal(offline.status, 200, 'served from cache alone')
  t.equal(parseSignedManifest(Buffer.from(await offline.arrayBuffer())).signatures.length, 2, 'still with both signatures')
})

t.test('a tampered signature is refused and nothing is stored', async t => {
  const dir = t.testdir()
  const real = await startDistribution(t, { config: schema1Config(await signingKey(dir, 'k')) })
  await writeOciImage(join(dir, 'image'), { tag: 'v1', seed: 'schema1-tampered', layerSizes: [500] })
  await pushLayout(join(dir, 'image'), 'v1', `${real.host}/${REPO}:v1`, { format: 'v2s1' })
  const genuine = Buffer.from(await (await fetch(`${real.url}/v2/${REPO}/manifests/v1`, { headers: { Accept: PRETTYJWS } })).arrayBuffer())
  const text = genuine.toString()
  const at = text.indexOf('"signature": "') + '"signature": "'.length
  const flipped = text[at] === 'A' ? 'B' : 'A'
  const tampered = Buffer.from(text.slice(0, at) + flipped + text.slice(at + 1))

  const upstream = await startFakeUpstream(REPO)
  t.teardown(() => upstream.close())
  const digest = parseSignedManifest(genuine).digest.value
  upstream.manifests.set('v1', { payload: tampered, mediaType: PRETTYJWS, digest })
  upstream.blobs.set('unused', blob(Buffer.from('x')))
  const cache = join(dir, 'cache')
  const proxy = await startInProcess(t, cache, { proxy: { remoteurl: upstream.url } })
  const reply = await fetch(`${proxy.url}/v2/${REPO}/manifests/v1`, { headers: { Accept: PRETTYJWS } })
  const body = (await reply.json()) as { errors: { code: string; message: string }[] }
  t.equal(reply.status, 400, body.errors[0]?.message ?? 'refused')
  t.equal(body.errors[0]?.code, 'MANIFEST_UNVERIFIED')
  await t.rejects(stat(join(cache, 'docker/registry/v2/blobs/sha256', digest.slice(7, 9), digest.slice(7))), { code: 'ENOENT' }, 'no payload stored')
  await t.rejects(stat(join(cache, 'docker/registry/v2/repositories', REPO, '_manifests')), { code: 'ENOENT' }, 'no revision or tag linked')
})
