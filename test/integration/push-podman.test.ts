// podman's push (Debian's podman 4.3, in its own mount namespace, run by
// helpers/podman.ts) into the hosted namespace of a proxying Stevedore: the
// image podman pulled through the cache is pushed to a hosted name and
// pulled back with the same image ID; the upstream never sees the hosted name.
import { join } from 'node:path'
import t from 'tap'
import { accessLog } from '../helpers/access-log.js'
import { startDistribution } from '../helpers/distribution.js'
import { writeOciImage } from '../helpers/images.js'
import { startInProcess } from '../helpers/inprocess.js'
import { podmanSandbox } from '../helpers/podman.js'
import { pushLayout } from '../helpers/skopeo.js'

t.test('podman push into a hosted repository beside the proxy', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  const image = await writeOciImage(join(dir, 'src'), { tag: '1.0', seed: 'podman-push', layerSizes: [6000, 50_000] })
  await pushLayout(join(dir, 'src'), '1.0', `${upstream.host}/library/base:1.0`)
  const stevedore = await startInProcess(t, join(dir, 'storage'), { proxy: { remoteurl: upstream.url }, hosted: ['site/**'] }, {}, { capture: 'info' })
  const podman = await podmanSandbox(t)
  await podman.writeRegistriesConf([{ prefix: stevedore.host, location: stevedore.host, mirrors: [] }])

  const base = `${stevedore.host}/library/base:1.0`
  await podman.pull(base)
  const pulled = await podman.inspect(base)
  t.equal(`sha256:${pulled.id}`, image.manifests[0]?.config.digest, 'pulled through the cache')

  const hosted = `${stevedore.host}/site/app:1.0`
  await podman.run(['tag', base, hosted])
  // run() rejects on a non-zero exit.
  await podman.run(['push', '--tls-verify=false', '--signature-policy', join(podman.dir, 'policy.json'), hosted])
  const served = await fetch(`${stevedore.url}/v2/site/app/manifests/1.0`, { method: 'HEAD' })
  t.equal(served.status, 200, 'the pushed tag is served')
  await podman.run(['rmi', hosted, base])
  await podman.pull(hosted)
  t.equal((await podman.inspect(hosted)).id, pulled.id, 'pulled back with the same image ID')
  t.notOk(accessLog(upstream).some(r => r.path.startsWith('/v2/site/')), 'the upstream never saw the hosted name')
})
