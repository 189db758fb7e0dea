/** Pushes raw blobs and manifests to a registry over HTTP (monolithic uploads), for artifacts skopeo cannot build. */
import { createHash } from 'node:crypto'

export const sha256 = (data: Buffer | string): string => `sha256:${createHash('sha256').update(data).digest('hex')}`

export async function pushBlob(registry: string, repo: string, data: Buffer): Promise<{ digest: string; size: number }> {
  const digest = sha256(data)
  const start = await fetch(`${registry}/v2/${repo}/blobs/uploads/`, { method: 'POST' })
  if (start.status !== 202) throw new Error(`upload start: ${start.status} ${await start.text()}`)
  const location = new URL(start.headers.get('location') ?? '', registry)
  location.searchParams.set('digest', digest)
  const put = await fetch(location, { method: 'PUT', body: data, headers: { 'Content-Type': 'application/octet-stream' } })
  if (put.status !== 201) throw new Error(`upload: ${put.status} ${await put.text()}`)
  return { digest, size: data.length }
}

export async function pushManifest(registry: string, repo: string, reference: string, manifest: unknown, mediaType: string): Promise<{ digest: string; size: number; payload: Buffer }> {
  const payload = Buffer.from(JSON.stringify(manifest))
  const res = await fetch(`${registry}/v2/${repo}/manifests/${reference}`, { method: 'PUT', body: payload, headers: { 'Content-Type': mediaType } })
  if (res.status !== 201) throw new Error(`manifest put: ${res.status} ${await res.text()}`)
  return { digest: sha256(payload), size: payload.length, payload }
}
