/**
 * A private redis-server on a free loopback port (the machine's own Redis on
 * 6379 is shared by every test file; this one can be stopped and started
 * again to show what a replica does while Redis is away). Nothing on disk.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createConnection } from 'node:net'
import { setTimeout as delay } from 'node:timers/promises'
import { freePort } from './ports.js'
import type { Teardown } from './tmp.js'

export const REDIS_BIN = process.env.STEVEDORE_TEST_REDIS_BIN ?? 'redis-server'

export interface PrivateRedis {
  url: string
  port: number
  pid(): number | undefined
  /** Stops it (SIGKILL: what a crash or a network cut looks like to clients); resolves once it exited. */
  stop(): Promise<void>
  /** Starts it again on the same port, empty. */
  start(): Promise<void>
}

function answers(port: number): Promise<boolean> {
  return new Promise(resolve => {
    const socket = createConnection({ host: '127.0.0.1', port })
    socket.once('connect', () => socket.write('PING\r\n'))
    socket.once('data', data => {
      socket.destroy()
      resolve(data.toString().startsWith('+PONG'))
    })
    socket.once('error', () => resolve(false))
    socket.setTimeout(500, () => {
      socket.destroy()
      resolve(false)
    })
  })
}

export async function startRedis(t: Teardown): Promise<PrivateRedis> {
  const port = await freePort()
  let child: ChildProcess | undefined
  const start = async (): Promise<void> => {
    const proc = spawn(REDIS_BIN, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    child = proc
    const failed = new Promise<never>((_, reject) => {
      proc.once('error', err => reject(new Error(`startRedis: ${REDIS_BIN} could not be started (${err.message}); install Debian's redis-server or set STEVEDORE_TEST_REDIS_BIN`)))
    })
    failed.catch(() => undefined)
    const deadline = Date.now() + 10_000
    while (!(await Promise.race([answers(port), failed]))) {
      if (proc.exitCode !== null) throw new Error(`startRedis: redis-server exited with ${proc.exitCode} (port ${port} taken?)`)
      if (Date.now() > deadline) throw new Error('startRedis: redis-server did not answer within 10 s')
      await delay(50)
    }
  }
  const stop = async (): Promise<void> => {
    const proc = child
    child = undefined
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return
    const exited = new Promise(resolve => proc.once('exit', resolve))
    proc.kill('SIGKILL')
    await exited
  }
  await start()
  t.teardown(stop)
  return { url: `redis://127.0.0.1:${port}`, port, pid: () => child?.pid, stop, start }
}
