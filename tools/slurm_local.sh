#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for `snakemake --profile profiles/slurm` (and its
# test, tests/test_slurm.py). Everything lives in one state folder: slurm.conf, a fresh munge key,
# the daemons' logs, pid files and spool (see below for the one link in /etc). Needs root.
#
#   tools/slurm_local.sh start [STATE_DIR]   install if missing (apt-get, as root), start munged,
#                                            slurmctld, slurmd; wait until the node is idle; print
#                                            the `export SLURM_CONF=...` the clients need
#   tools/slurm_local.sh stop  [STATE_DIR]   cancel this cluster's jobs, stop exactly the daemons
#                                            `start` recorded (and their leftover job steps)
#   tools/slurm_local.sh status [STATE_DIR]  sinfo + squeue of this cluster
#
# STATE_DIR defaults to $SLURM_LOCAL_DIR, else .slurm-local/ in the current folder. Ports default to
# the first free pair from 6817 (override with SLURM_LOCAL_CTLD_PORT / SLURM_LOCAL_SLURMD_PORT).
# One thing lives outside STATE_DIR while the cluster runs: /etc/slurm/slurm.conf, a symlink to
# STATE_DIR/slurm.conf, created only when that path is free and removed by `stop`. Clients could use
# SLURM_CONF alone, but the executor plugin's job step (snakemake-executor-plugin-slurm-jobstep)
# drops SLURM_* variables before its nested `srun`, which then reads the default path.
# Debian/Ubuntu packages: slurmctld slurmd slurm-client munge (SLURM 22.05 on Debian 12). No
# accounting daemon (slurmdbd): `sacct` does not work, so status queries must use `squeue`, which
# sees finished jobs for MinJobAge seconds (600 here; the profile polls first after 5 s).
set -euo pipefail

PKGS="slurmctld slurmd slurm-client munge"
cmd="${1:-}"
STATE="${2:-${SLURM_LOCAL_DIR:-$PWD/.slurm-local}}"
NODE=localhost
PARTITION=local

die() { echo "slurm_local: $*" >&2; exit 1; }
log() { echo "slurm_local: $*"; }

have_slurm() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null &&
    command -v sbatch >/dev/null && command -v squeue >/dev/null && command -v sinfo >/dev/null
}

install_slurm() {
  have_slurm && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing $PKGS (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq $PKGS
    have_slurm || die "apt-get install finished but a SLURM/munge binary is still missing"
  else
    die "SLURM is not installed. As root: apt-get install $PKGS (Debian/Ubuntu), then rerun."
  fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_ports() {
  if [ -n "${SLURM_LOCAL_CTLD_PORT:-}" ] || [ -n "${SLURM_LOCAL_SLURMD_PORT:-}" ]; then
    CTLD_PORT="${SLURM_LOCAL_CTLD_PORT:-6817}"
    SLURMD_PORT="${SLURM_LOCAL_SLURMD_PORT:-$((CTLD_PORT + 1))}"
    for p in "$CTLD_PORT" "$SLURMD_PORT"; do
      ! port_busy "$p" || die "port $p is in use (SLURM_LOCAL_CTLD_PORT / SLURM_LOCAL_SLURMD_PORT)"
    done
    return
  fi
  local p
  for p in $(seq 6817 2 6899); do
    if ! port_busy "$p" && ! port_busy "$((p + 1))"; then
      CTLD_PORT=$p SLURMD_PORT=$((p + 1))
      return
    fi
  done
  die "no free port pair in 6817-6900"
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# Start a daemon in the foreground of its own session, record its pid.
spawn() {
  local name=$1; shift
  setsid "$@" >"$STATE/log/$name.out" 2>&1 < /dev/null &
  echo $! >"$STATE/pids/$name"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  local i
  for ((i = 0; i < secs * 2; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  return 1
}

node_idle() { [ "$(sinfo -h -n "$NODE" -o %t 2>/dev/null)" = idle ]; }

start() {
  install_slurm
  mkdir -p "$STATE"
  STATE="$(cd "$STATE" && pwd)"
  ! cluster_running "$STATE" || die "a cluster from $STATE is still running; run: $0 stop $STATE"
  rm -rf "$STATE/pids" "$STATE/munge" "$STATE/ctld" "$STATE/spool" "$STATE/log"
  mkdir -p "$STATE/pids" "$STATE/munge" "$STATE/ctld" "$STATE/spool" "$STATE/log"
  chmod 700 "$STATE/munge"
  pick_ports

  local cpus mem
  # slurmd -C: what this node really has; RealMemory may not exceed it (or the node drains).
  read -r cpus mem < <(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*RealMemory=\([0-9]*\).*/\1 \2/p')
  [ -n "${cpus:-}" ] && [ -n "${mem:-}" ] || die "could not parse 'slurmd -C'"

  dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$STATE/munge/munge.key"

  cat >"$STATE/slurm.conf" <<EOF
# Written by tools/slurm_local.sh: one node (this machine), no accounting, no cgroups.
ClusterName=tokredlocal
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/munge/munge.socket
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# squeue status checks need finished jobs to stay visible (>= 3x the plugin's first-check wait)
MinJobAge=600
InactiveLimit=0
KillWait=5
Waittime=0
SlurmctldTimeout=30
SlurmdTimeout=60
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/ctld/slurmctld.pid
SlurmdPidFile=$STATE/spool/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF="$STATE/slurm.conf"
  link_etc_conf

  spawn munged munged --foreground --force --key-file="$STATE/munge/munge.key" \
    --socket="$STATE/munge/munge.socket" --pid-file="$STATE/munge/munged.pid" \
    --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/munged.seed"
  wait_for 20 munged test -S "$STATE/munge/munge.socket" ||
    { tail -5 "$STATE/log/munged".* >&2 || true; stop_daemons; die "munged did not start (logs in $STATE/log)"; }

  spawn slurmctld slurmctld -D -c -f "$SLURM_CONF"
  wait_for 30 slurmctld scontrol ping ||
    { tail -20 "$STATE/log/slurmctld".* >&2 || true; stop_daemons; die "slurmctld did not start (logs in $STATE/log)"; }
  spawn slurmd slurmd -D -N "$NODE" -f "$SLURM_CONF"
  if ! wait_for 60 "node idle" node_idle; then
    sinfo -N -l >&2 || true
    tail -20 "$STATE/log/slurmd".* "$STATE/log/slurmctld.log" >&2 || true
    stop_daemons
    die "node $NODE did not become idle within 60 s (logs in $STATE/log)"
  fi
  log "cluster up: node $NODE ($cpus CPUs, ${mem} MB), partition $PARTITION, ports $CTLD_PORT/$SLURMD_PORT"
  echo "export SLURM_CONF=$SLURM_CONF"
}

ETC_CONF=/etc/slurm/slurm.conf

cluster_running() {  # cluster_running STATE_DIR: any daemon recorded there still alive?
  local f
  for f in "$1"/pids/*; do
    [ -f "$f" ] && alive "$(cat "$f")" && return 0
  done
  return 1
}

link_etc_conf() {
  if [ -L "$ETC_CONF" ]; then
    local target other
    target=$(readlink "$ETC_CONF")
    other=$(dirname "$target")
    [ -f "$other/etc_conf.link" ] ||
      die "$ETC_CONF is a symlink not made by this script (-> $target); not touching it"
    [ "$other" = "$STATE" ] || ! cluster_running "$other" ||
      die "$ETC_CONF belongs to the running cluster in $other; stop it first: $0 stop $other"
    rm -f "$ETC_CONF"  # stale link of a stopped slurm_local cluster
  elif [ -e "$ETC_CONF" ]; then
    die "$ETC_CONF exists (a system SLURM config): the jobs' nested srun would read it instead of this cluster's. Use a machine without one, or move it aside."
  fi
  mkdir -p "$(dirname "$ETC_CONF")"
  ln -s "$STATE/slurm.conf" "$ETC_CONF" || die "cannot create $ETC_CONF (needs root)"
  echo "$ETC_CONF" >"$STATE/etc_conf.link"
}

unlink_etc_conf() {
  if [ -f "$STATE/etc_conf.link" ]; then
    if [ "$(readlink "$ETC_CONF" 2>/dev/null)" = "$STATE/slurm.conf" ]; then rm -f "$ETC_CONF"; fi
    rm -f "$STATE/etc_conf.link"
  fi
}

# slurmstepd (one per job step) runs in a session of its own; ours are those that inherited this
# cluster's SLURM_CONF from our slurmd. After scancel there are none; this catches stragglers.
stop_job_steps() {
  local p pids=""
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = slurmstepd ] || continue
    tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$STATE/slurm.conf" && pids="$pids ${p#/proc/}"
  done
  [ -n "$pids" ] || return 0
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  sleep 1
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
}

# Stop the recorded daemons (slurmd first, munged last) and whatever still runs in their sessions
# (job steps slurmd started); nothing else is touched.
stop_daemons() {
  local name pid sid others
  for name in slurmd slurmctld munged; do
    [ -f "$STATE/pids/$name" ] || continue
    pid=$(cat "$STATE/pids/$name")
    if alive "$pid"; then
      sid=$pid  # setsid: the daemon leads its own session
      kill -TERM "$pid" 2>/dev/null || true
      wait_for 15 "$name exit" bash -c "! kill -0 $pid 2>/dev/null" || kill -KILL "$pid" 2>/dev/null || true
      others=$(ps -eo pid=,sid= | awk -v s="$sid" -v p="$pid" '$2 == s && $1 != p {print $1}')
      if [ -n "$others" ]; then
        # shellcheck disable=SC2086
        kill -TERM $others 2>/dev/null || true
        sleep 1
        # shellcheck disable=SC2086
        kill -KILL $others 2>/dev/null || true
      fi
    fi
    rm -f "$STATE/pids/$name"
    if [ "$name" = slurmd ]; then stop_job_steps; fi
  done
  unlink_etc_conf
}

stop() {
  [ -d "$STATE" ] || die "no state folder $STATE"
  STATE="$(cd "$STATE" && pwd)"
  export SLURM_CONF="$STATE/slurm.conf"
  if [ -f "$STATE/pids/slurmctld" ] && alive "$(cat "$STATE/pids/slurmctld")"; then
    scancel --full --quiet --partition "$PARTITION" 2>/dev/null || true
    wait_for 20 "jobs gone" bash -c '[ -z "$(squeue -h -t R,CG,PD 2>/dev/null)" ]' ||
      log "jobs still listed after scancel; stopping anyway"
  fi
  stop_daemons
  log "stopped (state and logs kept in $STATE)"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status)
    STATE="$(cd "$STATE" && pwd)"
    export SLURM_CONF="$STATE/slurm.conf"
    sinfo -N -l && squeue ;;
  *) echo "usage: $0 start|stop|status [STATE_DIR]" >&2; exit 2 ;;
esac
