#!/usr/bin/env bash
# A one-node Ceph as a real S3 endpoint on loopback, for the S3 storage
# driver's tests (test/helpers/ceph.ts) and for trying the driver by hand:
#
#   scripts/ceph-s3.sh start DIR [PORT]   one mon, one OSD on memstore (RAM),
#                                         radosgw (beast) on 127.0.0.1:PORT
#                                         (default: a free port); prints
#                                         ENDPOINT=, ACCESS_KEY=, SECRET_KEY=,
#                                         REGION= lines on stdout
#   scripts/ceph-s3.sh stop DIR           stops every daemon it started, by PID
#
# Everything (config, mon store, OSD dir, sockets, pid files, logs) lives
# under DIR, nothing under /etc/ceph or /var/lib/ceph, so instances run side
# by side: each takes its own ports, the OSD's through `ms bind port min/max`
# (it binds four, from 6800-7300 otherwise). The settings are the ones
# FIELD-NOTES.md measured: without `ms mon client mode = crc secure` radosgw
# loops on get_initial_auth_request -13; with the default paxos intervals the
# start takes 12 s instead of about 1.
# Needs: apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd
set -euo pipefail

usage() {
  echo "usage: $0 start DIR [PORT] | stop DIR" >&2
  exit 2
}

log() { echo "ceph-s3: $*" >&2; }

# Milestones of a start with their time, in DIR/log/start.log, for a start that is slow.
mark() { echo "$(date +%T.%3N) $*" >>"$dir/log/start.log"; }

# Nothing listens on 127.0.0.1:$1 (a connect fails).
port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A base port B with B..B+9 free: rgw B (unless given), mon B+1, OSD B+2..B+9.
pick_base() {
  local base p ok
  for _ in $(seq 1 50); do
    base=$((20000 + (RANDOM * 32768 + RANDOM) % 30000))
    ok=1
    for p in $(seq "$base" $((base + 9))); do
      port_free "$p" || { ok=0; break; }
    done
    if [[ $ok -eq 1 ]]; then
      echo "$base"
      return 0
    fi
  done
  log "no free port range found"
  return 1
}

# True while $1 runs (a zombie, which `kill -9` leaves for ~2 s here, does not count).
alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

stop_pid() {
  local pid=$1 i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 50); do
    alive "$pid" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    alive "$pid" || return 0
    sleep 0.1
  done
  log "pid $pid still running after SIGKILL"
}

stop() {
  local dir=$1 name pid
  # radosgw first, then the OSD, the mon last: each talks to the ones after it.
  for name in rgw osd mon; do
    [[ -f $dir/pids/$name ]] || continue
    pid=$(<"$dir/pids/$name")
    [[ $pid =~ ^[0-9]+$ ]] && stop_pid "$pid"
    rm -f "$dir/pids/$name"
  done
}

# The last lines of a daemon's logs, for a start that failed.
tail_logs() {
  local dir=$1 f
  for f in "$dir"/log/*; do
    [[ -f $f ]] || continue
    echo "--- $f" >&2
    tail -n 30 "$f" >&2
  done
}

fail() {
  local dir=$1
  shift
  log "$*"
  tail_logs "$dir"
  stop "$dir"
  exit 1
}

# Starts a daemon in the foreground mode ceph wants (-f), in the background of this shell.
spawn() {
  local dir=$1 name=$2
  shift 2
  nohup "$@" >"$dir/log/$name.out" 2>&1 </dev/null &
  echo $! >"$dir/pids/$name"
}

start() {
  local dir=$1 port=${2:-}
  local cmd
  for cmd in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool curl uuidgen; do
    command -v "$cmd" >/dev/null 2>&1 || {
      log "$cmd not found: apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd"
      exit 127
    }
  done
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [[ -e $dir/ceph.conf ]]; then
    log "$dir already holds a cluster: stop it and use a fresh directory"
    exit 1
  fi
  mkdir -p "$dir"/{run,log,pids,mon,osd,rgw,crash}
  mark "start"

  local base mon_port rgw_port fsid
  base=$(pick_base)
  rgw_port=${port:-$base}
  mon_port=$((base + 1))
  fsid=$(uuidgen)

  cat >"$dir/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_port]
mon initial members = a
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc secure
ms bind msgr1 = false
ms bind port min = $((base + 2))
ms bind port max = $((base + 9))
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
osd crush chooseleaf type = 0
paxos propose interval = 0.01
paxos min wait = 0.001
mon data avail warn = 1
mon data avail crit = 0
run dir = $dir/run
crash dir = $dir/crash
admin socket = $dir/run/\$cluster-\$name.asok
pid file = $dir/run/\$cluster-\$name.pid
log file = $dir/log/\$cluster-\$name.log
keyring = $dir/keyring
mon data = $dir/mon/\$cluster-\$id
osd data = $dir/osd/\$cluster-\$id
osd objectstore = memstore
memstore device bytes = 2147483648
osd max object name len = 460
osd max object namespace len = 64

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $dir/rgw
rgw enable usage log = false
rgw dns name = 127.0.0.1
objecter tick interval = 0.1
EOF
  local conf=(-c "$dir/ceph.conf")

  ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null
  ceph-mon "${conf[@]}" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring" >"$dir/log/mon-mkfs.out" 2>&1 ||
    fail "$dir" "ceph-mon --mkfs failed"
  spawn "$dir" mon ceph-mon "${conf[@]}" -f -i a
  mark "mon started"

  local osd_uuid osd_id
  osd_uuid=$(uuidgen)
  osd_id=$(timeout 30 ceph "${conf[@]}" --connect-timeout 20 osd new "$osd_uuid" 2>"$dir/log/osd-new.out") ||
    fail "$dir" "ceph osd new failed (is the mon up? port $mon_port)"
  mark "osd $osd_id created"
  mkdir -p "$dir/osd/ceph-$osd_id"
  ceph-osd "${conf[@]}" -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" >"$dir/log/osd-mkfs.out" 2>&1 ||
    fail "$dir" "ceph-osd --mkfs failed"
  spawn "$dir" osd ceph-osd "${conf[@]}" -f -i "$osd_id"
  spawn "$dir" rgw radosgw "${conf[@]}" -f -n client.rgw.a
  mark "osd and radosgw started"

  # radosgw answers once its pools exist, which needs the OSD up.
  local deadline=$((SECONDS + 60))
  until curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$rgw_port/"; do
    local name
    for name in mon osd rgw; do
      alive "$(<"$dir/pids/$name")" || fail "$dir" "$name exited during the start"
    done
    ((SECONDS < deadline)) || fail "$dir" "radosgw did not answer on 127.0.0.1:$rgw_port in 60 s"
    sleep 0.05
  done

  mark "radosgw answers"
  local access_key secret_key
  access_key=$(od -An -tx1 -N10 /dev/urandom | tr -d ' \n' | tr a-f A-F)
  secret_key=$(od -An -tx1 -N20 /dev/urandom | tr -d ' \n')
  radosgw-admin "${conf[@]}" user create --uid test --display-name test \
    --access-key "$access_key" --secret-key "$secret_key" >"$dir/log/user-create.out" 2>&1 ||
    fail "$dir" "radosgw-admin user create failed"

  mark "user created"
  echo "ENDPOINT=http://127.0.0.1:$rgw_port"
  echo "ACCESS_KEY=$access_key"
  echo "SECRET_KEY=$secret_key"
  echo "REGION=us-east-1"
  echo "DIR=$dir"
}

[[ $# -ge 2 ]] || usage
case $1 in
  start)
    [[ $# -le 3 ]] || usage
    start "$2" "${3:-}"
    ;;
  stop)
    [[ $# -eq 2 ]] || usage
    stop "$2"
    ;;
  *) usage ;;
esac
