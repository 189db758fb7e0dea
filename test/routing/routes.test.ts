// Request → scope: ?ns= first, then a host path prefix, then the default
// upstream (library/ on Docker Hub); hosts are keys, never addresses; allow
// and deny patterns; storage names per upstream namespace.
import t from 'tap'
import { RegistryError } from '../../src/registry/errors.js'
import { parseRepositoryName } from '../../src/registry/names.js'
import { accessMatcher, repositoryPattern } from '../../src/routing/patterns.js'
import { Routing } from '../../src/routing/routes.js'
import { labelled, upstream } from '../helpers/routing.js'

const registry = labelled
const hub = registry('hub')
const ghcr = registry('ghcr')
const local = registry('local')
const defaultUpstream = upstream({ name: 'default', registry: hub, dockerHub: true, hosts: ['registry-1.docker.io', 'docker.io', 'index.docker.io'], deny: ['library/secret*'] })
const ghcrUpstream = upstream({ name: 'ghcr', registry: ghcr, hosts: ['ghcr.io'], namespace: 'ghcr.io', allow: ['myorg/**'], deny: ['myorg/secret-*'] })
const routing = (unknownNs: 'reject' | 'default' = 'reject') => new Routing({ defaultUpstream, upstreams: [ghcrUpstream], local, unknownNs })

const resolve = (r: Routing, path: string, ns: string | null = null) => {
  const scope = r.resolve(parseRepositoryName(path), ns)
  return { name: scope.name, upstream: scope.upstream, registry: scope.registry }
}
const refusal = (fn: () => unknown): string => {
  try {
    fn()
  } catch (err) {
    if (err instanceof RegistryError) return err.code
    throw err
  }
  return 'none'
}

t.test('routing order and storage names', async t => {
  const r = routing()
  t.same(resolve(r, 'alpine'), { name: 'library/alpine', upstream: 'default', registry: hub }, 'Docker Hub single names get library/')
  t.same(resolve(r, 'team/app'), { name: 'team/app', upstream: 'default', registry: hub })
  t.same(resolve(r, 'myorg/app', 'ghcr.io'), { name: 'ghcr.io/myorg/app', upstream: 'ghcr', registry: ghcr }, '?ns= picks the upstream')
  t.same(resolve(r, 'myorg/app', 'GHCR.IO'), { name: 'ghcr.io/myorg/app', upstream: 'ghcr', registry: ghcr }, 'hosts compare without case')
  t.same(resolve(r, 'ghcr.io/myorg/app'), { name: 'ghcr.io/myorg/app', upstream: 'ghcr', registry: ghcr }, 'a host path prefix picks it too')
  t.same(resolve(r, 'ghcr.io/myorg/app', 'ghcr.io'), { name: 'ghcr.io/myorg/app', upstream: 'ghcr', registry: ghcr }, 'override_path: the prefix naming the ns upstream is dropped')
  t.same(resolve(r, 'docker.io/library/alpine'), { name: 'library/alpine', upstream: 'default', registry: hub }, 'the default upstream by its host prefix')
  t.same(resolve(r, 'alpine', 'docker.io'), { name: 'library/alpine', upstream: 'default', registry: hub })
  t.equal(
    refusal(() => resolve(r, 'ghcr.io/myorg/app', 'docker.io')),
    'DENIED',
    "ns first: another upstream's prefix stays part of the name, and the default upstream cannot store a name in that upstream's namespace",
  )
})

t.test('an unconfigured ns is a key that names nothing', async t => {
  t.equal(refusal(() => routing().resolve(parseRepositoryName('x/y'), '127.0.0.1:9')), 'NAME_UNKNOWN')
  t.equal(refusal(() => routing().resolve(parseRepositoryName('x/y'), 'evil.example')), 'NAME_UNKNOWN')
  t.same(resolve(routing('default'), 'x/y', 'evil.example'), { name: 'x/y', upstream: 'default', registry: hub }, 'unknownns: default')
  t.same(resolve(routing(), 'evil.example/x/y'), { name: 'evil.example/x/y', upstream: 'default', registry: hub }, 'an unknown host prefix is just part of the name')
})

t.test('allow and deny', async t => {
  const r = routing()
  t.equal(refusal(() => resolve(r, 'other/app', 'ghcr.io')), 'DENIED', 'not in allow')
  t.equal(refusal(() => resolve(r, 'myorg/secret-x', 'ghcr.io')), 'DENIED', 'deny wins over allow')
  t.equal(refusal(() => resolve(r, 'ghcr.io/myorg/secret-x')), 'DENIED', 'by prefix too')
  t.equal(refusal(() => resolve(r, 'secret-thing')), 'DENIED', 'patterns see the upstream name (library/secret-thing)')
  t.equal(refusal(() => resolve(r, 'myorg/deep/app', 'ghcr.io')), 'none', '** spans components')
})

t.test('without a default upstream, unrouted names are local', async t => {
  const r = new Routing({ upstreams: [ghcrUpstream], local, unknownNs: 'reject' })
  t.same(resolve(r, 'site/app'), { name: 'site/app', upstream: undefined, registry: local })
  t.same(resolve(r, 'ghcr.io/myorg/app'), { name: 'ghcr.io/myorg/app', upstream: 'ghcr', registry: ghcr })
  t.same(await r.catalog(10), ['local'], 'the catalog is local storage, where every upstream caches')
})

t.test('repository patterns', async t => {
  const cases: [string, string, boolean][] = [
    ['myorg/**', 'myorg/app', true],
    ['myorg/**', 'myorg/a/b', true],
    ['myorg/**', 'myorg', true],
    ['myorg/**', 'myorgx/app', false],
    ['team/app-*', 'team/app-1', true],
    ['team/app-*', 'team/app-1/x', false],
    ['*', 'alpine', true],
    ['*', 'library/alpine', false],
    ['**', 'a/b/c', true],
    ['library/alpine', 'library/alpine', true],
    ['a.b/c', 'axb/c', false],
  ]
  for (const [pattern, name, want] of cases) t.equal(repositoryPattern(pattern).test(name), want, `${pattern} ~ ${name}`)
  const allowed = accessMatcher(['team/**'], ['team/private-*'])
  t.ok(allowed('team/app'))
  t.notOk(allowed('team/private-x'))
  t.notOk(allowed('other/app'))
  t.ok(accessMatcher([], [])('anything/at/all'))
})
