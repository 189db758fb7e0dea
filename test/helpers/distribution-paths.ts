import { join } from 'node:path'

/** Paths inside Distribution's storage tree (registry/storage/paths.go), for assertions. */
export const distributionPaths = {
  blobData: (root: string, digest: string): string => {
    const [algorithm, hex] = splitDigest(digest)
    return join(root, 'docker/registry/v2/blobs', algorithm, hex.slice(0, 2), hex, 'data')
  },
  repository: (root: string, repo: string): string => join(root, 'docker/registry/v2/repositories', repo),
  tagCurrentLink: (root: string, repo: string, tag: string): string =>
    join(distributionPaths.repository(root, repo), '_manifests/tags', tag, 'current/link'),
  tagIndexLink: (root: string, repo: string, tag: string, digest: string): string => {
    const [algorithm, hex] = splitDigest(digest)
    return join(distributionPaths.repository(root, repo), '_manifests/tags', tag, 'index', algorithm, hex, 'link')
  },
  manifestRevisionLink: (root: string, repo: string, digest: string): string => {
    const [algorithm, hex] = splitDigest(digest)
    return join(distributionPaths.repository(root, repo), '_manifests/revisions', algorithm, hex, 'link')
  },
  layerLink: (root: string, repo: string, digest: string): string => {
    const [algorithm, hex] = splitDigest(digest)
    return join(distributionPaths.repository(root, repo), '_layers', algorithm, hex, 'link')
  },
}

function splitDigest(digest: string): [string, string] {
  const match = /^([a-z0-9]+):([a-f0-9]{32,})$/.exec(digest)
  if (match === null || match[1] === undefined || match[2] === undefined) throw new Error(`not a digest: ${digest}`)
  return [match[1], match[2]]
}
