// The OCI distribution-spec v1.1 conformance suite against the hosted
// repositories of a proxying Stevedore: a real Distribution upstream, and
// `hosted: ["conformance/**"]` naming the repositories that are pushable.
// Beside the suite: a push to any other name is 405 UNSUPPORTED, those names
// still pull through from the upstream, and a hosted name is never proxied.
import { join } from 'node:path'
import t from 'tap'
import { startDistribution } from '../helpers/distribution.js'
import { startInProcess } from '../helpers/inprocess.js'
import { pushBlob as pushUpstreamBlob, pushManifest as pushUpstreamManifest } from '../helpers/push.js'
import { OCI_MANIFEST, imageManifest } from './fixtures.js'
import { assertErrorBody, call, seen, sha256, uniqueBytes } from './http.js'
import { conformance } from './suite.js'

const PROXIED = ['library/proxied', 'conformance-like/app', 'team/conformance/app']

t.test('hosted repositories of a proxying registry', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  const root = join(dir, 'stevedore')
  const registry = await startInProcess(t, root, {
    proxy: { remoteurl: upstream.url },
    hosted: ['conformance/**'],
    storage: { delete: { enabled: true }, filesystem: { rootdirectory: root } },
  })
  const { url } = registry

  await conformance(t, { url, repo: 'conformance/app', crossRepo: 'conformance/team/other', deleteEnabled: true })

  await t.test('a push to a name that is not hosted: 405 UNSUPPORTED', async t => {
    const data = uniqueBytes('not-hosted', 300)
    const manifest = imageManifest({ annotations: { 'org.opencontainers.conformance.test': 'not hosted' } })
    for (const repo of PROXIED) {
      const answers = [
        ['POST upload', await call(`${url}/v2/${repo}/blobs/uploads/`, { method: 'POST', body: Buffer.alloc(0) })],
        ['single POST', await call(`${url}/v2/${repo}/blobs/uploads/?digest=${sha256(data)}`, { method: 'POST', body: data, headers: { 'Content-Type': 'application/octet-stream' } })],
        ['mount', await call(`${url}/v2/${repo}/blobs/uploads/?mount=${sha256(data)}&from=conformance/app`, { method: 'POST', body: Buffer.alloc(0) })],
        ['PUT manifest', await call(`${url}/v2/${repo}/manifests/v1`, { method: 'PUT', body: manifest.bytes, headers: { 'Content-Type': OCI_MANIFEST } })],
      ] as const
      for (const [label, res] of answers) {
        t.equal(res.status, 405, `${repo}, ${label}: 405 ${seen(res)}`)
        assertErrorBody(t, res, 'UNSUPPORTED', `${repo}, ${label}`)
      }
    }
  })

  await t.test('a name that is not hosted still pulls through from the upstream', async t => {
    const layer = await pushUpstreamBlob(upstream.url, 'library/proxied', uniqueBytes('upstream-layer', 500))
    const empty = await pushUpstreamBlob(upstream.url, 'library/proxied', Buffer.from('{}'))
    const doc = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: empty.digest, size: empty.size },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layer.digest, size: layer.size }],
    }
    const pushed = await pushUpstreamManifest(upstream.url, 'library/proxied', 'v1', doc, OCI_MANIFEST)
    const res = await call(`${url}/v2/library/proxied/manifests/v1`, { headers: { Accept: OCI_MANIFEST } })
    t.equal(res.status, 200, `GET through the proxy: ${seen(res)}`)
    t.ok(res.body.equals(pushed.payload), 'the upstream manifest, byte for byte')
    const blob = await call(`${url}/v2/library/proxied/blobs/${layer.digest}`)
    t.equal(blob.status, 200, 'its layer through the proxy: 200')
  })

  await t.test('a hosted name is not proxied', async t => {
    // The upstream has conformance/app:upstream-only; the hosted repository of that name must not show it.
    const empty = await pushUpstreamBlob(upstream.url, 'conformance/app', Buffer.from('{}'))
    const doc = { schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: empty.digest, size: empty.size }, layers: [] }
    const pushed = await pushUpstreamManifest(upstream.url, 'conformance/app', 'upstream-only', doc, OCI_MANIFEST)
    const byTag = await call(`${url}/v2/conformance/app/manifests/upstream-only`, { headers: { Accept: OCI_MANIFEST } })
    t.equal(byTag.status, 404, `the upstream's tag is not served: ${seen(byTag)}`)
    const byDigest = await call(`${url}/v2/conformance/app/manifests/${pushed.digest}`, { headers: { Accept: OCI_MANIFEST } })
    t.equal(byDigest.status, 404, `nor its digest: ${seen(byDigest)}`)
  })
})
