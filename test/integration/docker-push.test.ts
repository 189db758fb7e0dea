// `docker push` (Debian's dockerd 20.10, run privately by helpers/dockerd.ts)
// into the hosted repositories of a proxying Stevedore, with Stevedore's own
// token issuer and `access` rules that give push to one user only: the
// pusher's image is served back byte for byte (docker pulls it again after
// removing it), the upstream never sees the hosted name, a user with pull
// only is refused, and a push to a proxied name is refused.
import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { accessLog } from '../helpers/access-log.js'
import { startDistribution } from '../helpers/distribution.js'
import { startDockerd } from '../helpers/dockerd.js'
import { writeOciImage } from '../helpers/images.js'
import { startInProcess } from '../helpers/inprocess.js'
import { pushLayout } from '../helpers/skopeo.js'

const run = promisify(execFile)

async function htpasswdLines(users: Record<string, string>): Promise<string> {
  let out = ''
  for (const [user, password] of Object.entries(users)) out += (await run('htpasswd', ['-nbBC', '4', user, password])).stdout.trim() + '\n'
  return out
}

const failure = (command: Promise<unknown>): Promise<string> => command.then(() => 'succeeded', (error: Error) => error.message)

t.test('docker push to a hosted repository, with push granted by the access rules', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t)
  const image = await writeOciImage(join(dir, 'base'), { tag: '1.0', seed: 'docker-push-base', layerSizes: [4000, 60_000] })
  await pushLayout(join(dir, 'base'), '1.0', `${upstream.host}/library/base:1.0`)
  const htpasswd = join(dir, 'htpasswd')
  await writeFile(htpasswd, await htpasswdLines({ alice: 'alice-pw', bob: 'bob-pw' }))
  const stevedore = await startInProcess(
    t,
    join(dir, 'storage'),
    {
      proxy: { remoteurl: upstream.url },
      hosted: ['site/**'],
      auth: { token: { issue: { key: join(dir, 'token-key.pem'), users: htpasswd } } },
      access: [
        { repositories: ['site/**'], users: ['alice'], actions: ['pull', 'push'] },
        { repositories: ['**'], users: ['alice', 'bob'], actions: ['pull'] },
      ],
    },
    {},
    { capture: 'info' },
  )
  const docker = await startDockerd(t)
  const base = `${stevedore.host}/library/base:1.0`
  const hosted = `${stevedore.host}/site/app:1.0`

  await docker.login(stevedore.host, 'alice', 'alice-pw')
  await docker.pull(base)
  const pulled = await docker.inspect(base)
  t.equal(pulled.id, image.manifests[0]?.config.digest, 'the proxied image came through the cache')

  await docker.docker(['tag', base, hosted])
  const pushed = await docker.docker(['push', hosted])
  const digest = /digest: (sha256:[0-9a-f]{64})/.exec(pushed.stdout)?.[1]
  t.ok(digest !== undefined, `docker push reported a digest: ${pushed.stdout.trim().split('\n').pop()}`)
  const v2 = join(dir, 'storage', 'docker/registry/v2/repositories/site/app')
  t.equal((await run('cat', [join(v2, '_manifests/tags/1.0/current/link')])).stdout, digest, 'the tag link names the pushed manifest')

  // Gone locally, pulled back from the hosted repository.
  await docker.docker(['rmi', hosted, base])
  await docker.pull(hosted)
  const again = await docker.inspect(hosted)
  t.equal(again.id, pulled.id, 'the image pulled back has the same ID (config digest)')
  t.same(again.repoDigests, [`${stevedore.host}/site/app@${digest}`], 'and the pushed manifest digest')
  t.notOk(accessLog(upstream).some(r => r.path.includes('site/app')), 'the upstream never saw the hosted repository')

  // Pushing somewhere else.
  await docker.docker(['tag', hosted, `${stevedore.host}/library/mine:1.0`])
  t.match(await failure(docker.docker(['push', `${stevedore.host}/library/mine:1.0`])), /denied|unsupported|not supported/i, 'a push to a proxied name is refused')
  t.notOk(
    stevedore.logRecords().some(r => r.msg === 'request' && typeof r.path === 'string' && r.path.startsWith('/v2/library/mine/') && (r.status === 201 || r.status === 202)),
    'nothing was accepted for the proxied name',
  )

  // A user with pull only.
  await docker.login(stevedore.host, 'bob', 'bob-pw')
  await docker.docker(['tag', hosted, `${stevedore.host}/site/app:bob`])
  t.match(await failure(docker.docker(['push', `${stevedore.host}/site/app:bob`])), /denied/, 'bob may pull site/app but not push to it')
  await t.rejects(run('test', ['-e', join(v2, '_manifests/tags/bob')]), 'no tag was written for bob')
  await docker.docker(['rmi', hosted])
  await docker.pull(hosted)
  t.pass('bob pulls what alice pushed')
})
