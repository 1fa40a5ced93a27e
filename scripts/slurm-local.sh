#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine (for tests, CI and trying profiles/slurm without a cluster).
#
#   scripts/slurm-local.sh start    install slurm-wlm + munge if missing (apt-get, as root), start munged, slurmctld
#                                   and slurmd, wait until `sinfo` shows the node idle; a no-op when already up
#   scripts/slurm-local.sh stop     end the daemons this script started (by their pid files)
#   scripts/slurm-local.sh status   daemons and `sinfo`; exit 0 only when the node takes jobs
#   scripts/slurm-local.sh env      prints `export SLURM_CONF=...` (eval it to use sbatch/squeue of this cluster)
#
# Everything it writes lives in $SLURM_LOCAL_DIR (default /tmp/videoktr-slurm): slurm.conf, the munge key and socket,
# spool and state folders, pid and log files. The only file outside it is the symlink /etc/slurm/slurm.conf ->
# $SLURM_LOCAL_DIR/slurm.conf, made only where no slurm.conf exists (or it is this script's link), and removed by
# `stop`: the job step that Snakemake's SLURM executor runs inside a job (`srun`) drops SLURM_CONF from its
# environment and reads the default path.
#
# The configuration is the one checked on this kind of machine (docs/design.md, "SLURM without accounting"):
# ProctrackType=proctrack/linuxproc, TaskPlugin=task/none, SelectType=select/cons_tres, accounting off, one node
# with this machine's CPUs and memory (`slurmd -C`), one partition `local`.
#
# Environment:
#   SLURM_LOCAL_DIR       state folder (default /tmp/videoktr-slurm)
#   SLURM_LOCAL_GPUS      GPUs the node offers as GRES `gpu` (default: as many as `nvidia-smi -L` lists, else 0);
#                         a count on a machine without GPUs declares that many placeholder GPUs (no device files),
#                         so that jobs asking for `--gpus` are scheduled here as on a GPU node (CPU only, for tests)
#   SLURM_LOCAL_CTLD_PORT, SLURM_LOCAL_SLURMD_PORT   ports (default 6817, 6818)
#   SLURM_LOCAL_TIMEOUT   seconds to wait for the node to turn idle (default 90)
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/videoktr-slurm}
CTLD_PORT=${SLURM_LOCAL_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_LOCAL_SLURMD_PORT:-6818}
TIMEOUT=${SLURM_LOCAL_TIMEOUT:-90}
CONF=$DIR/slurm.conf
ETC_CONF=/etc/slurm/slurm.conf
MUNGE_SOCKET=$DIR/munge/munge.socket
NODE=$(hostname -s)
export SLURM_CONF=$CONF

log() { echo "slurm-local: $*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root (or sudo) for: $*"; fi
}

install_packages() {
    local missing=0 b
    for b in munged mungekey slurmctld slurmd sinfo sbatch squeue srun scontrol; do
        command -v "$b" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$b" >/dev/null 2>&1 || missing=1
    done
    [ "$missing" -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "slurm/munge are missing and there is no apt-get: install slurm-wlm and munge"
    log "installing slurm-wlm and munge (apt-get)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

node_state() { sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n1 | tr -d '*~#!%$@^-'; }

gpu_count() {
    if [ -n "${SLURM_LOCAL_GPUS:-}" ]; then echo "$SLURM_LOCAL_GPUS"
    elif command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true
    else echo 0; fi
}

write_conf() {  # write_conf FILE: slurm.conf for this machine (gres.conf and placeholder GPUs beside $CONF)
    local out=$1 hw gpus
    # "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
    hw=$(PATH=$PATH:/usr/sbin slurmd -C | head -n1 | sed 's/^NodeName=[^ ]* //')
    gpus=$(gpu_count)
    mkdir -p "$DIR/ctld" "$DIR/slurmd" "$DIR/log" "$DIR/jobs"
    {
        echo "# written by scripts/slurm-local.sh: a single-node cluster on $NODE"
        echo "ClusterName=videoktr"
        echo "SlurmctldHost=$NODE(127.0.0.1)"
        echo "SlurmctldPort=$CTLD_PORT"
        echo "SlurmdPort=$SLURMD_PORT"
        echo "SlurmUser=root"
        echo "SlurmdUser=root"
        echo "AuthType=auth/munge"
        echo "CredType=cred/munge"
        echo "AuthInfo=socket=$MUNGE_SOCKET"
        echo "StateSaveLocation=$DIR/ctld"
        echo "SlurmdSpoolDir=$DIR/slurmd"
        echo "SlurmctldPidFile=$DIR/slurmctld.pid"
        echo "SlurmdPidFile=$DIR/slurmd.pid"
        echo "SlurmctldLogFile=$DIR/log/slurmctld.log"
        echo "SlurmdLogFile=$DIR/log/slurmd.log"
        echo "ProctrackType=proctrack/linuxproc"
        echo "TaskPlugin=task/none"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_Core_Memory"
        echo "SchedulerType=sched/backfill"
        echo "MpiDefault=none"
        echo "ReturnToService=2"
        echo "AccountingStorageType=accounting_storage/none"
        echo "JobAcctGatherType=jobacct_gather/none"
        echo "JobCompType=jobcomp/none"
        echo "SlurmctldTimeout=30"
        echo "SlurmdTimeout=60"
        echo "InactiveLimit=0"
        echo "MinJobAge=300"
        echo "KillWait=10"
        echo "Waittime=0"
        if [ "$gpus" -gt 0 ]; then
            echo "GresTypes=gpu"
            echo "NodeName=$NODE NodeAddr=127.0.0.1 $hw Gres=gpu:$gpus State=UNKNOWN"
        else
            echo "NodeName=$NODE NodeAddr=127.0.0.1 $hw State=UNKNOWN"
        fi
        echo "PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO"
    } >"$out"
    if [ "$gpus" -gt 0 ]; then
        if [ -e /dev/nvidia0 ]; then
            echo "Name=gpu File=/dev/nvidia[0-$((gpus - 1))]" >"$DIR/gres.conf"
        else
            # placeholders for scheduling only (GRES gpu needs device files): character devices like /dev/null
            # where mknod works, else plain files (slurmd then logs "not a valid character or block device")
            mkdir -p "$DIR/fake-gpu"
            local i
            for i in $(seq 0 $((gpus - 1))); do
                [ -e "$DIR/fake-gpu/nvidia$i" ] || mknod "$DIR/fake-gpu/nvidia$i" c 1 3 2>/dev/null \
                    || touch "$DIR/fake-gpu/nvidia$i"
            done
            echo "Name=gpu File=$DIR/fake-gpu/nvidia[0-$((gpus - 1))]" >"$DIR/gres.conf"
        fi
    else
        rm -f "$DIR/gres.conf"
    fi
}

link_default_conf() {
    # srun inside a job reads the default path (the executor's job step drops SLURM_CONF).
    if [ -L "$ETC_CONF" ] && [ "$(readlink "$ETC_CONF")" = "$CONF" ]; then return 0; fi
    if [ -e "$ETC_CONF" ] || [ -L "$ETC_CONF" ]; then
        die "$ETC_CONF exists and is not this script's: on a machine with its own SLURM, use that one"
    fi
    as_root mkdir -p "$(dirname "$ETC_CONF")"
    as_root ln -s "$CONF" "$ETC_CONF"
}

start_munge() {
    pid_alive "$DIR/munge/munged.pid" && return 0
    mkdir -p "$DIR/munge"
    chmod 755 "$DIR" "$DIR/munge"  # munged wants its socket's folders searchable by everyone
    [ -s "$DIR/munge/munge.key" ] || PATH=$PATH:/usr/sbin mungekey --create --keyfile="$DIR/munge/munge.key" --bits=1024
    chmod 600 "$DIR/munge/munge.key"
    PATH=$PATH:/usr/sbin munged --key-file="$DIR/munge/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" \
        || die "munged did not start (see $DIR/munge/munged.log)"
}

wait_idle() {
    local t=0 state
    while [ "$t" -lt "$TIMEOUT" ]; do
        state=$(node_state || true)
        case "$state" in
            idle|mixed|allocated|completing) log "node $NODE is $state"; return 0 ;;
            inval|invalid)
                # the node's hardware does not match slurm.conf: waiting will not help
                [ "$t" -ge 3 ] && break ;;
            down|drained|draining|drain|fail|failing|unknown|"")
                if [ "$t" -ge 5 ] && [ -n "$state" ] && [ "$state" != unknown ]; then
                    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
                fi ;;
        esac
        sleep 1
        t=$((t + 1))
    done
    log "the node did not turn idle (${t}s); state: ${state:-none}"
    sinfo -N -l >&2 || true
    tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    return 1
}

start() {
    install_packages
    mkdir -p "$DIR"
    write_conf "$CONF.new"
    if pid_alive "$DIR/slurmctld.pid" && pid_alive "$DIR/slurmd.pid" && pid_alive "$DIR/munge/munged.pid"; then
        if cmp -s "$CONF.new" "$CONF"; then
            rm -f "$CONF.new"
            link_default_conf
            wait_idle && { log "already running ($DIR)"; return 0; }
        else
            log "restarting: the configuration changed (e.g. SLURM_LOCAL_GPUS)"
        fi
    fi
    stop_daemons quiet
    mv "$CONF.new" "$CONF"
    link_default_conf
    start_munge
    PATH=$PATH:/usr/sbin slurmctld -c -f "$CONF" || die "slurmctld did not start (see $DIR/log/slurmctld.log)"
    PATH=$PATH:/usr/sbin slurmd -f "$CONF" -N "$NODE" || die "slurmd did not start (see $DIR/log/slurmd.log)"
    wait_idle || die "cluster not ready"
    log "up: partition local, node $NODE ($(sinfo -h -N -o '%c CPUs, %m MB, gres %G' | head -n1)); state in $DIR"
    log "use it with: export SLURM_CONF=$CONF   (or: eval \"\$($0 env)\")"
}

stop_pid() {  # stop_pid NAME PIDFILE
    local pid t=0
    [ -s "$2" ] || return 0
    pid=$(cat "$2")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null && [ "$t" -lt 15 ]; do sleep 1; t=$((t + 1)); done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
        [ "${3:-}" = quiet ] || log "stopped $1 ($pid)"
    fi
    rm -f "$2"
}

stop_daemons() {
    stop_pid slurmd "$DIR/slurmd.pid" "${1:-}"
    stop_pid slurmctld "$DIR/slurmctld.pid" "${1:-}"
    stop_pid munged "$DIR/munge/munged.pid" "${1:-}"
}

stop() {
    if pid_alive "$DIR/slurmctld.pid"; then
        scancel --state=PENDING --partition=local >/dev/null 2>&1 || true
        scancel --partition=local >/dev/null 2>&1 || true
    fi
    stop_daemons
    if [ -L "$ETC_CONF" ] && [ "$(readlink "$ETC_CONF")" = "$CONF" ]; then as_root rm -f "$ETC_CONF"; fi
}

status() {
    local ok=0 d f
    for d in munged:munge/munged.pid slurmctld:slurmctld.pid slurmd:slurmd.pid; do
        f=$DIR/${d#*:}
        if pid_alive "$f"; then echo "${d%%:*}: running (pid $(cat "$f"))"; else echo "${d%%:*}: not running"; ok=1; fi
    done
    [ "$ok" -eq 0 ] || return 1
    sinfo -N -o '%N %P %T %c %m %G' || return 1
    case "$(node_state)" in idle|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
