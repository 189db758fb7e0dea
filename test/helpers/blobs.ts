import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'

export interface LayoutBlob {
  digest: string
  path: string
  size: number
}

/** The blobs of an OCI layout (`blobs/<algorithm>/<hex>`), sorted by digest; temp files skipped. */
export async function listLayoutBlobs(layoutDir: string): Promise<LayoutBlob[]> {
  const blobs: LayoutBlob[] = []
  const blobsDir = join(layoutDir, 'blobs')
  for (const algorithm of await readdir(blobsDir)) {
    for (const hex of await readdir(join(blobsDir, algorithm))) {
      if (!/^[a-f0-9]{32,}$/.test(hex)) continue
      const path = join(blobsDir, algorithm, hex)
      const info = await stat(path)
      if (info.isFile()) blobs.push({ digest: `${algorithm}:${hex}`, path, size: info.size })
    }
  }
  return blobs.sort((a, b) => a.digest.localeCompare(b.digest))
}

/** sha256 of a file's bytes, streamed, as `sha256:<hex>`. */
export async function fileDigest(path: string): Promise<string> {
  const hash = createHash('sha256')
  await pipeline(createReadStream(path), hash)
  return `sha256:${hash.digest('hex')}`
}

export type BlobDifference =
  | { digest: string; kind: 'missing' }
  | { digest: string; kind: 'size'; sizeA: number; sizeB: number }
  | { digest: string; kind: 'content'; digestA: string; digestB: string }

/**
 * Every blob of layout A that is not byte-identical in layout B; empty when
 * B holds all of A's blobs. Bytes are compared by their sha256, so a file of
 * A whose content does not match its own name also shows as 'content'.
 */
export async function compareLayoutBlobs(layoutA: string, layoutB: string): Promise<BlobDifference[]> {
  const inB = new Map((await listLayoutBlobs(layoutB)).map(blob => [blob.digest, blob]))
  const differences: BlobDifference[] = []
  for (const a of await listLayoutBlobs(layoutA)) {
    const b = inB.get(a.digest)
    if (b === undefined) {
      differences.push({ digest: a.digest, kind: 'missing' })
    } else if (a.size !== b.size) {
      differences.push({ digest: a.digest, kind: 'size', sizeA: a.size, sizeB: b.size })
    } else {
      const [digestA, digestB] = await Promise.all([fileDigest(a.path), fileDigest(b.path)])
      if (digestA !== a.digest || digestB !== a.digest) differences.push({ digest: a.digest, kind: 'content', digestA, digestB })
    }
  }
  return differences
}

/** Blobs of a layout whose bytes do not hash to their name (sha256 only). */
export async function corruptLayoutBlobs(layoutDir: string): Promise<LayoutBlob[]> {
  const corrupt: LayoutBlob[] = []
  for (const blob of await listLayoutBlobs(layoutDir)) {
    if (blob.digest.startsWith('sha256:') && (await fileDigest(blob.path)) !== blob.digest) corrupt.push(blob)
  }
  return corrupt
}
