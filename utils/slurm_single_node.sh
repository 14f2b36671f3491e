#!/usr/bin/env bash
# A throw-away single-node Slurm cluster on this machine, for the tests and CI (not for production).
#   utils/slurm_single_node.sh install   apt-get install slurm-wlm + munge when missing (needs root)
#   utils/slurm_single_node.sh start     munged, slurmctld, slurmd from a private state dir; waits for
#                                        the node to be idle; prints the slurm.conf path (SLURM_CONF)
#   utils/slurm_single_node.sh stop      stops those daemons and removes the state dir
#   utils/slurm_single_node.sh status    exit 0 (and sinfo's line) when the cluster answers
# Everything lives in $PYSPEAKER_SLURM_DIR (default /tmp/pyspeaker-slurm): the system's /etc/slurm
# and /etc/munge are neither read nor changed, so clients need SLURM_CONF=<that dir>/slurm.conf.
# Ports: $PYSPEAKER_SLURM_PORT (slurmctld, default 6817) and the next one (slurmd).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

state=${PYSPEAKER_SLURM_DIR:-/tmp/pyspeaker-slurm}
port=${PYSPEAKER_SLURM_PORT:-6817}
conf=$state/slurm.conf
export SLURM_CONF=$conf
export PATH=$PATH:/usr/sbin:/sbin   # the daemons live in sbin, not always on a root shell's PATH

have_slurm() { command -v slurmctld && command -v slurmd && command -v munged && command -v sbatch; } >/dev/null 2>&1

install() {
  if have_slurm; then log "slurm and munge are installed"; return; fi
  [ "$(id -u)" -eq 0 ] || die "installing slurm-wlm needs root (apt-get)"
  command -v apt-get >/dev/null || die "no apt-get here: install slurm-wlm and munge by hand"
  # apt would start munge/slurm services with the system config: a policy-rc.d keeps them stopped
  local policy=/usr/sbin/policy-rc.d own_policy=false
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; own_policy=true; fi
  local rc=0
  {
    if ! apt-cache show slurm-wlm >/dev/null 2>&1; then apt-get update -qq; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
  } || rc=$?
  [ "$own_policy" = true ] && rm -f "$policy"
  [ "$rc" -eq 0 ] || die "apt-get install slurm-wlm munge failed (exit $rc)"
  have_slurm || die "slurm-wlm installed but slurmctld/slurmd/munged/sbatch are not on PATH"
  log "installed slurm-wlm $(dpkg-query -W -f='${Version}' slurm-wlm 2>/dev/null)"
}

pid_of() { [ -s "$state/$1.pid" ] && cat "$state/$1.pid"; }
alive() { local p; p=$(pid_of "$1") && kill -0 "$p" 2>/dev/null; }

stop() {
  local name p i running pids=()
  if alive slurmctld; then   # jobs still running would outlive slurmd
    scancel --quiet --user="$(id -un)" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.1; done
  fi
  for name in slurmd slurmctld munged; do
    p=$(pid_of "$name") && kill "$p" 2>/dev/null && pids+=("$p")
  done
  for ((i = 0; i < 50; i++)); do   # up to 5 s, then SIGKILL
    running=false
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && running=true; done
    [ "$running" = true ] || break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$state"
  log "stopped; removed $state"
}

status() {
  alive munged && alive slurmctld && alive slurmd || return 1
  sinfo -h -N -o '%N %T' 2>/dev/null | grep -E ' idle| mixed| allocated' || return 1
}

# CPUs this process may use; nproc alone would count OMP_NUM_THREADS, which the tests set to 1
cpus() { env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc; }

write_conf() {
  local host=$1 mem_mb
  mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
  cat > "$conf" <<EOF
# written by utils/slurm_single_node.sh: one node, root daemons, no cgroups (works in containers)
ClusterName=pyspeaker
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$state/munge/munge.socket
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/slurmd
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# the node is what this file says, even where slurmd counts CPUs or memory differently (containers)
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
# sbatch --wait polls after 2 s, then 4x longer while under MinJobAge/2: 4 keeps it at 2 s for small jobs
MinJobAge=4
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(cpus) RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  have_slurm || die "slurm-wlm and munge are not installed (run: $0 install)"
  [ "$(id -u)" -eq 0 ] || die "the single-node cluster runs its daemons as root"
  [ -d "$state" ] && stop 2>/dev/null
  local host i
  host=$(hostname -s 2>/dev/null || uname -n | cut -d. -f1)
  mkdir -p "$state/munge" "$state/ctld" "$state/slurmd"
  chmod 700 "$state" "$state/munge"
  # a fresh random key for this cluster only
  dd if=/dev/urandom of="$state/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$state/munge/munge.key"
  # --force: munged refuses some container setups (root, /tmp parents) that are fine for a test cluster
  munged --force --key-file="$state/munge/munge.key" --socket="$state/munge/munge.socket" \
    --pid-file="$state/munged.pid" --log-file="$state/munged.log" --seed-file="$state/munge/seed" ||
    die "munged did not start (see $state/munged.log)"
  write_conf "$host"
  slurmctld -c || die "slurmctld did not start (see $state/slurmctld.log)"
  slurmd -N "$host" || die "slurmd did not start (see $state/slurmd.log)"
  for ((i = 0; i < 60; i++)); do
    if status >/dev/null; then
      log "node $host idle ($(cpus) CPUs); SLURM_CONF=$conf"
      echo "$conf"
      return
    fi
    sleep 0.5
  done
  die "the node did not become idle in 30 s: $(sinfo -h -N -o '%N %T %E' 2>&1 | head -1); logs in $state"
}

case ${1:-} in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "Usage: $0 install|start|stop|status" >&2; exit 1 ;;
esac
