// Schema1 signatures stored as blobs and linked beside their revision, in Distribution 2.0's layout.
import { createHash, generateKeyPairSync } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { JWK } from 'jose'
import { digestOf } from '../../src/registry/digest.js'
import { parseRepositoryName } from '../../src/registry/names.js'
import { signCanonical, type Schema1SigningKey } from '../../src/registry/schema1.js'
import { BlobStore } from '../../src/storage/blobs.js'
import { FilesystemDriver } from '../../src/storage/filesystem.js'
import { SignatureStore } from '../../src/storage/signatures.js'

function key(): Schema1SigningKey {
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return { privateJwk: pair.privateKey.export({ format: 'jwk' }) as JWK, publicJwk: pair.publicKey.export({ format: 'jwk' }) as JWK }
}

const canonical = Buffer.from(JSON.stringify({
  schemaVersion: 1,
  name: 'team/app',
  tag: 'v1',
  architecture: 'amd64',
  fsLayers: [{ blobSum: `sha256:${'a'.repeat(64)}` }],
  history: [{ v1Compatibility: '{"id":"x"}' }],
}, null, 3))

t.test('add, list, dedupe', async t => {
  const root = t.testdir()
  const driver = new FilesystemDriver(root)
  const store = new SignatureStore(driver, new BlobStore(driver))
  const name = parseRepositoryName('team/app')
  const revision = digestOf(canonical)
  const v2 = join(root, 'docker/registry/v2')
  const sigRoot = join(v2, 'repositories/team/app/_manifests/revisions/sha256', revision.hex, 'signatures')

  t.same(await store.list(name, revision), [], 'no signatures directory: none')

  const [a, b] = [await signCanonical(canonical, key()), await signCanonical(canonical, key())]
  t.equal(await store.add(name, revision, a), true, 'a new signature')
  t.equal(await store.add(name, revision, a), false, 'the same one again is not new')
  t.equal(await store.add(name, revision, b), true)

  for (const sig of [a, b]) {
    const hex = createHash('sha256').update(sig.raw).digest('hex')
    const link = join(sigRoot, 'sha256', hex, 'link')
    t.equal(readFileSync(link, 'utf8'), `sha256:${hex}`, 'the link holds the digest, no newline')
    t.ok(readFileSync(join(v2, 'blobs/sha256', hex.slice(0, 2), hex, 'data')).equals(sig.raw), 'the blob is the signature JSON')
  }

  const listed = await store.list(name, revision)
  t.equal(listed.length, 2)
  t.same(
    listed.map(s => s.raw.toString()).sort(),
    [a, b].map(s => s.raw.toString()).sort(),
    'both come back as stored',
  )
  t.same(await store.list(name, digestOf('another revision')), [], 'signatures belong to their revision')
})

t.test('unreadable signatures are skipped', async t => {
  const root = t.testdir()
  const driver = new FilesystemDriver(root)
  const blobs = new BlobStore(driver)
  const store = new SignatureStore(driver, blobs)
  const name = parseRepositoryName('team/app')
  const revision = digestOf(canonical)
  const good = await signCanonical(canonical, key())
  await store.add(name, revision, good)

  const sigDir = join(root, 'docker/registry/v2/repositories/team/app/_manifests/revisions/sha256', revision.hex, 'signatures/sha256')
  const linkTo = (hex: string, content = `sha256:${hex}`): void => {
    mkdirSync(join(sigDir, hex), { recursive: true })
    writeFileSync(join(sigDir, hex, 'link'), content)
  }
  linkTo('0'.repeat(64)) // its blob is missing
  const junk = await blobs.put(Buffer.from('{"not":"a signature"}'))
  linkTo(junk.digest.hex) // its blob is not a signature
  linkTo('1'.repeat(64), 'garbage') // the link is not a digest
  mkdirSync(join(sigDir, 'not-a-digest'))
  t.ok(existsSync(join(sigDir, junk.digest.hex, 'link')))

  const listed = await store.list(name, revision)
  t.equal(listed.length, 1, 'only the good one')
  t.ok(listed[0]?.raw.equals(good.raw))
})
