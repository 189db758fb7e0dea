// Hosted patterns beside the upstreams: a hosted name without ?ns= is the
// hosted registry's, under its own name; no upstream may store under a
// hosted name (DENIED), whichever way the request reaches it; other names
// route as before.
import t from 'tap'
import { RegistryError } from '../../src/registry/errors.js'
import { parseRepositoryName } from '../../src/registry/names.js'
import type { Registry } from '../../src/registry/services.js'
import { Routing, type RoutingOptions } from '../../src/routing/routes.js'
import { labelled, upstream } from '../helpers/routing.js'

const registry = labelled
const hub = registry('hub')
const ghcr = registry('ghcr')
const quay = registry('quay')
const local = registry('local')
const hostedRegistry = registry('hosted')

const defaultUpstream = upstream({ name: 'default', registry: hub, dockerHub: true, hosts: ['registry-1.docker.io', 'docker.io'] })
const ghcrUpstream = upstream({ name: 'ghcr', registry: ghcr, hosts: ['ghcr.io'], namespace: 'ghcr.io' })
const quayUpstream = upstream({ name: 'quay', registry: quay, hosts: ['quay.io'], namespace: 'quay.io', allow: ['site/**'] })

const patterns = ['site/**', 'library/mine', 'ghcr.io/myorg/**', 'team/app-*']
const routing = (over: Partial<RoutingOptions> = {}) =>
  new Routing({ defaultUpstream, upstreams: [ghcrUpstream, quayUpstream], local, hosted: { registry: hostedRegistry, patterns }, unknownNs: 'reject', ...over })

const label = (r: Registry): string => (r === hub ? 'hub' : r === ghcr ? 'ghcr' : r === quay ? 'quay' : r === local ? 'local' : r === hostedRegistry ? 'hosted' : 'other')
/** [registry, stored name, upstream] or the error code. */
const route = (r: Routing, path: string, ns: string | null = null): [string, string, string | undefined] | string => {
  try {
    const scope = r.resolve(parseRepositoryName(path), ns)
    return [label(scope.registry), scope.name, scope.upstream]
  } catch (err) {
    if (err instanceof RegistryError) return err.code
    throw err
  }
}

t.test('hosted names without ns are served by the hosted registry under their own name', async t => {
  const r = routing()
  t.same(route(r, 'site/app'), ['hosted', 'site/app', undefined])
  t.same(route(r, 'site'), ['hosted', 'site', undefined], 'site/** matches site itself')
  t.same(route(r, 'site/deep/app'), ['hosted', 'site/deep/app', undefined], '** spans components')
  t.same(route(r, 'team/app-web'), ['hosted', 'team/app-web', undefined])
  t.same(route(r, 'library/mine'), ['hosted', 'library/mine', undefined])
  t.same(route(r, 'ghcr.io/myorg/tool'), ['hosted', 'ghcr.io/myorg/tool', undefined], 'patterns are tried first, on the name as written, before host prefixes')
  t.same(route(r, 'site/app', ''), ['hosted', 'site/app', undefined], 'an empty ns is no ns')
})

t.test('other names route as before', async t => {
  const r = routing()
  t.same(route(r, 'team/app'), ['hub', 'team/app', 'default'], 'team/app-* does not match team/app')
  t.same(route(r, 'team/app-web/x'), ['hub', 'team/app-web/x', 'default'], '* stays within a component')
  t.same(route(r, 'alpine'), ['hub', 'library/alpine', 'default'])
  t.same(route(r, 'sites/app'), ['hub', 'sites/app', 'default'], 'site/** is not a string prefix')
  t.same(route(r, 'ghcr.io/other/tool'), ['ghcr', 'ghcr.io/other/tool', 'ghcr'])
  t.same(route(r, 'other/tool', 'ghcr.io'), ['ghcr', 'ghcr.io/other/tool', 'ghcr'])
  t.same(route(r, 'site/app', 'quay.io'), ['quay', 'quay.io/site/app', 'quay'], 'an upstream stores under its namespace, which no pattern matches here')
})

t.test('no upstream may store under a hosted name', async t => {
  const r = routing()
  t.equal(route(r, 'site/app', 'docker.io'), 'DENIED', 'ns names the default upstream, which stores at the root')
  t.equal(route(r, 'site/app', 'registry-1.docker.io'), 'DENIED')
  t.equal(route(r, 'mine'), 'DENIED', 'the default upstream would store library/mine')
  t.equal(route(r, 'mine', 'docker.io'), 'DENIED')
  t.equal(route(r, 'docker.io/library/mine'), 'DENIED', 'by the default upstream host prefix')
  t.equal(route(r, 'docker.io/site/app'), 'DENIED')
  t.equal(route(r, 'myorg/tool', 'ghcr.io'), 'DENIED', 'ghcr would store ghcr.io/myorg/tool')
  t.equal(route(r, 'ghcr.io/myorg/tool', 'ghcr.io'), 'DENIED', 'override_path: the prefix is dropped, the stored name is hosted')
  const err = (() => {
    try {
      r.resolve(parseRepositoryName('myorg/tool'), 'ghcr.io')
    } catch (e) {
      return e
    }
  })()
  t.match(err, { code: 'DENIED', detail: { upstream: 'ghcr', name: 'ghcr.io/myorg/tool' } }, 'the detail names the upstream and the stored name')
  t.equal(route(r, 'site/app', 'unknown.example'), 'NAME_UNKNOWN', 'an explicit ns never reaches the hosted registry')
  t.equal(route(routing({ unknownNs: 'default' }), 'site/app', 'unknown.example'), 'DENIED', 'nor through unknownns: default')
  t.same(route(routing({ unknownNs: 'default' }), 'team/app', 'unknown.example'), ['hub', 'team/app', 'default'])
})

t.test('without a default upstream', async t => {
  const r = routing({ defaultUpstream: undefined })
  t.same(route(r, 'site/app'), ['hosted', 'site/app', undefined])
  t.same(route(r, 'plain/app'), ['local', 'plain/app', undefined], 'unrouted names are local')
  t.same(route(r, 'mine'), ['local', 'mine', undefined], 'no Docker Hub library/ without a default upstream')
  t.equal(route(r, 'myorg/tool', 'ghcr.io'), 'DENIED')
  t.equal(route(r, 'site/app', 'docker.io'), 'NAME_UNKNOWN', 'no upstream has that host now')
})

t.test('no hosted patterns, no hosted routing', async t => {
  for (const hosted of [undefined, { registry: hostedRegistry, patterns: [] }]) {
    const r = routing({ hosted })
    t.same(route(r, 'site/app'), ['hub', 'site/app', 'default'], `hosted: ${JSON.stringify(hosted?.patterns)}`)
    t.same(route(r, 'myorg/tool', 'ghcr.io'), ['ghcr', 'ghcr.io/myorg/tool', 'ghcr'])
  }
})
