/**
 * Deterministic test images, pushed straight through the registry API.
 *
 * A layer is an uncompressed tar holding one file of pseudo-random bytes: the
 * AES-256-CTR keystream keyed by sha256(seed). It is generated twice (once to
 * hash, once to upload) instead of being written to disk: ~1.5 GB/s here, and
 * no disk traffic to disturb the measurements. Pushing with the API rather
 * than `skopeo copy` keeps the layers uncompressed (skopeo gzips layers it
 * pushes to a docker:// destination), so the same seed gives the same digest.
 */
import { createCipheriv, createHash } from 'node:crypto'
import { request } from 'node:http'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
export const OCI_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar'
/** What a pulling client accepts; Distribution answers 404 to an OCI manifest without the OCI type. */
export const MANIFEST_ACCEPT = [
  OCI_MANIFEST,
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ')

const CHUNK = 1024 * 1024
const ZEROS = Buffer.alloc(CHUNK)
const MIB = 1024 * 1024

/** A ustar header for a regular file `name` of `size` bytes, mode 0644, mtime 0. */
function tarHeader(name, size) {
  const header = Buffer.alloc(512)
  const octal = (value, width) => `${value.toString(8).padStart(width - 1, '0')}\0`
  header.write(name, 0, 100, 'utf8')
  header.write(octal(0o644, 8), 100)
  header.write(octal(0, 8), 108)
  header.write(octal(0, 8), 116)
  header.write(octal(size, 12), 124)
  header.write(octal(0, 12), 136)
  header.fill(' ', 148, 156)
  header.write('0', 156)
  header.write('ustar\0', 257)
  header.write('00', 263)
  let sum = 0
  for (const byte of header) sum += byte
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148)
  return header
}

/** @param {string} seed @param {number} size bytes of file content @returns {Generator<Buffer>} */
function* layerChunks(seed, size) {
  yield tarHeader('data.bin', size)
  const key = createHash('sha256').update(`stevedore-bench-layer\0${seed}`).digest()
  const keystream = createCipheriv('aes-256-ctr', key, Buffer.alloc(16))
  for (let left = size; left > 0; left -= CHUNK) yield keystream.update(left >= CHUNK ? ZEROS : ZEROS.subarray(0, left))
  yield Buffer.alloc(((512 - (size % 512)) % 512) + 1024)
}

/**
 * @typedef {{mediaType: string, digest: string, size: number}} Descriptor
 * @typedef {{seed: string, size: number}} LayerSpec
 * @typedef {{repo: string, tag: string, manifest: Descriptor, config: Descriptor, layers: Descriptor[]}} PushedImage
 */

/** @param {() => Iterable<Buffer>} chunks @returns {Descriptor} */
function describe(chunks, mediaType) {
  const hash = createHash('sha256')
  let size = 0
  for (const chunk of chunks()) {
    hash.update(chunk)
    size += chunk.length
  }
  return { mediaType, digest: `sha256:${hash.digest('hex')}`, size }
}

/**
 * @param {string} method @param {string} url @param {Record<string, string|number>} headers
 * @param {Iterable<Buffer>|Buffer|undefined} body
 * @returns {Promise<{status: number, headers: import('node:http').IncomingHttpHeaders, body: string}>}
 */
function send(method, url, headers, body) {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, res => {
      let text = ''
      res.setEncoding('utf8').on('data', c => (text += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }))
      res.on('error', reject)
    })
    req.on('error', reject)
    if (body === undefined) req.end()
    else if (Buffer.isBuffer(body)) req.end(body)
    else pipeline(Readable.from(body), req).catch(reject)
  })
}

/** Monolithic upload: POST an upload session, PUT the whole blob with its digest. */
async function pushBlob(base, repo, descriptor, body) {
  const head = await send('HEAD', `${base}/v2/${repo}/blobs/${descriptor.digest}`, {}, undefined)
  if (head.status === 200) return
  const started = await send('POST', `${base}/v2/${repo}/blobs/uploads/`, { 'Content-Length': 0 }, Buffer.alloc(0))
  if (started.status !== 202) throw new Error(`upload of ${descriptor.digest} not accepted: ${started.status} ${started.body}`)
  const location = new URL(String(started.headers.location), base)
  location.searchParams.set('digest', descriptor.digest)
  const put = await send('PUT', location.href, { 'Content-Type': 'application/octet-stream', 'Content-Length': descriptor.size }, body)
  if (put.status !== 201) throw new Error(`PUT of ${descriptor.digest} failed: ${put.status} ${put.body}`)
}

/**
 * Pushes an OCI image whose layer i holds `layerMiB[i]` MiB seeded by `${seed}/${i}`.
 * @param {string} base http://host:port @param {string} repo @param {string} tag
 * @param {{seed: string, layerMiB: number[]}} spec
 * @returns {Promise<PushedImage>}
 */
export async function pushImage(base, repo, tag, spec) {
  const layers = []
  for (const [i, mib] of spec.layerMiB.entries()) {
    const chunks = () => layerChunks(`${spec.seed}/${i}`, Math.round(mib * MIB))
    const descriptor = describe(chunks, OCI_LAYER_TAR)
    await pushBlob(base, repo, descriptor, chunks())
    layers.push(descriptor)
  }
  const configBytes = Buffer.from(
    JSON.stringify({
      created: '1970-01-01T00:00:00Z',
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/sh'], Labels: { 'org.stevedore.bench.seed': spec.seed } },
      rootfs: { type: 'layers', diff_ids: layers.map(l => l.digest) },
    }),
  )
  const config = describe(() => [configBytes], OCI_CONFIG)
  await pushBlob(base, repo, config, configBytes)
  const manifestBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers }))
  const manifest = describe(() => [manifestBytes], OCI_MANIFEST)
  const put = await send(
    'PUT',
    `${base}/v2/${repo}/manifests/${tag}`,
    { 'Content-Type': OCI_MANIFEST, 'Content-Length': manifestBytes.length },
    manifestBytes,
  )
  if (put.status !== 201) throw new Error(`manifest PUT failed: ${put.status} ${put.body}`)
  if (put.headers['docker-content-digest'] !== manifest.digest) throw new Error('upstream stored a different manifest digest')
  return { repo, tag, manifest, config, layers }
}
