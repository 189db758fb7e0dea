// The OCI distribution-spec v1.1 conformance suite against a plain Stevedore:
// no proxy and no upstreams, so every repository is hosted and pushable. Once
// with deletion enabled (all four categories), once with it disabled (the
// refusals of content management: 405 UNSUPPORTED, as the config promises).
import t from 'tap'
import { startInProcess } from '../helpers/inprocess.js'
import { conformance, contentManagement } from './suite.js'

t.test('a plain registry with deletion enabled', async t => {
  const root = t.testdir()
  const registry = await startInProcess(t, root, { storage: { delete: { enabled: true }, filesystem: { rootdirectory: root } } })
  await conformance(t, { url: registry.url, repo: 'conformance/app', crossRepo: 'conformance/team/other', deleteEnabled: true })
})

t.test('a plain registry with deletion disabled', async t => {
  const root = t.testdir()
  const registry = await startInProcess(t, root, {})
  await contentManagement(
    t,
    { url: registry.url, repo: 'conformance/app', crossRepo: 'conformance/team/other', deleteEnabled: false },
    { status: 405, code: 'UNSUPPORTED' },
  )
})
