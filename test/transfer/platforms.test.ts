// Which children of an index a prefetch takes: all, or the best match per
// platform asked for, with BuildKit's attestations of the chosen ones.
import t from 'tap'
import { parseDigest } from '../../src/registry/digest.js'
import type { Descriptor } from '../../src/registry/manifest.js'
import { platformChoice, selectChildren } from '../../src/transfer/platforms.js'

const d = (n: number, platform?: Descriptor['platform'], annotations?: Record<string, string>): Descriptor => ({
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  digest: parseDigest(`sha256:${String(n).repeat(64).slice(0, 64)}`),
  size: 100,
  ...(platform ? { platform } : {}),
  ...(annotations ? { annotations } : {}),
})
const amd64 = d(1, { os: 'linux', architecture: 'amd64' })
const arm64 = d(2, { os: 'linux', architecture: 'arm64', variant: 'v8' })
const armv7 = d(3, { os: 'linux', architecture: 'arm', variant: 'v7' })
const attestAmd64 = d(4, { os: 'unknown', architecture: 'unknown' }, { 'vnd.docker.reference.type': 'attestation-manifest', 'vnd.docker.reference.digest': amd64.digest.value })
const attestArm = d(5, { os: 'unknown', architecture: 'unknown' }, { 'vnd.docker.reference.type': 'attestation-manifest', 'vnd.docker.reference.digest': arm64.digest.value })
const children = [amd64, attestAmd64, arm64, attestArm, armv7]
const names = (list: Descriptor[]) => list.map(c => children.indexOf(c))

t.test('default platform, several, all', async t => {
  const fallback = { os: 'linux', architecture: 'amd64' }
  const only = selectChildren(children, platformChoice([], false, fallback))
  t.same(names(only.selected), [0, 1], 'the default platform and its attestation')
  t.same(only.missing, [])
  const two = selectChildren(children, platformChoice(['linux/arm64', 'linux/arm/v7', 'linux/amd64'], false, fallback))
  t.same(names(two.selected), [0, 1, 2, 3, 4], 'in the index order, each once')
  const all = selectChildren(children, platformChoice(['linux/s390x'], true, fallback))
  t.same(names(all.selected), [0, 1, 2, 3, 4], '--all-platforms wins over --platform')
  const none = selectChildren(children, platformChoice(['linux/s390x', 'windows/amd64'], false, fallback))
  t.same(none.selected, [])
  t.same(none.missing, ['linux/s390x', 'windows/amd64'], 'what is missing is named')
  t.throws(() => platformChoice(['linux'], false, fallback), /invalid platform/)
})
