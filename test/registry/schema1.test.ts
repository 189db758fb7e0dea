// Schema1 signed manifests: libtrust's pretty JWS, parsed, verified, rebuilt
// byte for byte, and checked against what a real Distribution serves.
import { execFileSync } from 'node:child_process'
import { createHash, createPrivateKey, generateKeyPairSync } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import type { JWK } from 'jose'
import {
  buildPrettySignature,
  isSchema1Signed,
  parseSignature,
  parseSignedManifest,
  signCanonical,
  verifySignatures,
  type Schema1Signature,
  type Schema1SigningKey,
} from '../../src/registry/schema1.js'
import { startDistribution } from '../helpers/distribution.js'
import { writeOciImage } from '../helpers/images.js'
import { pushLayout } from '../helpers/skopeo.js'

const SIGNED = 'application/vnd.docker.distribution.manifest.v1+prettyjws'

function key(type: 'ec' | 'rsa' = 'ec'): Schema1SigningKey {
  const pair = type === 'ec'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('rsa', { modulusLength: 2048 })
  return { privateJwk: pair.privateKey.export({ format: 'jwk' }) as JWK, publicJwk: pair.publicKey.export({ format: 'jwk' }) as JWK }
}

const sha256 = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`

// What Docker writes: json.MarshalIndent(m, "", "   "), no trailing newline.
const canonical = Buffer.from(JSON.stringify({
  schemaVersion: 1,
  name: 'team/app',
  tag: 'v1',
  architecture: 'amd64',
  fsLayers: [{ blobSum: `sha256:${'a'.repeat(64)}` }, { blobSum: `sha256:${'b'.repeat(64)}` }],
  history: [
    { v1Compatibility: JSON.stringify({ id: 'c'.repeat(64), parent: 'd'.repeat(64), created: '2024-01-01T00:00:00Z' }) },
    { v1Compatibility: JSON.stringify({ id: 'd'.repeat(64), created: '2024-01-01T00:00:00Z' }) },
  ],
}, null, 3))

const flip = (s: string, at: number): string => s.slice(0, at) + (s[at] === 'A' ? 'B' : 'A') + s.slice(at + 1)

t.test('signatures from two keys', async t => {
  const [k1, k2] = [key(), key()]
  const s1 = await signCanonical(canonical, k1, { now: new Date('2024-05-06T07:08:09.123Z') })
  const s2 = await signCanonical(canonical, k2)
  t.equal(s1.header.alg, 'ES256')
  t.match(s1.header.jwk, { kty: 'EC', crv: 'P-256', kid: /^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$/ })
  t.same(Object.keys(s1.header.jwk ?? {}), ['crv', 'kid', 'kty', 'x', 'y'], 'the JWK as libtrust marshals it')
  const prot = JSON.parse(Buffer.from(s1.protected, 'base64url').toString()) as Record<string, unknown>
  t.same(prot, { formatLength: canonical.length - 2, formatTail: Buffer.from('\n}').toString('base64url'), time: '2024-05-06T07:08:09Z' })
  t.equal(s1.raw.toString(), `{"header":{"jwk":${JSON.stringify(s1.header.jwk)},"alg":"ES256"},"signature":"${s1.signature}","protected":"${s1.protected}"}`)

  const one = buildPrettySignature(canonical, [s1])
  const two = buildPrettySignature(canonical, [s1, s2])
  t.ok(one.subarray(0, canonical.length - 2).equals(canonical.subarray(0, canonical.length - 2)), 'the payload comes first, cut before its tail')
  t.match(one.toString(), /\],\n {3}"signatures": \[\n {6}\{\n {9}"header": \{\n {12}"jwk": \{\n {15}"crv": "P-256",/)
  t.ok(one.toString().endsWith(`"protected": "${s1.protected}"\n      }\n   ]\n}`), 'libtrust layout at the end')

  for (const [label, doc, count] of [['one', one, 1], ['two', two, 2]] as const) {
    const parsed = parseSignedManifest(doc)
    t.ok(parsed.canonical.equals(canonical), `${label}: the canonical payload comes back`)
    t.equal(parsed.digest.value, sha256(canonical), `${label}: digest is sha256 of the payload`)
    t.equal(parsed.indent, '   ')
    t.equal(parsed.signatures.length, count)
    await t.resolves(verifySignatures(parsed), `${label}: every signature verifies`)
    t.ok(buildPrettySignature(parsed.canonical, parsed.signatures).equals(doc), `${label}: rebuild is byte-identical`)
  }

  const kids = parseSignedManifest(two).signatures.map(s => s.header.jwk?.kid ?? '')
  t.same(kids, [...kids].sort(), 'sorted by key ID')
  t.ok(buildPrettySignature(canonical, [s2, s1]).equals(two), 'input order does not matter')
  t.ok(buildPrettySignature(canonical, [s2, s1, s2, s1]).equals(two), 'duplicates dropped')
  t.ok(buildPrettySignature(canonical, [s1, parseSignature(s1.raw)]).equals(one), 'a signature read back from its blob is the same one')

  const tampered = { ...s2, signature: flip(s2.signature, 10) }
  await t.rejects(verifySignatures({ canonical, signatures: [s1, tampered] }), { code: 'MANIFEST_UNVERIFIED', message: /signature 1 \(key / })
  const forged = parseSignedManifest(Buffer.from(two.toString().replace('"amd64"', '"arm64"')))
  t.not(forged.digest.value, sha256(canonical))
  await t.rejects(verifySignatures(forged), { code: 'MANIFEST_UNVERIFIED' }, 'a changed payload fails')
})

t.test('RSA keys and compact payloads', async t => {
  const compact = Buffer.from(JSON.stringify(JSON.parse(canonical.toString())))
  const sig = await signCanonical(compact, key('rsa'))
  t.equal(sig.header.alg, 'RS256')
  t.same(Object.keys(sig.header.jwk ?? {}), ['e', 'kid', 'kty', 'n'])
  const doc = buildPrettySignature(compact, [sig])
  t.ok(doc.toString().endsWith(`"}],"signatures":[${sig.raw.toString()}]}`), 'no indent: json.Marshal layout')
  const parsed = parseSignedManifest(doc)
  t.ok(parsed.canonical.equals(compact))
  t.equal(parsed.indent, '')
  await t.resolves(verifySignatures(parsed))
})

t.test('a key carried as an x5c certificate', async t => {
  const dir = t.testdir()
  const cert = (name: string): { key: Schema1SigningKey, der: string } => {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${name}`,
      '-days', '1', '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.pem`)], { stdio: 'ignore' })
    const der = execFileSync('openssl', ['x509', '-in', join(dir, `${name}.pem`), '-outform', 'DER'])
    const jwk = createPrivateKey(readFileSync(join(dir, `${name}.key`))).export({ format: 'jwk' }) as JWK
    return { key: { privateJwk: jwk, publicJwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } }, der: der.toString('base64') }
  }
  const [signer, other] = [cert('signer'), cert('other')]
  const signed = await signCanonical(canonical, signer.key)
  const withChain: Schema1Signature = { ...signed, header: { alg: 'ES256', x5c: [signer.der, other.der] } }
  await t.resolves(verifySignatures({ canonical, signatures: [withChain] }), 'verified with the first certificate\'s key')
  const wrongCert: Schema1Signature = { ...signed, header: { alg: 'ES256', x5c: [other.der] } }
  await t.rejects(verifySignatures({ canonical, signatures: [wrongCert] }), { code: 'MANIFEST_UNVERIFIED' })
  const reparsed = parseSignedManifest(buildPrettySignature(canonical, [withChain]))
  t.same(reparsed.signatures[0]?.header, { alg: 'ES256', x5c: [signer.der, other.der] }, 'the chain survives a rebuild')
})

t.test('what is refused', async t => {
  const k = key()
  const unsigned = parseSignedManifest(canonical)
  t.same(unsigned.signatures, [], 'a bare payload parses with no signatures')
  t.equal(unsigned.digest.value, sha256(canonical))
  await t.rejects(verifySignatures(unsigned), { code: 'MANIFEST_UNVERIFIED' }, 'but does not verify')
  t.throws(() => buildPrettySignature(canonical, []), { code: 'MANIFEST_UNVERIFIED' })

  const withNewline = Buffer.concat([canonical, Buffer.from('\n')])
  const a = await signCanonical(canonical, k)
  const b = await signCanonical(withNewline, k)
  t.throws(() => buildPrettySignature(canonical, [a, b]), { code: 'MANIFEST_INVALID' }, 'a signature over another format')
  const doc = buildPrettySignature(canonical, [a]).toString()
  const mixed = doc.replace(`"signatures": [`, `"signatures": [${b.raw.toString()},`)
  t.throws(() => parseSignedManifest(Buffer.from(mixed)), { code: 'MANIFEST_INVALID', message: /disagrees/ })
  t.throws(() => parseSignedManifest(Buffer.from(doc.replace(/"signatures": \[[^]*\]/, '"signatures": []'))), { code: 'MANIFEST_UNVERIFIED' })
  t.throws(() => parseSignedManifest(Buffer.from('[1]')), { code: 'MANIFEST_INVALID' })
  const wrongKid = { ...a, header: { ...a.header, jwk: { ...a.header.jwk, kid: 'AAAA' } } }
  t.throws(() => parseSignature(Buffer.from(JSON.stringify({ ...wrongKid, raw: undefined }))), { code: 'MANIFEST_INVALID', message: /kid/ })
  const noKey: Schema1Signature = { ...a, header: { alg: 'ES256' } }
  await t.rejects(verifySignatures({ canonical, signatures: [a, noKey] }), { code: 'MANIFEST_UNVERIFIED', message: /signature 1/ })
  const wrongAlg: Schema1Signature = { ...a, header: { ...a.header, alg: 'ES384' } }
  await t.rejects(verifySignatures({ canonical, signatures: [wrongAlg] }), { code: 'MANIFEST_UNVERIFIED' })
  t.ok(isSchema1Signed(SIGNED))
  t.notOk(isSchema1Signed('application/vnd.docker.distribution.manifest.v1+json'))
})

t.test('a manifest signed by a real Distribution (libtrust)', async t => {
  const dir = t.testdir()
  const distribution = await startDistribution(t, { config: { compatibility: { schema1: { enabled: true } } } })
  await writeOciImage(join(dir, 'image'), { tag: 'v1', seed: 'schema1-sign', layerSizes: [1200, 30_000] })
  await pushLayout(join(dir, 'image'), 'v1', `${distribution.host}/team/legacy:v1`, { format: 'v2s1' })

  const get = async (reference: string): Promise<{ body: Buffer, digest: string | null, type: string | null }> => {
    const res = await fetch(`${distribution.url}/v2/team/legacy/manifests/${reference}`, { headers: { Accept: SIGNED } })
    t.equal(res.status, 200, `GET ${reference}`)
    return { body: Buffer.from(await res.arrayBuffer()), digest: res.headers.get('docker-content-digest'), type: res.headers.get('content-type') }
  }
  const first = await get('v1')
  t.equal(first.type, SIGNED)
  const parsed = parseSignedManifest(first.body)
  t.equal(parsed.digest.value, first.digest, 'our digest is Distribution\'s Docker-Content-Digest')
  t.equal(parsed.indent, '', 'skopeo writes the schema1 payload compact')
  t.equal(parsed.signatures.length, 1, 'Distribution serves its own signature only')
  await t.resolves(verifySignatures(parsed), 'libtrust\'s signature verifies')
  t.ok(buildPrettySignature(parsed.canonical, parsed.signatures).equals(first.body), 'rebuilt byte for byte')

  // Distribution 2.8 stores the bare payload and signs it again on every GET.
  const stored = join(distribution.root, 'docker/registry/v2/blobs/sha256', parsed.digest.hex.slice(0, 2), parsed.digest.hex, 'data')
  t.ok((await readFile(stored)).equals(parsed.canonical), 'the stored revision blob is the canonical payload')
  const second = await get(parsed.digest.value)
  t.equal(second.digest, first.digest)
  t.not(second.body.toString(), first.body.toString(), 'a fresh signature on each GET')
  const again = parseSignedManifest(second.body)
  t.ok(again.canonical.equals(parsed.canonical))
  const merged = buildPrettySignature(parsed.canonical, [...again.signatures, ...parsed.signatures])
  const both = parseSignedManifest(merged)
  t.equal(both.signatures.length, 2)
  t.equal(both.digest.value, first.digest, 'merging signatures keeps the digest')
  await t.resolves(verifySignatures(both))

  const ours = await signCanonical(parsed.canonical, key())
  const served = buildPrettySignature(parsed.canonical, [ours])
  const put = await fetch(`${distribution.url}/v2/team/legacy/manifests/v2`, { method: 'PUT', headers: { 'Content-Type': SIGNED }, body: new Uint8Array(served) })
  t.equal(put.status, 201, 'Distribution accepts a document we signed')
  t.equal(put.headers.get('docker-content-digest'), first.digest)

  // A payload indented as Docker writes it, stored by Distribution, signed by libtrust on GET.
  const indented = Buffer.from(JSON.stringify({ ...(JSON.parse(parsed.canonical.toString()) as object), tag: 'indented' }, null, 3))
  const pushed = await fetch(`${distribution.url}/v2/team/legacy/manifests/indented`, {
    method: 'PUT',
    headers: { 'Content-Type': SIGNED },
    body: new Uint8Array(buildPrettySignature(indented, [await signCanonical(indented, key())])),
  })
  t.equal(pushed.status, 201, 'Distribution accepts the indented payload')
  t.equal(pushed.headers.get('docker-content-digest'), sha256(indented))
  const fromLibtrust = await get('indented')
  const reparsed = parseSignedManifest(fromLibtrust.body)
  t.equal(reparsed.indent, '   ')
  t.ok(reparsed.canonical.equals(indented), 'the payload as we signed it')
  t.equal(reparsed.digest.value, fromLibtrust.digest)
  await t.resolves(verifySignatures(reparsed))
  t.ok(buildPrettySignature(reparsed.canonical, reparsed.signatures).equals(fromLibtrust.body), 'indented layout rebuilt byte for byte')
})
