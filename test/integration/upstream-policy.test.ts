// Per-upstream allow and deny lists over two real Distributions: a refused
// repository is 403 DENIED for manifests, blobs and tag lists, the upstream
// hears nothing about it, and content cached before the policy (a restart on
// the same storage) is refused too. The policy is each upstream's own.
import { join } from 'node:path'
import t from 'tap'
import { settle } from '../helpers/access-log.js'
import { startDistribution, type Distribution } from '../helpers/distribution.js'
import { distributionPaths as paths } from '../helpers/distribution-paths.js'
import { listFiles } from '../helpers/files.js'
import { rawGet } from '../helpers/http.js'
import { OCI_INDEX, OCI_MANIFEST, writeOciImage, type ImageDescription } from '../helpers/images.js'
import { startInProcess } from '../helpers/inprocess.js'
import { pushLayout } from '../helpers/skopeo.js'
import { tempDir } from '../helpers/tmp.js'

const ACCEPT = { Accept: `${OCI_MANIFEST}, ${OCI_INDEX}` }
const NS = 'second.example'

/** The first OCI error code of a body; undefined when it is none (e.g. the blob itself). */
function errorCode(body: Buffer): string | undefined {
  try {
    return (JSON.parse(body.toString('utf8')) as { errors?: { code?: string }[] }).errors?.[0]?.code
  } catch {
    return undefined
  }
}

/** Stevedore's requests to `registry` whose path names repository `repo` (or one starting so). */
const askedAbout = async (registry: Distribution, repo: string): Promise<string[]> =>
  (await settle(registry)).filter(r => r.path.startsWith(`/v2/${repo}`)).map(r => `${r.method} ${r.path}`)

/** The paths that read one repository: tag, digest, a blob, the tag list. */
function readPaths(prefix: string, image: ImageDescription, query = ''): string[] {
  const layer = image.manifests[0]?.layers[0]?.digest ?? 'sha256:none'
  return [
    `${prefix}/manifests/${image.tag}${query}`,
    `${prefix}/manifests/${image.manifestDigest}${query}`,
    `${prefix}/blobs/${layer}${query}`,
    `${prefix}/tags/list${query}`,
  ]
}

t.test('allow and deny, per upstream', async t => {
  const dir = t.testdir()
  const [a, b] = await Promise.all([startDistribution(t), startDistribution(t)])
  const [secret, other, app] = await Promise.all([
    writeOciImage(join(dir, 'secret'), { tag: '1.0', seed: 'policy/secret', layerSizes: [2000] }),
    writeOciImage(join(dir, 'other'), { tag: '1.0', seed: 'policy/other', layerSizes: [3000] }),
    writeOciImage(join(dir, 'app'), { tag: '1.0', seed: 'policy/app', layerSizes: [1000] }),
  ])
  await Promise.all([
    pushLayout(join(dir, 'secret'), '1.0', `${b.host}/team/secret:1.0`),
    pushLayout(join(dir, 'app'), '1.0', `${b.host}/team/app:1.0`),
    pushLayout(join(dir, 'other'), '1.0', `${a.host}/other/x:1.0`),
    // A serves a team/secret too: B's deny list is B's alone.
    pushLayout(join(dir, 'secret'), '1.0', `${a.host}/team/secret:1.0`),
  ])
  const root = await tempDir(t, 'policy-cache')
  const upstreams = { proxy: { remoteurl: a.url }, upstreams: { second: { remoteurl: b.url, hosts: [NS] } } }
  const cachedPaths = [...readPaths(`/v2/${NS}/team/secret`, secret), ...readPaths('/v2/other/x', other)]

  await t.test('without a policy, both are cached', async t => {
    const stevedore = await startInProcess(t, root, upstreams)
    for (const path of cachedPaths) {
      const reply = await rawGet(`${stevedore.url}${path}`, ACCEPT)
      t.equal(reply.status, 200, `GET ${path}: 200`)
    }
    t.ok((await listFiles(paths.repository(root, `${NS}/team/secret`))).length > 0, 'second.example/team/secret is stored')
    t.ok((await listFiles(paths.repository(root, 'other/x'))).length > 0, 'other/x is stored')
  })

  await t.test('restarted with the policy on the same storage', async t => {
    const beforeSecret = await askedAbout(b, 'team/secret')
    const beforeOther = await askedAbout(a, 'other/')
    t.ok(beforeSecret.length > 0 && beforeOther.length > 0, 'the first run did ask for both')
    const stevedore = await startInProcess(t, root, {
      proxy: { remoteurl: a.url, allow: ['team/**'] },
      upstreams: { second: { remoteurl: b.url, hosts: [NS], deny: ['team/secret*'] } },
    })
    const refused = [
      ...cachedPaths,
      ...readPaths('/v2/team/secret', secret, `?ns=${NS}`),
      // never cached, and a name the pattern's `*` covers
      ...readPaths(`/v2/${NS}/team/secret-new`, secret),
      ...readPaths('/v2/other/x', other, `?ns=${a.host}`),
      ...readPaths('/v2/other/never', other),
    ]
    for (const path of refused) {
      for (const method of ['GET', 'HEAD']) {
        const reply = await fetch(`${stevedore.url}${path}`, { method, headers: ACCEPT })
        t.equal(reply.status, 403, `${method} ${path}: 403`)
        if (method === 'GET') {
          t.equal(errorCode(Buffer.from(await reply.arrayBuffer())), 'DENIED', 'DENIED, in an OCI error body')
        }
      }
    }
    t.same(await askedAbout(b, 'team/secret'), beforeSecret, 'B heard nothing about team/secret*')
    t.same(await askedAbout(a, 'other/'), beforeOther, 'A heard nothing about other/*')
    t.ok((await listFiles(paths.repository(root, `${NS}/team/secret`))).length > 0, 'what was cached stays on disk, refused')

    // What the policies leave open is still served: they are each upstream's own.
    const aSecret = await rawGet(`${stevedore.url}/v2/team/secret/manifests/1.0`, ACCEPT)
    t.equal(aSecret.status, 200, "A's team/secret is allowed (team/**) and B's deny does not apply to A")
    t.equal(aSecret.headers['docker-content-digest'], secret.manifestDigest)
    const bApp = await rawGet(`${stevedore.url}/v2/${NS}/team/app/manifests/1.0`, ACCEPT)
    t.equal(bApp.status, 200, "B's team/app is not denied")
    t.equal(bApp.headers['docker-content-digest'], app.manifestDigest)
    t.ok((await askedAbout(a, 'team/secret')).length > 0, 'A was asked for its team/secret')
  })
})
