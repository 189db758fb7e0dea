/**
 * A Distribution-layout storage tree with N repositories, written straight
 * to disk (plain synchronous fs calls, parents before children) for the
 * growth benchmark. The layout is src/storage/paths.ts's, which is
 * Distribution's (registry/storage/paths.go):
 *
 *   <root>/docker/registry/v2/blobs/sha256/<2>/<hex>/data
 *   <root>/docker/registry/v2/repositories/<name>/
 *     _layers/sha256/<hex>/link                      config and layer
 *     _manifests/revisions/sha256/<hex>/link
 *     _manifests/tags/latest/current/link
 *     _manifests/tags/latest/index/sha256/<hex>/link
 *
 * Every repository holds one OCI manifest referencing the same config blob
 * and the same 1 KiB layer blob (written once); the manifests differ (an
 * annotation names the repository), so each repository has its own manifest
 * digest and no cache keyed by digest can answer for all of them at once.
 * Names are `org<k>/repo<i>`, 1,000 repositories per org, zero-padded so
 * lexical order is numeric order.
 */
import { createHash } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST } from './image.mjs'

const PER_ORG = 1000

/** The i-th repository name (lexical order = i order). @param {number} i */
export function repoName(i) {
  return `org${String(Math.floor(i / PER_ORG)).padStart(3, '0')}/repo${String(i).padStart(6, '0')}`
}

/** @param {Buffer} bytes @param {string} mediaType */
function describe(bytes, mediaType) {
  return { mediaType, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size: bytes.length }
}

/** The manifest of repository `name`: its bytes and descriptor. */
function manifestFor(name, config, layer) {
  const bytes = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer], annotations: { 'org.stevedore.bench.repository': name } }),
  )
  return { bytes, descriptor: describe(bytes, OCI_MANIFEST) }
}

/**
 * Writes the tree under `root` (the storage `rootdirectory`, created if
 * missing). Returns what a client needs to address it: the names and each
 * repository's manifest digest, plus what was written.
 * @param {string} root @param {number} n
 */
export function generateTree(root, n) {
  const started = performance.now()
  const v2 = join(root, 'docker/registry/v2')
  const blobs = join(v2, 'blobs/sha256')
  const repos = join(v2, 'repositories')
  let files = 0
  let dirs = 0
  /** Shared parents (blobs/sha256/<2>, repositories/org<k>), made once. */
  const made = new Set()
  const shared = path => {
    if (made.has(path)) return
    mkdirSync(path)
    made.add(path)
    dirs++
  }
  /** A directory whose parent exists and that nobody made before. @param {string} path */
  const dir = path => {
    mkdirSync(path)
    dirs++
  }
  const file = (path, data) => {
    writeFileSync(path, data)
    files++
  }
  mkdirSync(blobs, { recursive: true })
  mkdirSync(repos, { recursive: true })
  const blob = (bytes, digest) => {
    const hex = digest.slice('sha256:'.length)
    shared(join(blobs, hex.slice(0, 2)))
    dir(join(blobs, hex.slice(0, 2), hex))
    file(join(blobs, hex.slice(0, 2), hex, 'data'), bytes)
  }

  // 1 KiB of deterministic bytes, and a config naming it.
  const layerBytes = createHash('sha512').update('stevedore-bench-growth-layer').digest()
  const layerData = Buffer.concat(Array.from({ length: 16 }, (_, i) => createHash('sha512').update(layerBytes).update(String(i)).digest()))
  const layer = describe(layerData, OCI_LAYER_TAR)
  const configData = Buffer.from(
    JSON.stringify({ created: '1970-01-01T00:00:00Z', architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [layer.digest] } }),
  )
  const config = describe(configData, OCI_CONFIG)
  blob(layerData, layer.digest)
  blob(configData, config.digest)

  const names = []
  const digests = []
  for (let i = 0; i < n; i++) {
    const name = repoName(i)
    const { bytes, descriptor } = manifestFor(name, config, layer)
    const hex = descriptor.digest.slice('sha256:'.length)
    blob(bytes, descriptor.digest)
    const [org] = name.split('/')
    shared(join(repos, org))
    const repo = join(repos, name)
    dir(repo)
    for (const part of ['_layers', '_layers/sha256', '_manifests', '_manifests/revisions', '_manifests/revisions/sha256',
      '_manifests/tags', '_manifests/tags/latest', '_manifests/tags/latest/current', '_manifests/tags/latest/index',
      '_manifests/tags/latest/index/sha256']) dir(join(repo, part))
    for (const linked of [layer, config]) {
      const at = join(repo, '_layers/sha256', linked.digest.slice('sha256:'.length))
      dir(at)
      file(join(at, 'link'), linked.digest)
    }
    dir(join(repo, '_manifests/revisions/sha256', hex))
    file(join(repo, '_manifests/revisions/sha256', hex, 'link'), descriptor.digest)
    file(join(repo, '_manifests/tags/latest/current/link'), descriptor.digest)
    dir(join(repo, '_manifests/tags/latest/index/sha256', hex))
    file(join(repo, '_manifests/tags/latest/index/sha256', hex, 'link'), descriptor.digest)
    names.push(name)
    digests.push(descriptor.digest)
  }
  return { root, n, names, digests, layer, config, files, dirs, seconds: (performance.now() - started) / 1000 }
}
