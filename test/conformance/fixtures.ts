/** The documents the conformance suite pushes: image manifests, indexes and artifacts, built from blobs it has pushed. */
import type { Test } from 'tap'
import { encode, pushBlob, sha256, uniqueBytes, type Pushed } from './http.js'

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip'
/** The empty descriptor of image-spec v1.1: `{}`, digest below. */
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json'
export const EMPTY_JSON = Buffer.from('{}')
export const EMPTY_JSON_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a'

export const ANNOTATION = 'org.opencontainers.conformance.test'

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  artifactType?: string
  annotations?: Record<string, string>
  platform?: { os: string; architecture: string }
}

export const descriptorOf = (p: Pushed): Descriptor => ({ mediaType: p.mediaType, digest: p.digest, size: p.size })

export interface ManifestOptions {
  config?: Descriptor
  layers?: Descriptor[]
  artifactType?: string
  subject?: Descriptor
  annotations?: Record<string, string>
}

export function imageManifest(opts: ManifestOptions): Pushed {
  return encode(
    {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      ...(opts.artifactType === undefined ? {} : { artifactType: opts.artifactType }),
      config: opts.config ?? { mediaType: OCI_EMPTY, digest: EMPTY_JSON_DIGEST, size: 2 },
      layers: opts.layers ?? [],
      ...(opts.subject === undefined ? {} : { subject: opts.subject }),
      ...(opts.annotations === undefined ? {} : { annotations: opts.annotations }),
    },
    OCI_MANIFEST,
  )
}

export function imageIndex(manifests: Descriptor[], opts: Omit<ManifestOptions, 'config' | 'layers'> = {}): Pushed {
  return encode(
    {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      ...(opts.artifactType === undefined ? {} : { artifactType: opts.artifactType }),
      manifests,
      ...(opts.subject === undefined ? {} : { subject: opts.subject }),
      ...(opts.annotations === undefined ? {} : { annotations: opts.annotations }),
    },
    OCI_INDEX,
  )
}

export interface Image {
  config: Descriptor & { bytes: Buffer }
  layers: (Descriptor & { bytes: Buffer })[]
  manifest: Pushed
}

/** Pushes a config and `layerCount` layers to `repo` and builds (does not push) the image manifest over them. */
export async function uploadImage(t: Test, base: string, repo: string, label: string, layerCount = 1): Promise<Image> {
  const configBytes = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', label, nonce: uniqueBytes(label, 16).toString('hex') }))
  await pushBlob(t, base, repo, configBytes, `${label} config`)
  const config = { mediaType: OCI_CONFIG, digest: sha256(configBytes), size: configBytes.length, bytes: configBytes }
  const layers = []
  for (let i = 0; i < layerCount; i++) {
    const bytes = uniqueBytes(`${label}-layer-${i}`, 1000 + i)
    await pushBlob(t, base, repo, bytes, `${label} layer ${i}`)
    layers.push({ mediaType: OCI_LAYER, digest: sha256(bytes), size: bytes.length, bytes })
  }
  const manifest = imageManifest({
    config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
    layers: layers.map(l => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    annotations: { [ANNOTATION]: label },
  })
  return { config, layers, manifest }
}
