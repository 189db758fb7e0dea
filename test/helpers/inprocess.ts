/**
 * Runs Stevedore in this process (startApp) on a free loopback port, for tests
 * that need to look inside (storage tree) or to count what a fake upstream saw.
 */
import { pino } from 'pino'
import { stringify } from 'yaml'
import { startApp, type App, type AppOptions } from '../../src/app.js'
import { parseConfig } from '../../src/config/load.js'
import type { Teardown } from './tmp.js'

export interface InProcess {
  app: App
  url: string
  host: string
  root: string
  /** The log lines so far, when started with `capture` (else empty). */
  logRecords(): Record<string, unknown>[]
  /** The raw log text so far, when started with `capture`. */
  logs(): string
}

export interface CaptureOptions {
  /** Keep the log in memory at this level (e.g. 'debug'), for tests that read it. */
  capture?: string
}

export async function startInProcess(
  t: Teardown,
  root: string,
  config: Record<string, unknown>,
  options: AppOptions = {},
  capture: CaptureOptions = {},
): Promise<InProcess> {
  const yaml = stringify({
    version: '0.1',
    log: { level: 'warn' },
    http: { addr: '127.0.0.1:0' },
    storage: { filesystem: { rootdirectory: root } },
    ...config,
  })
  const { config: parsed } = parseConfig(yaml, {}, 'test')
  const lines: string[] = []
  const logger =
    capture.capture === undefined
      ? pino({ level: process.env.STEVEDORE_TEST_LOG ?? 'silent' })
      : pino({ level: capture.capture }, { write: (line: string) => void lines.push(line) })
  const app = await startApp(parsed, logger, options)
  t.teardown(() => app.close())
  const host = `127.0.0.1:${app.address.port}`
  return {
    app,
    url: `http://${host}`,
    host,
    root,
    logs: () => lines.join(''),
    logRecords: () => lines.map(line => JSON.parse(line) as Record<string, unknown>),
  }
}
