import { readFile, writeFile } from 'node:fs/promises'
import { parse, stringify } from 'yaml'

export type ConfigObject = Record<string, unknown>

function isPlainObject(value: unknown): value is ConfigObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * `over` merged into a copy of `base`: objects merge key by key, anything
 * else (arrays included) replaces. An `undefined` value deletes the key, so a
 * caller can remove a default section (`{ auth: undefined }`).
 */
export function deepMerge(base: ConfigObject, over: ConfigObject): ConfigObject {
  const out: ConfigObject = { ...base }
  for (const [key, value] of Object.entries(over)) {
    const prev = out[key]
    if (value === undefined) delete out[key]
    else if (isPlainObject(prev) && isPlainObject(value)) out[key] = deepMerge(prev, value)
    else out[key] = value
  }
  return out
}

export async function writeYaml(path: string, value: unknown): Promise<void> {
  await writeFile(path, stringify(value), 'utf8')
}

export async function readYaml(path: string): Promise<ConfigObject> {
  const value: unknown = parse(await readFile(path, 'utf8'))
  if (!isPlainObject(value)) throw new Error(`${path}: expected a YAML mapping`)
  return value
}

/** `config` with `http.addr` replaced, every other `http` key kept. */
export function withHttpAddr(config: ConfigObject, addr: string): ConfigObject {
  return deepMerge(config, { http: { addr } })
}
