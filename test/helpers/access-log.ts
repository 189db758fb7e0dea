/** Reads a Distribution access log (its stdout) into requests, to count what an upstream served. */
import type { Distribution } from './distribution.js'

export interface LoggedRequest {
  method: string
  path: string
  status: number
  userAgent: string
}

const LINE = /"(GET|HEAD|PUT|POST|PATCH|DELETE) (\S+) HTTP\/[\d.]+" (\d{3}) \S+ "[^"]*" "([^"]*)"/

export function accessLog(registry: Pick<Distribution, 'logs'>): LoggedRequest[] {
  const out: LoggedRequest[] = []
  for (const line of registry.logs().split('\n')) {
    const m = LINE.exec(line)
    if (m) out.push({ method: m[1] ?? '', path: m[2] ?? '', status: Number(m[3]), userAgent: m[4] ?? '' })
  }
  return out
}

/** Requests Stevedore made (by its User-Agent), optionally only those after the first `skip`. */
export function fromStevedore(registry: Pick<Distribution, 'logs'>, skip = 0): LoggedRequest[] {
  return accessLog(registry)
    .filter(r => r.userAgent.startsWith('stevedore/'))
    .slice(skip)
}

/** Waits until the log holds at least `count` lines from Stevedore (the access log is written after the response). */
export async function settle(registry: Pick<Distribution, 'logs'>, deadlineMs = 2000): Promise<LoggedRequest[]> {
  const end = Date.now() + deadlineMs
  let last = -1
  for (;;) {
    const now = fromStevedore(registry)
    if (now.length === last || Date.now() > end) return now
    last = now.length
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}
