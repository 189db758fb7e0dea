/** The registry error code `work` fails with, 'none' when it succeeds, or what else it threw. */
import { RegistryError } from '../../src/registry/errors.js'

export const errorCode = async (work: Promise<unknown>): Promise<string> => {
  try {
    await work
  } catch (err) {
    return err instanceof RegistryError ? err.code : `not a RegistryError: ${String(err)}`
  }
  return 'none'
}
