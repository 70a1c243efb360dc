#!/bin/bash
# Single-node SLURM (Debian 12, slurm-wlm 22.05.8) for tests. Run as root. A tested recipe (tools/slurm/README.md),
# with free ports per cluster, WITH_DBD=0 by default,
# and a munged that is already running (another local cluster) is used, not restarted or recorded.
# Needs: apt-get install -y slurm-wlm munge   (+ slurmdbd mariadb-server if WITH_DBD=1)
#   BASE=/tmp/slurm bash tools/slurm/setup_slurm.sh && export SLURM_CONF=/tmp/slurm/etc/slurm.conf
#   BASE=/tmp/slurm bash tools/slurm/stop_slurm.sh     # stops the daemons it started, by their PIDs
set -euo pipefail
BASE=${BASE:-/tmp/slurm}            # state, logs, pid files
CONF_DIR=${CONF_DIR:-$BASE/etc}     # set CONF_DIR=/etc/slurm to avoid needing SLURM_CONF
WITH_DBD=${WITH_DBD:-0}             # 1 = slurmdbd+mariadb so `sacct` works (submitit needs it)
CTLD_PORT=${CTLD_PORT:-6817}        # two clusters on one machine need different ports
SLURMD_PORT=${SLURMD_PORT:-6818}
mkdir -p "$BASE"/{state,spool,log,pids} "$CONF_DIR"
export SLURM_CONF=$CONF_DIR/slurm.conf

H=$(hostname -s)
NODE=$(slurmd -C | head -1)        # NodeName=<host> CPUs=.. Boards=.. SocketsPerBoard=.. CoresPerSocket=.. ThreadsPerCore=.. RealMemory=..
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
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/state/slurmctld.pid
SlurmdPidFile=$BASE/spool/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
JobCompType=jobcomp/none
$ACCT
$NODE NodeAddr=127.0.0.1 State=UNKNOWN
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
nohup /usr/sbin/slurmd -D -f "$SLURM_CONF" > "$BASE/log/slurmd.out" 2>&1 &
echo $! > "$BASE/pids/slurmd"
wait_for 60 sh -c 'sinfo -h -o %T | grep -qx idle'
echo "SLURM up: export SLURM_CONF=$SLURM_CONF"
