import { createCipheriv, createHash, randomBytes, type Hash } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { PassThrough, Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGzip } from 'node:zlib'

export const LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar'
export const LAYER_TAR_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip'

/**
 * 'auto' gzips layers whose file is smaller than GZIP_LIMIT and stores larger
 * ones as plain tar: deflate runs at ~45 MB/s on random bytes here, so a
 * 50 MiB gzip layer costs a second per write, a plain tar a tenth of that.
 */
export type LayerCompression = 'gzip' | 'none' | 'auto'
export const GZIP_LIMIT = 8 * 1024 * 1024

export interface LayerBlob {
  mediaType: string
  digest: string
  size: number
  /** sha256 of the uncompressed tar, for the config's rootfs.diff_ids. */
  diffId: string
}

export interface LayerSpec {
  /** Content is a pure function of the seed and the size. */
  seed: string
  /** Size of the one regular file in the archive. */
  size: number
  fileName: string
  compression?: LayerCompression
}

const CHUNK = 1024 * 1024
const ZEROS = Buffer.alloc(CHUNK)

/**
 * Streams a tar holding one regular file of pseudo-random bytes (the
 * AES-256-CTR keystream keyed by sha256(seed)), gzipped at a fixed level or
 * not, into `blobsDir/<hex>`; memory stays at a few chunks for any size.
 */
export async function writeLayerBlob(blobsDir: string, spec: LayerSpec): Promise<LayerBlob> {
  const gzip = spec.compression === 'gzip' || ((spec.compression ?? 'auto') === 'auto' && spec.size < GZIP_LIMIT)
  await mkdir(blobsDir, { recursive: true })
  const tmp = join(blobsDir, `.tmp-${randomBytes(8).toString('hex')}`)
  const diff = createHash('sha256')
  const blob = createHash('sha256')
  const counted = { bytes: 0 }
  await pipeline(
    Readable.from(tarStream(spec), { objectMode: false }),
    hashing(diff),
    gzip ? createGzip({ level: 6 }) : new PassThrough(),
    hashing(blob, counted),
    createWriteStream(tmp),
  )
  const hex = blob.digest('hex')
  await rename(tmp, join(blobsDir, hex))
  return {
    mediaType: gzip ? LAYER_TAR_GZIP : LAYER_TAR,
    digest: `sha256:${hex}`,
    size: counted.bytes,
    diffId: `sha256:${diff.digest('hex')}`,
  }
}

async function* tarStream(spec: LayerSpec): AsyncGenerator<Buffer> {
  yield tarHeader(spec.fileName, spec.size)
  const key = createHash('sha256').update(`stevedore-test-layer\0${spec.seed}`).digest()
  const keystream = createCipheriv('aes-256-ctr', key, Buffer.alloc(16))
  for (let left = spec.size; left > 0; left -= CHUNK) {
    yield keystream.update(left >= CHUNK ? ZEROS : ZEROS.subarray(0, left))
  }
  const pad = (512 - (spec.size % 512)) % 512
  // padding to a 512-byte block, then the two zero blocks that end an archive
  yield Buffer.alloc(pad + 1024)
}

/** A POSIX ustar header for a regular file, owned by root, mode 0644, mtime 0. */
export function tarHeader(name: string, size: number): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar name too long: ${name}`)
  if (size >= 8 ** 11) throw new Error(`tar size too big for ustar: ${size}`)
  const header = Buffer.alloc(512)
  const octal = (value: number, width: number): string => `${value.toString(8).padStart(width - 1, '0')}\0`
  header.write(name, 0, 100, 'utf8')
  header.write(octal(0o644, 8), 100)
  header.write(octal(0, 8), 108) // uid
  header.write(octal(0, 8), 116) // gid
  header.write(octal(size, 12), 124)
  header.write(octal(0, 12), 136) // mtime
  header.fill(' ', 148, 156) // checksum is computed with its own field as spaces
  header.write('0', 156) // regular file
  header.write('ustar\0', 257)
  header.write('00', 263)
  header.write('root', 265)
  header.write('root', 297)
  header.write(octal(0, 8), 329)
  header.write(octal(0, 8), 337)
  let sum = 0
  for (const byte of header) sum += byte
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148)
  return header
}

function hashing(hash: Hash, counted?: { bytes: number }): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk)
      if (counted !== undefined) counted.bytes += chunk.length
      done(null, chunk)
    },
  })
}
