#!/usr/bin/env node
// pretest: the integration tests drive real Distribution, skopeo, containerd,
// podman, dockerd, chromium, Ceph (radosgw) and redis-server processes; fail early with the fix instead of halfway through
// with ENOENT.
import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'

const tools = [
  { command: 'docker-registry', pkg: 'docker-registry' },
  { command: 'skopeo', pkg: 'skopeo' },
  { command: 'openssl', pkg: 'openssl' },
  { command: 'containerd', pkg: 'containerd' },
  { command: 'ctr', pkg: 'containerd' },
  { command: 'podman', pkg: 'podman' },
  { command: 'dockerd', pkg: 'docker.io' },
  { command: 'unshare', pkg: 'util-linux' },
  { command: 'chromium', pkg: 'chromium' },
  { command: 'ceph-mon', pkg: 'ceph-mon' },
  { command: 'ceph-osd', pkg: 'ceph-osd' },
  { command: 'radosgw', pkg: 'radosgw' },
  { command: 'redis-server', pkg: 'redis-server' },
]

function onPath(command) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue
    try {
      accessSync(join(dir, command), constants.X_OK)
      return true
    } catch {
      // not in this directory
    }
  }
  return false
}

const missing = tools.filter(tool => !onPath(tool.command))
if (missing.length > 0) {
  const names = missing.map(tool => tool.command).join(', ')
  const pkgs = [...new Set(missing.map(tool => tool.pkg))].join(' ')
  console.error(`check-test-tools: not found on PATH: ${names}`)
  console.error('Install the test tools with:')
  console.error('  scripts/install-test-deps.sh')
  console.error('or:')
  console.error(`  apt-get install ${pkgs}`)
  process.exit(1)
}
