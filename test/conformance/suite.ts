/**
 * An OCI distribution-spec v1.1 conformance suite over plain fetch, to run
 * against any registry URL: the four workflow categories of §Conformance as
 * tap subtests. A MUST of spec.md fails; a SHOULD or MAY is a comment.
 *
 * Grounded in spec.md v1.1 (quoted at each check) and the Go conformance
 * suite under conformance/ (01_pull_test.go, 02_push_test.go,
 * 03_discovery_test.go, 04_management_test.go), whose steps and accepted
 * statuses are mirrored. Where the two differ the spec wins, and the check
 * says so.
 *
 * Every category writes to `target.repo`, so they run in order (pull, push,
 * discovery, management) and each asserts only what it pushed itself or what
 * holds of any content (the tags list is checked relative to the full list).
 */
import type { Test } from 'tap'
import { discovery } from './discovery.js'
import type { Target } from './http.js'
import { management, managementDisabled, type Refusal } from './management.js'
import { pull } from './pull.js'
import { pushBlobs } from './push-blobs.js'
import { pushManifests } from './push-manifests.js'

export type { Target } from './http.js'
export type { Refusal } from './management.js'

export async function conformance(t: Test, target: Target, refusal: Refusal = {}): Promise<void> {
  await t.test('pull', t => pull(t, target))
  await t.test('push', async t => {
    await t.test('blobs', t => pushBlobs(t, target))
    await t.test('manifests', t => pushManifests(t, target))
  })
  await t.test('content discovery', t => discovery(t, target))
  await contentManagement(t, target, refusal)
}

/** Category 4 alone: the deletes when enabled, the refusals when not (with what the registry promises of them). */
export async function contentManagement(t: Test, target: Target, refusal: Refusal = {}): Promise<void> {
  if (target.deleteEnabled) await t.test('content management', t => management(t, target))
  else await t.test('content management, deletion disabled', t => managementDisabled(t, target, refusal))
}
