// Stevedore on a real S3 (a one-node Ceph radosgw): a plain registry pushed
// to with skopeo (chunked uploads append to objects) and pulled back byte for
// byte; Distribution serves the same bucket; and, with storage.redirect on,
// a stored blob's GET is a 307 to a presigned URL the client can follow.
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { pino } from 'pino'
import t from 'tap'
import { stringify } from 'yaml'
import { parseConfig } from '../../src/config/load.js'
import { collectGarbage } from '../../src/lifecycle/gc.js'
import { LocalStorage } from '../../src/storage/local.js'
import { openStorageDriver } from '../../src/storage/open.js'
import { compareLayoutBlobs } from '../helpers/blobs.js'
import { startCeph } from '../helpers/ceph.js'
import { startDistribution } from '../helpers/distribution.js'
import { writeOciImage } from '../helpers/images.js'
import { startInProcess } from '../helpers/inprocess.js'
import { pullToLayout, pushLayout } from '../helpers/skopeo.js'

t.test('a plain registry on S3: skopeo push and pull, Distribution on the same bucket, redirects', async t => {
  const dir = t.testdir()
  const ceph = await startCeph(t)
  const bucket = await ceph.bucket('plain')
  const s3 = { region: ceph.region, bucket, regionendpoint: ceph.endpoint, accesskey: ceph.accessKey, secretkey: ceph.secretKey, forcepathstyle: true, secure: false, rootdirectory: '/registry' }
  const stevedore = await startInProcess(t, join(dir, 'unused'), {
    storage: { s3, delete: { enabled: true } },
  })

  const image = await writeOciImage(join(dir, 'src'), { tag: '1.0', seed: 's3-plain', layerSizes: [6 * 1024 * 1024 + 3, 40_000] })
  await pushLayout(join(dir, 'src'), '1.0', `${stevedore.host}/site/app:1.0`)
  await pullToLayout(`${stevedore.host}/site/app:1.0`, join(dir, 'back'), '1.0')
  t.same(await compareLayoutBlobs(join(dir, 'src'), join(dir, 'back')), [], 'pulled back byte for byte')
  const head = await fetch(`${stevedore.url}/v2/site/app/manifests/1.0`, { method: 'HEAD', headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } })
  t.equal(head.headers.get('docker-content-digest'), image.manifestDigest)

  // Distribution's S3 driver on the same bucket and root directory serves what Stevedore pushed.
  // (Distribution 2.8's S3 driver panics at startup with AWS_CA_BUNDLE set: FIELD-NOTES.)
  const bundle = process.env.AWS_CA_BUNDLE
  delete process.env.AWS_CA_BUNDLE
  let distribution
  try {
    distribution = await startDistribution(t, {
      config: {
        storage: {
          filesystem: undefined,
          s3: { region: ceph.region, bucket, regionendpoint: ceph.endpoint, accesskey: ceph.accessKey, secretkey: ceph.secretKey, forcepathstyle: true, secure: false, v4auth: true, rootdirectory: '/registry' },
          redirect: { disable: true },
        },
      },
    })
  } finally {
    if (bundle !== undefined) process.env.AWS_CA_BUNDLE = bundle
  }
  await pullToLayout(`${distribution.host}/site/app:1.0`, join(dir, 'from-distribution'), '1.0')
  t.same(await compareLayoutBlobs(join(dir, 'src'), join(dir, 'from-distribution')), [], 'Distribution serves the pushed image from the bucket')

  // Redirects: a second Stevedore on the same bucket with storage.redirect on.
  const redirecting = await startInProcess(t, join(dir, 'unused2'), { storage: { s3, redirect: { disable: false } } })
  const layer = image.manifests[0]?.layers[0]
  if (layer === undefined) throw new Error('no layer')
  const answer = await fetch(`${redirecting.url}/v2/site/app/blobs/${layer.digest}`, { redirect: 'manual' })
  t.equal(answer.status, 307, 'a stored blob is a 307')
  const location = answer.headers.get('location') ?? ''
  t.ok(location.startsWith(`${ceph.endpoint}/${bucket}/registry/docker/registry/v2/blobs/sha256/`), `to the object in the bucket: ${location.slice(0, 120)}…`)
  t.match(location, /X-Amz-Signature=/, 'presigned')
  const followed = await fetch(location)
  t.equal(followed.status, 200)
  t.equal(`sha256:${createHash('sha256').update(Buffer.from(await followed.arrayBuffer())).digest('hex')}`, layer.digest, 'the URL serves the blob')
  const missing = await fetch(`${redirecting.url}/v2/site/app/blobs/sha256:${'0'.repeat(64)}`, { redirect: 'manual' })
  t.equal(missing.status, 404, 'a blob that is not stored is no redirect')
  const plain = await fetch(`${stevedore.url}/v2/site/app/blobs/${layer.digest}`, { redirect: 'manual' })
  t.equal(plain.status, 200, 'without storage.redirect (the default) the bytes come through Stevedore')
  await plain.arrayBuffer()

  // A delete (soft), then gc on the bucket: one prefix walk lists what only the deleted manifest referenced.
  const deleted = await fetch(`${stevedore.url}/v2/site/app/manifests/${image.manifestDigest}`, { method: 'DELETE' })
  t.equal(deleted.status, 202, 'the manifest is deleted')
  const eligible: string[] = []
  const report = await collectGarbage(new LocalStorage(await openStorageDriver(storageOf(s3))), {
    dryRun: true,
    deleteUntagged: false,
    graceMs: 0,
    log: pino({ level: 'silent' }),
    emit: event => {
      if (event.kind === 'blobEligible') eligible.push(event.digest)
    },
  })
  const expected = [image.manifestDigest, ...(image.manifests[0] === undefined ? [] : [image.manifests[0].config.digest, ...image.manifests[0].layers.map(l => l.digest)])]
  t.same(eligible.sort(), expected.sort(), 'gc --dry-run on S3 lists the manifest and its blobs, nothing else')
  t.equal(report.blobsDeleted, 0, 'and deletes nothing')
})

/** The storage section of a config with these S3 settings, as the CLI would build it. */
function storageOf(s3: Record<string, unknown>) {
  return parseConfig(stringify({ version: '0.1', storage: { s3 } }), {}, 'test').config.storage
}
