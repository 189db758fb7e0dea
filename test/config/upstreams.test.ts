// upstreams: and routing: in config.yml — each upstream inherits proxy.*,
// per-pattern tag TTLs, hosts, storage namespaces, and the errors a wrong
// file gets (a host listed twice, a missing remoteurl, a bad name).
import t from 'tap'
import { parseConfig } from '../../src/config/load.js'
import type { ConfigNotice } from '../../src/config/types.js'

const MINIMAL = 'version: 0.1\nstorage: {filesystem: {rootdirectory: /data}}\n'
const parse = (yaml: string) => parseConfig(yaml, {}, 'test.yml')
const errors = (yaml: string): ConfigNotice[] => {
  try {
    parse(yaml)
    return []
  } catch (err) {
    return (err as { notices: ConfigNotice[] }).notices.filter(n => n.level === 'error')
  }
}

t.test('upstreams inherit proxy.* and get hosts and a storage namespace', async t => {
  const { config, notices } = parse(`${MINIMAL}
proxy:
  remoteurl: https://registry-1.docker.io
  tagttl: {"latest": 1m, "*-dev": 30s, "*": 10m}
  timeouts: {body: 9s}
  deny: ["library/secret*"]
upstreams:
  ghcr:
    remoteurl: https://ghcr.io
    username: bot
    password: token
    tagttl: 2m
    allow: ["myorg/**"]
    deny: ["myorg/secret-*"]
  private:
    remoteurl: http://registry.internal:5000
    hosts: [registry.internal:5000, registry.internal]
    timeouts: {body: 3s}
routing: {unknownns: default}
`)
  t.same(notices, [])
  t.same(config.proxy?.tagTtlRules, [{ pattern: 'latest', ttlMs: 60_000 }, { pattern: '*-dev', ttlMs: 30_000 }])
  t.equal(config.proxy?.tagTtlMs, 600_000, '"*" is the fallback')
  t.same(config.proxy?.deny, ['library/secret*'])
  t.same(config.proxy?.hosts, ['registry-1.docker.io', 'docker.io', 'index.docker.io'])
  t.equal(config.proxy?.namespace, '')
  t.same(config.upstreams.map(u => u.name), ['ghcr', 'private'])
  const [ghcr, internal] = config.upstreams
  t.match(ghcr, {
    url: 'https://ghcr.io',
    username: 'bot',
    password: 'token',
    hosts: ['ghcr.io'],
    namespace: 'ghcr.io',
    allow: ['myorg/**'],
    deny: ['myorg/secret-*'],
    tagTtlMs: 120_000,
    tagTtlRules: [],
    dockerHub: false,
  })
  t.equal(ghcr?.timeouts.bodyMs, 9_000, 'a key it does not set comes from proxy.*')
  t.equal(ghcr?.timeouts.headersMs, 30_000, 'or from proxy.*\'s default')
  t.same(internal?.hosts, ['registry.internal:5000', 'registry.internal'])
  t.equal(internal?.namespace, 'registry.internal', 'the first host that can be a name component')
  t.equal(internal?.timeouts.bodyMs, 3_000)
  t.equal(internal?.tagTtlMs, 600_000, 'proxy.tagttl\'s fallback when it sets none')
  t.same(internal?.tagTtlRules, [{ pattern: 'latest', ttlMs: 60_000 }, { pattern: '*-dev', ttlMs: 30_000 }])
  t.equal(config.routing.unknownNs, 'default')
})

t.test('upstreams without a default upstream', async t => {
  const { config } = parse(`${MINIMAL}upstreams: {quay: {remoteurl: https://quay.io}}\n`)
  t.equal(config.proxy, undefined)
  t.match(config.upstreams, [{ name: 'quay', hosts: ['quay.io'], namespace: 'quay.io' }])
  t.equal(config.routing.unknownNs, 'reject', 'the default')
})

t.test('what a wrong file gets', async t => {
  t.match(errors(`${MINIMAL}proxy: {remoteurl: https://registry-1.docker.io}\nupstreams: {hub: {remoteurl: https://mirror.example, hosts: [docker.io]}}\n`), [
    { path: 'upstreams.hub.hosts', message: /host docker\.io is listed for upstream default already/ },
  ])
  t.match(errors(`${MINIMAL}upstreams: {a: {remoteurl: https://a.example, hosts: [x.example]}, b: {remoteurl: https://b.example, hosts: [x.example]}}\n`), [
    { path: 'upstreams.b.hosts', message: /a host stands for one upstream/ },
  ])
  t.match(errors(`${MINIMAL}upstreams: {ghcr: {username: u}}\n`), [{ path: 'upstreams.ghcr.remoteurl', message: /required/ }])
  t.match(errors(`${MINIMAL}upstreams: {Bad_Name: {remoteurl: https://a.example}}\n`), [{ path: 'upstreams.Bad_Name', message: /lower-case/ }])
  t.match(errors(`${MINIMAL}upstreams: {default: {remoteurl: https://a.example}}\n`), [{ path: 'upstreams.default', message: /proxy\.\*/ }])
  t.match(errors(`${MINIMAL}upstreams: {a: {remoteurl: ftp://a.example}}\n`), [{ path: 'upstreams.a.remoteurl', message: /scheme/ }])
  t.match(errors(`${MINIMAL}upstreams: {a: {remoteurl: https://a.example, hosts: a.example}}\n`), [{ path: 'upstreams.a.hosts', message: /list of strings/ }])
  t.match(errors(`${MINIMAL}proxy: {remoteurl: https://r.example, tagttl: {"v*": soon}}\n`), [{ path: 'proxy.tagttl', message: /"v\*"/ }])
  t.match(errors(`${MINIMAL}proxy: {remoteurl: https://r.example, tagttl: {"v 1": 1m}}\n`), [{ path: 'proxy.tagttl', message: /not a tag pattern/ }])
  t.match(errors(`${MINIMAL}routing: {unknownns: default}\n`), [{ path: 'routing.unknownns', message: /needs a default upstream/ }])
  t.match(errors(`${MINIMAL}proxy: {remoteurl: https://r.example, allow: ["Bad Pattern"]}\n`), [{ path: 'proxy.allow', message: /not a repository pattern/ }])
  const { notices } = parse(`${MINIMAL}upstreams: {a: {remoteurl: https://a.example, remoteurll: x}}\n`)
  t.match(notices, [{ level: 'warn', path: 'upstreams.a.remoteurll', message: /did you mean upstreams\.a\.remoteurl/ }])
})
