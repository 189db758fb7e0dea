import { createHash } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeLayerBlob, type LayerCompression } from './tar-layer.js'

/**
 * Deterministic OCI image layouts written by hand: the same options give the
 * same bytes, so digests can be asserted. Layer i of an image is seeded by
 * `${imageSeed}/layer/${i}`: two images with the same seed share layers; an
 * index seeds each platform's image with `${seed}/${os}/${architecture}[/${variant}]`.
 * Don't write two images into one layout concurrently (index.json is rewritten).
 */

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
const REF_NAME = 'org.opencontainers.image.ref.name'
const EPOCH = '1970-01-01T00:00:00Z'

export interface Platform {
  os: string
  architecture: string
  variant?: string
}

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
}

export interface ManifestDescription extends Descriptor {
  platform: Platform
  config: Descriptor
  layers: Descriptor[]
}

export interface ImageDescription {
  tag: string
  /** What the tag points to: the image manifest, or the index for `writeOciIndex`. */
  manifestDigest: string
  indexDigest?: string
  index?: Descriptor
  /** The image manifests (one per platform). */
  manifests: ManifestDescription[]
  /** Every config and layer blob, without duplicates. */
  blobs: Descriptor[]
}

export interface ImageOptions {
  tag: string
  seed: string
  layerSizes: number[]
  platform?: Platform
  /** Default 'auto': gzip below 8 MiB, plain tar above (see tar-layer.ts). */
  compression?: LayerCompression
}

export interface IndexOptions {
  tag: string
  seed: string
  platforms: Array<Platform & { layerSizes: number[] }>
  compression?: LayerCompression
}

export async function writeOciImage(layoutDir: string, opts: ImageOptions): Promise<ImageDescription> {
  const platform = opts.platform ?? { os: 'linux', architecture: 'amd64' }
  const manifest = await writeImage(layoutDir, opts.seed, platform, opts.layerSizes, opts.compression)
  await tagInLayout(layoutDir, opts.tag, manifest)
  return {
    tag: opts.tag,
    manifestDigest: manifest.digest,
    manifests: [manifest],
    blobs: uniqueBlobs([manifest]),
  }
}

export async function writeOciIndex(layoutDir: string, opts: IndexOptions): Promise<ImageDescription> {
  const manifests: ManifestDescription[] = []
  for (const { layerSizes, ...platform } of opts.platforms) {
    const seed = [opts.seed, platform.os, platform.architecture, platform.variant].filter(Boolean).join('/')
    manifests.push(await writeImage(layoutDir, seed, platform, layerSizes, opts.compression))
  }
  const index = await writeJsonBlob(layoutDir, OCI_INDEX, {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: manifests.map(m => ({ mediaType: m.mediaType, digest: m.digest, size: m.size, platform: m.platform })),
  })
  await tagInLayout(layoutDir, opts.tag, index)
  return {
    tag: opts.tag,
    manifestDigest: index.digest,
    indexDigest: index.digest,
    index,
    manifests,
    blobs: uniqueBlobs(manifests),
  }
}

async function writeImage(
  layoutDir: string,
  seed: string,
  platform: Platform,
  layerSizes: number[],
  compression: LayerCompression | undefined,
): Promise<ManifestDescription> {
  const blobsDir = join(layoutDir, 'blobs/sha256')
  const layers = []
  for (const [i, size] of layerSizes.entries()) {
    layers.push(await writeLayerBlob(blobsDir, { seed: `${seed}/layer/${i}`, size, fileName: `layer-${i}.bin`, compression }))
  }
  const platformFields = { architecture: platform.architecture, os: platform.os, ...(platform.variant ? { variant: platform.variant } : {}) }
  const config = await writeJsonBlob(layoutDir, OCI_CONFIG, {
    created: EPOCH,
    ...platformFields,
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Cmd: ['/bin/sh'],
      Labels: { 'org.stevedore.test.seed': seed },
    },
    rootfs: { type: 'layers', diff_ids: layers.map(layer => layer.diffId) },
    history: layers.map((_, i) => ({ created: EPOCH, created_by: `stevedore test layer ${i}` })),
  })
  const layerDescriptors = layers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size }))
  const manifest = await writeJsonBlob(layoutDir, OCI_MANIFEST, {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config,
    layers: layerDescriptors,
  })
  return { ...manifest, platform: platformFields, config, layers: layerDescriptors }
}

/** Writes `value` as compact JSON into the layout's blobs; its descriptor. */
export async function writeJsonBlob(layoutDir: string, mediaType: string, value: unknown): Promise<Descriptor> {
  const bytes = Buffer.from(JSON.stringify(value), 'utf8')
  const hex = createHash('sha256').update(bytes).digest('hex')
  const blobsDir = join(layoutDir, 'blobs/sha256')
  await mkdir(blobsDir, { recursive: true })
  await writeFile(join(blobsDir, hex), bytes)
  return { mediaType, digest: `sha256:${hex}`, size: bytes.length }
}

interface LayoutIndex {
  schemaVersion: 2
  mediaType: typeof OCI_INDEX
  manifests: Array<Descriptor & { annotations?: Record<string, string> }>
}

/** Points `tag` at `target` in the layout's index.json, replacing an older entry for that tag. */
async function tagInLayout(layoutDir: string, tag: string, target: Descriptor): Promise<void> {
  await writeFile(join(layoutDir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  const indexPath = join(layoutDir, 'index.json')
  let index: LayoutIndex = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }
  try {
    index = JSON.parse(await readFile(indexPath, 'utf8')) as LayoutIndex
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  index.manifests = index.manifests.filter(entry => entry.annotations?.[REF_NAME] !== tag)
  const { mediaType, digest, size } = target
  index.manifests.push({ mediaType, digest, size, annotations: { [REF_NAME]: tag } })
  await writeFile(indexPath, JSON.stringify(index))
}

function uniqueBlobs(manifests: ManifestDescription[]): Descriptor[] {
  const seen = new Map<string, Descriptor>()
  for (const m of manifests) for (const blob of [m.config, ...m.layers]) seen.set(blob.digest, blob)
  return [...seen.values()]
}
