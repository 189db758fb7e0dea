import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** The part of a tap `Test` the helpers need. */
export interface Teardown {
  teardown(fn: () => unknown): void
}

/**
 * A fresh directory under the OS temp dir, removed on teardown.
 *
 * Helpers use this rather than `t.testdir()`: a second `t.testdir()` call in
 * the same test wipes the first, so only the test itself should call it.
 * tap runs teardowns last-registered-first, so a server started after its
 * directory was made is stopped before the directory goes.
 */
export async function tempDir(t: Teardown, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `stevedore-${prefix}-`))
  t.teardown(() => removeDir(dir))
  return dir
}

/** Never throws: a throwing teardown makes tap skip the remaining ones. */
export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 3 }).catch(() => {})
}
