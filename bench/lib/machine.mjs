/**
 * What a result was measured on and with: the machine, the tools' versions,
 * the commit, the files of src/ changed but not committed, and a hash of the
 * dist/ snapshot that ran.
 */
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { cpus, release } from 'node:os'
import { join } from 'node:path'
import { nginxVersion } from './nginx.mjs'
import { run } from './procs.mjs'
import { DISTRIBUTION_BIN, REPO_ROOT } from './registries.mjs'

/** sha256 over every file of a dist/ tree, in path order: which build was measured. @param {string} dir */
export function treeHash(dir) {
  const hash = createHash('sha256')
  const files = readdirSync(dir, { recursive: true, withFileTypes: true }).filter(e => e.isFile())
  for (const path of files.map(e => join(e.parentPath ?? e.path, e.name)).sort()) hash.update(path.slice(dir.length)).update(readFileSync(path))
  return `sha256:${hash.digest('hex')}`
}

/** @param {number[]} loadAverageAtStart */
export async function machine(loadAverageAtStart) {
  const version = async (cmd, args) => (await run(cmd, args, { anyExit: true }).catch(e => ({ stdout: String(e), stderr: '' }))).stdout.trim().split('\n')[0]
  const git = async args => (await run('git', ['-C', REPO_ROOT, ...args]).catch(() => ({ stdout: '' }))).stdout.trim()
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    kernel: release(),
    node: process.versions.node,
    distribution: await version(DISTRIBUTION_BIN, ['--version']),
    skopeo: await version('skopeo', ['--version']),
    ab: await version('ab', ['-V']),
    wrk: await version('wrk', ['--version']), // it exits 1 after printing its version
    nginx: await nginxVersion(),
    commit: await git(['rev-parse', 'HEAD']),
    loadAverageAtStart,
    uncommittedInSrc: (await git(['status', '--porcelain', 'src'])).split('\n').filter(Boolean),
  }
}
