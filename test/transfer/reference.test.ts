// Image references as clients write them → host, repository, tag, digest;
// and the storage scope each gets from the routing (the host as ?ns=).
import t from 'tap'
import { manifestReference, parseImageList, parseImageReference, storageScope } from '../../src/transfer/reference.js'
import type { Registry } from '../../src/registry/services.js'
import { Routing, type RoutedUpstream } from '../../src/routing/routes.js'

/** What `fn` throws (undefined when it returns). */
const caught = (fn: () => unknown): unknown => {
  try {
    fn()
  } catch (err) {
    return err
  }
  return undefined
}

const HEX = 'a'.repeat(64)

t.test('references parse into host, path, tag and digest', async t => {
  const table: [string, Record<string, unknown>][] = [
    ['alpine', { path: 'alpine', tag: 'latest' }],
    ['alpine:3.20', { path: 'alpine', tag: '3.20' }],
    ['library/alpine', { path: 'library/alpine', tag: 'latest' }],
    ['docker.io/library/alpine:3.20', { host: 'docker.io', path: 'library/alpine', tag: '3.20' }],
    [`ghcr.io/myorg/app@sha256:${HEX}`, { host: 'ghcr.io', path: 'myorg/app', digest: `sha256:${HEX}` }],
    [`team/app:v1@sha256:${HEX}`, { path: 'team/app', tag: 'v1', digest: `sha256:${HEX}` }],
    ['127.0.0.1:5000/team/app:v1', { host: '127.0.0.1:5000', path: 'team/app', tag: 'v1' }],
    ['localhost/app', { host: 'localhost', path: 'app', tag: 'latest' }],
    ['Registry.Example.COM/a/b:Tag_1', { host: 'registry.example.com', path: 'a/b', tag: 'Tag_1' }],
    ['  nginx:1  ', { path: 'nginx', tag: '1' }],
    ['team/app', { path: 'team/app', tag: 'latest' }],
  ]
  for (const [input, want] of table) {
    const ref = parseImageReference(input)
    const got = { ...(ref.host ? { host: ref.host } : {}), path: ref.path, ...(ref.tag ? { tag: ref.tag } : {}), ...(ref.digest ? { digest: ref.digest.value } : {}) }
    t.same(got, want, input)
  }
  t.same(manifestReference(parseImageReference(`app:v1@sha256:${HEX}`)).kind, 'digest', 'the digest pins the image')
  t.same(manifestReference(parseImageReference('app')).value, 'latest')
})

t.test('what is not a reference is refused with the reason', async t => {
  const bad: [string, RegExp][] = [
    ['', /empty/],
    ['Alpine', /invalid repository name/],
    ['alpine:bad tag', /bad tag|invalid repository/],
    ['alpine:' + 'x'.repeat(200), /bad tag/],
    ['alpine@sha256:123', /digest/],
    ['alpine@md5:' + 'a'.repeat(32), /unsupported digest algorithm/],
    ['bad_host.example:99999x/app', /bad registry host|bad tag/],
    ['../etc/passwd', /bad registry host/],
    ['a/../b', /invalid repository name/],
    ['docker.io/', /invalid repository name/],
  ]
  for (const [input, message] of bad) {
    t.match(caught(() => parseImageReference(input)), { name: 'TransferError', code: 'ERR_IMAGE_REFERENCE', message }, JSON.stringify(input))
  }
})

t.test('list files: one a line, comments and blank lines skipped', async t => {
  t.same(parseImageList('# images\nalpine:3.20\n\n  ghcr.io/x/y:1   # pinned later\r\n#done\n'), ['alpine:3.20', 'ghcr.io/x/y:1'])
})

t.test('the host routes like ?ns=: library/ for Docker Hub, namespaces for the others', async t => {
  const registry = (label: string): Registry => ({ repository: () => { throw new Error(label) }, catalog: async () => [] })
  const up = (over: Partial<RoutedUpstream> & Pick<RoutedUpstream, 'name'>): RoutedUpstream => ({ hosts: [], namespace: '', dockerHub: false, allow: [], deny: [], registry: registry(over.name), ...over })
  const routing = new Routing({
    defaultUpstream: up({ name: 'default', dockerHub: true, hosts: ['registry-1.docker.io', 'docker.io', 'index.docker.io'] }),
    upstreams: [up({ name: 'ghcr', hosts: ['ghcr.io'], namespace: 'ghcr.io' }), up({ name: 'lan', hosts: ['127.0.0.1:5000'], namespace: 'lan' })],
    local: registry('local'),
    unknownNs: 'reject',
  })
  const scope = (input: string) => {
    const s = storageScope(routing, parseImageReference(input))
    return `${s.upstream}:${s.name}`
  }
  t.equal(scope('alpine:3.20'), 'default:library/alpine')
  t.equal(scope('docker.io/alpine'), 'default:library/alpine')
  t.equal(scope('docker.io/library/alpine:3.20'), 'default:library/alpine')
  t.equal(scope('team/app'), 'default:team/app')
  t.equal(scope('ghcr.io/myorg/app:1'), 'ghcr:ghcr.io/myorg/app')
  t.equal(scope('127.0.0.1:5000/team/app:1'), 'lan:lan/team/app')
  t.match(caught(() => scope('quay.io/x/y')), { name: 'RegistryError', code: 'NAME_UNKNOWN' }, 'a host no upstream stands for')
})
