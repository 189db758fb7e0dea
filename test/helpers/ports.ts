import { createServer } from 'node:net'

/**
 * A TCP port on 127.0.0.1 that was free a moment ago. Another process can
 * take it before the caller binds it: servers started on it should retry with
 * a new port when they fail with "address already in use".
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const address = server.address()
      if (address === null || typeof address === 'string') {
        server.close()
        reject(new Error(`freePort: unexpected address ${String(address)}`))
        return
      }
      server.close(err => (err ? reject(err) : resolve(address.port)))
    })
  })
}
