/**
 * `http.workers: N` (N > 1): this process becomes a supervisor of N server
 * processes sharing one listening port (node:cluster, the kernel spreading
 * connections over them). One event loop saturates one core at about 18 µs
 * a warm manifest HEAD; nginx, the mirror people compare with, runs a worker
 * per core. Each worker is a whole Stevedore; they coordinate as replicas do
 * (fills, tag refreshes, sweeps, the quota) through the shared metadata store
 * the configuration must name (config/build.ts refuses anything else).
 *
 * The supervisor serves nothing itself. It starts the workers, restarts one
 * that dies (at most MAX_RESTARTS in RESTART_WINDOW_MS, then it gives up and
 * stops them all), passes SIGHUP on (certificate reload), and on SIGTERM or
 * SIGINT stops every worker the way a single server stops, exiting 0 when
 * they all did. A worker whose supervisor is gone (killed with SIGKILL)
 * exits at once (node:cluster does that), as if killed itself: the next
 * start recovers what it left (lifecycle/uploads.ts). A worker that fails
 * before it listens ends the whole start: exit 1.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';

const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;

export async function superviseWorkers(count: number, deadlineMs: number, log: Logger): Promise<number> {
  // Each worker accepts on the shared socket itself: no hop through this process per connection.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ execArgv: process.execArgv, args: process.argv.slice(2) });
  const listening = new Set<Worker>();
  const restarts: number[] = [];
  let stopping = false;
  let settle: (code: number) => void = () => undefined;
  const finished = new Promise<number>((resolve) => {
    settle = resolve;
  });
  let exitCode = 0;

  const live = (): Worker[] => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && !w.isDead());
  const start = (): void => {
    const worker = cluster.fork();
    log.info({ worker: worker.id, pid: worker.process.pid }, 'worker started');
  };
  const stopAll = (why: string, code: number): void => {
    if (stopping) return;
    stopping = true;
    exitCode = code;
    const workers = live();
    log.info({ why, workers: workers.length }, 'stopping the workers');
    if (workers.length === 0) return settle(exitCode);
    for (const w of workers) w.process.kill('SIGTERM');
    const force = setTimeout(() => {
      const left = live();
      log.error({ deadlineMs, workers: left.map((w) => w.process.pid) }, 'workers did not stop in time; killing them');
      for (const w of left) w.process.kill('SIGKILL');
      exitCode = 1;
    }, deadlineMs);
    force.unref();
  };

  cluster.on('listening', (worker, address) => {
    listening.add(worker);
    if (listening.size === count) log.info({ workers: count, port: address.port }, 'stevedore workers listening');
  });
  cluster.on('exit', (worker, code, signal) => {
    const wasListening = listening.delete(worker);
    // A worker stopped while it was still starting (no handler yet) dies of the SIGTERM itself: it served nothing.
    const clean = (code === 0 && signal === null) || (stopping && !wasListening && signal === 'SIGTERM');
    if (stopping) {
      if (!clean) exitCode = 1;
      if (live().length === 0) settle(exitCode);
      return;
    }
    log.error({ worker: worker.id, pid: worker.process.pid, code, signal }, 'worker exited');
    if (!wasListening) return stopAll('a worker failed to start', 1);
    const now = Date.now();
    while (restarts.length > 0 && (restarts[0] ?? 0) < now - RESTART_WINDOW_MS) restarts.shift();
    if (restarts.length >= MAX_RESTARTS) return stopAll(`${MAX_RESTARTS} restarts within ${RESTART_WINDOW_MS / 1000} s`, 1);
    restarts.push(now);
    start();
  });

  process.on('SIGTERM', () => stopAll('SIGTERM', 0));
  process.on('SIGINT', () => stopAll('SIGINT', 0));
  process.on('SIGHUP', () => {
    for (const w of live()) w.process.kill('SIGHUP');
  });
  for (let i = 0; i < count; i++) start();
  return finished;
}
