#!/bin/bash
# A local SLURM cluster (Debian 12, slurm-wlm 22.05.8) for tests: one node (the default), or NODES=N nodes on this
# one machine. Run as root. A tested recipe (tools/slurm/README.md), with free ports per cluster, WITH_DBD=0 by
# default, and a munged that is already running (another local cluster) is used, not restarted or recorded.
# Needs: apt-get install -y slurm-wlm munge   (+ slurmdbd mariadb-server if WITH_DBD=1)
#   BASE=/tmp/slurm bash tools/slurm/setup_slurm.sh && export SLURM_CONF=/tmp/slurm/etc/slurm.conf
#   BASE=/tmp/slurm2 NODES=2 CTLD_PORT=6827 SLURMD_PORT=6828 bash tools/slurm/setup_slurm.sh   # two nodes
#   BASE=/tmp/slurm bash tools/slurm/stop_slurm.sh     # stops the daemons it started, by their PIDs
#
# NODES=1: the node is this machine, NodeName = `hostname -s` (what `slurmd -C` reports).
# NODES=N>1: nodes ${NODE_PREFIX}1..N, each with this machine's hardware (`slurmd -C`), NodeAddr=127.0.0.1 and its
# own Port= (SLURMD_PORT, SLURMD_PORT+1, ... or the list SLURMD_PORTS="p1 p2"), one `slurmd -N <name>` each, with
# its own spool folder and log. Debian's stock slurmd runs them side by side (tools/slurm/README.md): jobs see
# SLURM_NODEID 0..N-1 and SLURMD_NODENAME <prefix>1..N. The names must resolve (Lightning's SLURMEnvironment sets
# MASTER_ADDR to the job's first node): a name that does not is added to /etc/hosts as 127.0.0.1, once.
set -euo pipefail
BASE=${BASE:-/tmp/slurm}            # state, logs, pid files
CONF_DIR=${CONF_DIR:-$BASE/etc}     # set CONF_DIR=/etc/slurm to avoid needing SLURM_CONF
WITH_DBD=${WITH_DBD:-0}             # 1 = slurmdbd+mariadb so `sacct` works (submitit needs it)
CTLD_PORT=${CTLD_PORT:-6817}        # two clusters on one machine need different ports
SLURMD_PORT=${SLURMD_PORT:-6818}
NODES=${NODES:-1}
NODE_PREFIX=${NODE_PREFIX:-slnode}
# Job ids start at a random FIRST_JOB_ID: Lightning's SLURMEnvironment takes MASTER_PORT = 15000 + the job id's last
# 4 digits, so two local clusters that both started at job 1 would put their first jobs on one port.
FIRST_JOB_ID=${FIRST_JOB_ID:-$((1000 + RANDOM % 9000))}
case "$NODES" in '' | *[!0-9]* | 0) echo "setup_slurm.sh: NODES=$NODES must be a whole number >= 1" >&2; exit 2 ;; esac
mkdir -p "$BASE"/{state,spool,log,pids} "$CONF_DIR"
export SLURM_CONF=$CONF_DIR/slurm.conf

H=$(hostname -s)
HW=$(slurmd -C | head -1)          # NodeName=<host> CPUs=.. Boards=.. SocketsPerBoard=.. CoresPerSocket=.. ThreadsPerCore=.. RealMemory=..
if [ "$NODES" = 1 ]; then
  NAMES=("$H")
  NODE_LINES="$HW NodeAddr=127.0.0.1 State=UNKNOWN"
  SPOOL=$BASE/spool PIDFILE=$BASE/spool/slurmd.pid DLOG=$BASE/log/slurmd.log
else
  read -r -a PORTS <<< "${SLURMD_PORTS:-}"
  NAMES=() NODE_LINES=""
  for i in $(seq 1 "$NODES"); do
    name=$NODE_PREFIX$i port=${PORTS[$((i - 1))]:-$((SLURMD_PORT + i - 1))}
    NAMES+=("$name")
    NODE_LINES+="NodeName=$name NodeHostname=$name NodeAddr=127.0.0.1 Port=$port ${HW#NodeName=* } State=UNKNOWN"$'\n'
    mkdir -p "$BASE/spool/$name"
    if ! getent hosts "$name" >/dev/null; then   # idempotent: only a name that does not resolve yet
      echo "127.0.0.1 $name   # tools/slurm/setup_slurm.sh (a local SLURM node)" >> /etc/hosts \
        || { echo "setup_slurm.sh: cannot add $name to /etc/hosts (root needed): the job's MASTER_ADDR must resolve" >&2; exit 1; }
    fi
  done
  SPOOL=$BASE/spool/%n PIDFILE=$BASE/spool/%n/slurmd.pid DLOG=$BASE/log/slurmd-%n.log
fi
if [ "$WITH_DBD" = 1 ]; then
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux"
else
  ACCT="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi
cat > "$SLURM_CONF" <<CONF
ClusterName=localcluster
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
# cred_expire also = delay before a requeued job may start again (default 120 s)
AuthInfo=cred_expire=10
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=5
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=$BASE/state/slurmctld.pid
SlurmdPidFile=$PIDFILE
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$DLOG
FirstJobId=$FIRST_JOB_ID
JobCompType=jobcomp/none
$ACCT
$NODE_LINES
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

wait_for() { # wait_for <seconds> <cmd...>
  local t=$1; shift; local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do [ $SECONDS -ge $end ] && { echo "timeout waiting for: $*" >&2; return 1; }; sleep 0.2; done; }

# munge (no systemd here; policy-rc.d blocks the package's own start)
[ -s /etc/munge/munge.key ] || mungekey --create
mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
if ! sh -c 'munge -n | unmunge' >/dev/null 2>&1; then   # one munged per machine: reuse a running one
  nohup setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground > "$BASE/log/munged.out" 2>&1 &
  echo $! > "$BASE/pids/munged"
  wait_for 20 sh -c 'munge -n | unmunge'
fi

if [ "$WITH_DBD" = 1 ]; then
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  nohup /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock --skip-networking > "$BASE/log/mariadb.out" 2>&1 &
  echo $! > "$BASE/pids/mariadb"
  wait_for 60 mariadb -e 'select 1'
  cat > "$CONF_DIR/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=$BASE/log/slurmdbd.log
PidFile=$BASE/state/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
CONF
  chmod 600 "$CONF_DIR/slurmdbd.conf"   # slurmdbd refuses a world-readable conf
  nohup /usr/sbin/slurmdbd -D > "$BASE/log/slurmdbd.out" 2>&1 &
  echo $! > "$BASE/pids/slurmdbd"
  wait_for 60 sacctmgr -n list cluster
fi

nohup /usr/sbin/slurmctld -D -f "$SLURM_CONF" > "$BASE/log/slurmctld.out" 2>&1 &
echo $! > "$BASE/pids/slurmctld"
wait_for 30 scontrol ping
if [ "$NODES" = 1 ]; then
  nohup /usr/sbin/slurmd -D -f "$SLURM_CONF" > "$BASE/log/slurmd.out" 2>&1 &
  echo $! > "$BASE/pids/slurmd"
else
  for name in "${NAMES[@]}"; do
    nohup /usr/sbin/slurmd -D -N "$name" -f "$SLURM_CONF" > "$BASE/log/slurmd-$name.out" 2>&1 &
    echo $! > "$BASE/pids/slurmd-$name"
  done
fi
wait_for 60 sh -c "[ \$(sinfo -h -N -o %T | grep -cx idle) = $NODES ]"
echo "SLURM up ($NODES node(s): ${NAMES[*]}): export SLURM_CONF=$SLURM_CONF"
