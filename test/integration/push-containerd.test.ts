// containerd's own pusher (`ctr images push`, Debian's containerd 1.6) into
// a plain Stevedore: an image ctr has in its content store (pulled from a
// real Distribution) is pushed to a hosted name, by plain HTTP, and served
// back with the same manifest digest; skopeo pulls it byte for byte.
import { join } from 'node:path'
import t from 'tap'
import { compareLayoutBlobs } from '../helpers/blobs.js'
import { startContainerd, writeHostsDir } from '../helpers/containerd.js'
import { startDistribution } from '../helpers/distribution.js'
import { writeOciImage } from '../helpers/images.js'
import { startInProcess } from '../helpers/inprocess.js'
import { pullToLayout, pushLayout } from '../helpers/skopeo.js'

t.test('ctr images push into a hosted repository', async t => {
  const dir = t.testdir()
  const source = await startDistribution(t)
  const image = await writeOciImage(join(dir, 'src'), { tag: '1.0', seed: 'ctr-push', layerSizes: [5000, 70_000] })
  await pushLayout(join(dir, 'src'), '1.0', `${source.host}/team/base:1.0`)
  const stevedore = await startInProcess(t, join(dir, 'storage'), {}, {}, { capture: 'info' })

  const containerd = await startContainerd(t)
  const hosts = join(dir, 'hosts')
  await writeHostsDir(hosts, {
    [source.host]: { server: source.url, mirrors: [] },
    [stevedore.host]: { server: stevedore.url, mirrors: [] },
  })
  const from = `${source.host}/team/base:1.0`
  await containerd.pull(from, hosts)
  const to = `${stevedore.host}/site/app:1.0`
  await containerd.ctr(['images', 'tag', from, to])
  // ctr() rejects on a non-zero exit: getting past it means the push succeeded.
  await containerd.ctr(['images', 'push', '--plain-http', '--hosts-dir', hosts, to])

  const head = await fetch(`${stevedore.url}/v2/site/app/manifests/1.0`, { method: 'HEAD', headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } })
  t.equal(head.status, 200, 'the tag is served')
  t.equal(head.headers.get('docker-content-digest'), image.manifestDigest, 'with the manifest digest ctr pushed')
  const uploads = stevedore.logRecords().filter(r => r.msg === 'request' && r.method === 'PUT' && typeof r.path === 'string')
  t.ok(uploads.some(r => String(r.path).startsWith('/v2/site/app/blobs/uploads/') && r.status === 201), 'blobs came through upload sessions')
  t.ok(uploads.some(r => r.path === '/v2/site/app/manifests/1.0' && r.status === 201), 'and the manifest by tag')
  await pullToLayout(to, join(dir, 'back'), '1.0')
  t.same(await compareLayoutBlobs(join(dir, 'src'), join(dir, 'back')), [], 'skopeo pulls it back byte for byte')
})
