/**
 * Calibration: the cheapest possible manifest HEAD on this machine, a bare
 * node:http server answering from memory (FIELD-NOTES measured ~56,700 req/s
 * on a quiet machine). Usage: node bench/lib/bare-server.mjs PORT
 */
import { createServer } from 'node:http'

const payload = Buffer.alloc(1024, ' ')
const headers = {
  'Content-Type': 'application/vnd.oci.image.manifest.v1+json',
  'Docker-Content-Digest': `sha256:${'0'.repeat(64)}`,
  'Content-Length': payload.length,
}
createServer((req, res) => {
  res.writeHead(200, headers)
  res.end(req.method === 'HEAD' ? undefined : payload)
}).listen(Number(process.argv[2]), '127.0.0.1')
process.on('SIGTERM', () => process.exit(0))
