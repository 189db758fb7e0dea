/**
 * An in-process Stevedore a test may stop itself (to restart another on the
 * same storage): closed once, by the test or at teardown, whichever is first.
 * startInProcess's own teardown would close it a second time, which a
 * proxying app does not survive (its upstream agents are destroyed already).
 */
import type { AppOptions } from '../../src/app.js'
import { startInProcess, type CaptureOptions, type InProcess } from './inprocess.js'
import type { Teardown } from './tmp.js'

export interface Restartable extends InProcess {
  /** Closes the app; later calls (and the teardown) wait for the same close. */
  close(): Promise<void>
}

export async function startRestartable(
  t: Teardown,
  root: string,
  config: Record<string, unknown>,
  options: AppOptions = {},
  capture: CaptureOptions = {},
): Promise<Restartable> {
  const teardowns: (() => unknown)[] = []
  const started = await startInProcess({ teardown: fn => void teardowns.push(fn) }, root, config, options, capture)
  let closing: Promise<void> | undefined
  const close = (): Promise<void> => (closing ??= Promise.all(teardowns.map(fn => fn())).then(() => undefined))
  t.teardown(() => close().catch(() => {}))
  return { ...started, close }
}
