/**
 * A private redis-server on a free loopback port, nothing on disk (the
 * machine's 6379 is shared): the replicas benchmark's coordination store,
 * and the pull benchmark's for Stevedore with http.workers.
 */
import { spawn, spawnSync } from 'node:child_process'
import { createConnection } from 'node:net'
import { setTimeout as delay } from 'node:timers/promises'
import { freePort, removeDir, tempDir } from './procs.mjs'

/** PIDs of daemons not started through procs.mjs (Redis, Ceph): SIGKILLed if the process exits without stopping them. */
export const daemons = new Set()
process.once('exit', () => {
  for (const pid of daemons) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone already
    }
  }
})

/** @param {number} port */
function redisAnswers(port) {
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

/**
 * Starts one.
 */
export async function startRedis() {
  const dir = tempDir('redis')
  const port = await freePort()
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' })
  const pid = /** @type {number} */ (child.pid)
  daemons.add(pid)
  const exited = new Promise(resolve => child.once('exit', resolve))
  child.once('error', () => {})
  for (const deadline = Date.now() + 10_000; !(await redisAnswers(port)); await delay(50)) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode} (port ${port} taken?)`)
    if (Date.now() > deadline) throw new Error('redis-server did not answer within 10 s')
  }
  const version = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout.trim()
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(pid, 'SIGTERM')
      if ((await Promise.race([exited.then(() => 'gone'), delay(3000)])) !== 'gone') process.kill(pid, 'SIGKILL')
      await exited
    }
    daemons.delete(pid)
    removeDir(dir)
  }
  return { url: `redis://127.0.0.1:${port}`, version, close }
}

