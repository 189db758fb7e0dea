#!/usr/bin/env bash
# Installs the Debian packages the integration tests drive as real servers and
# clients (containerd and podman for test/integration/real-clients.test.ts,
# which runs its own containerd in a temp dir and uses none of the services a
# package may start; docker.io's dockerd for docker-client.test.ts, likewise
# run privately; chromium for status-page.test.ts, driven headless by
# playwright-core; radosgw, ceph-mon and ceph-osd for test/storage/s3.test.ts,
# which runs a one-node Ceph of its own through scripts/ceph-s3.sh).
# Idempotent: installs only what is missing, and runs `apt-get update` only
# when something is. --no-install-recommends matters for ceph: ceph-base
# recommends ceph-mds, btrfs-tools and a time daemon (chrony, a service that
# would start and adjust the clock), none of which the tests use.
set -euo pipefail

# package -> a command it provides (empty: check with dpkg only)
packages=(docker-registry skopeo apache2-utils openssl containerd podman docker.io chromium radosgw ceph-mon ceph-osd redis-server)
declare -A provides=(
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  [apache2-utils]=htpasswd
  [openssl]=openssl
  [containerd]=containerd
  [podman]=podman
  [docker.io]=dockerd
  [chromium]=chromium
  [radosgw]=radosgw
  [ceph-mon]=ceph-mon
  [ceph-osd]=ceph-osd
  [redis-server]=redis-server
)

is_installed() {
  local pkg=$1 cmd=${provides[$1]:-}
  if [[ -n $cmd ]] && command -v "$cmd" >/dev/null 2>&1; then
    return 0
  fi
  dpkg -s "$pkg" >/dev/null 2>&1
}

missing=()
for pkg in "${packages[@]}"; do
  if is_installed "$pkg"; then
    echo "install-test-deps: $pkg already installed"
  else
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-test-deps: nothing to install"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-test-deps: apt-get not found; install these yourself: ${missing[*]}" >&2
  exit 1
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "install-test-deps: not root and sudo not found; as root run:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
fi

echo "install-test-deps: installing ${missing[*]}"
set -x
"${sudo[@]}" apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"
