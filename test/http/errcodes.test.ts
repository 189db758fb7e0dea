// Every error code is documented in docs/errors.md with its status, and the error body has the OCI shape.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { ERROR_CODES, errorBody } from '../../src/http/errcode.js'
import { RegistryError } from '../../src/registry/errors.js'

t.test('each code is documented with its status', async t => {
  const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8')
  for (const [code, info] of Object.entries(ERROR_CODES)) {
    t.match(doc, new RegExp(`\\| \`${code}\` \\| ${info.status} \\| \\S`), code)
  }
})

t.test('error bodies', async t => {
  t.same(errorBody(new RegistryError('BLOB_UNKNOWN', 'blob unknown to registry', { detail: { digest: 'sha256:x' } })), {
    errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown to registry', detail: { digest: 'sha256:x' } }],
  })
  t.same(errorBody(new RegistryError('UNSUPPORTED', 'no')), { errors: [{ code: 'UNSUPPORTED', message: 'no' }] }, 'no detail, no key')
})
