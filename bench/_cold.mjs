// scratch: cold pull CPU of Stevedore, repeated; not committed
import { pushImage } from './lib/image.mjs'
import { startUpstream, startStevedore, startDistributionProxy } from './lib/registries.mjs'
import { skopeoPull, cpuSeconds } from './lib/clients.mjs'
import { cleanupNow } from './lib/procs.mjs'
const mib = Number(process.argv[2] ?? 200)
const runs = Number(process.argv[3] ?? 3)
const which = process.argv[4] ?? 'stevedore'
const upstream = await startUpstream()
try {
  await pushImage(upstream.url, 'bench/app', 'pull', { seed: `cold/${mib}`, layerMiB: Array(5).fill(mib / 5) })
  for (let r = 0; r < runs; r++) {
    const s = which === 'stevedore' ? await startStevedore(upstream.url, undefined, { accessLog: true, extra: process.env.EXTRA ? JSON.parse(process.env.EXTRA) : {} }) : await startDistributionProxy(upstream.url, { accessLog: true })
    const c0 = cpuSeconds(s.pid)
    const t0 = performance.now()
    await skopeoPull(new URL(s.url).host, 'bench/app', 'pull')
    const wall = (performance.now() - t0) / 1000
    console.log(which, `cold ${mib} MiB: wall ${wall.toFixed(2)} s, cpu ${(cpuSeconds(s.pid) - c0).toFixed(2)} s`)
    await s.close()
  }
} finally { await upstream.close(); cleanupNow() }
