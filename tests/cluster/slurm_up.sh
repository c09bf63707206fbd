#!/usr/bin/env bash
# Start a throw-away single-node SLURM (with accounting) on this machine, for tests/test_slurm.py.
#
#   bash tests/cluster/slurm_up.sh      # idempotent: a running set-up is left as it is
#   bash tests/cluster/slurm_down.sh    # stops every daemon this script started
#
# Needs root and Debian's apt (installs slurm-wlm, munge, slurmdbd, mariadb-server when missing).
# All state, logs and pid files live in $DR_SLURM_DIR (default /tmp/dr-slurm); only the two
# config files SLURM insists on reading from /etc/slurm are written outside it.
# The node offers 2 stand-in GPUs (/dev/null and /dev/zero, no CUDA behind them) so that jobs
# requesting `--gpus=N` are scheduled and the executor's GPU path (`--gpus`, srun) runs for real.
set -euo pipefail

STATE=${DR_SLURM_DIR:-/tmp/dr-slurm}
DB_PORT=${DR_SLURM_DB_PORT:-33061}   # not 3306: never collide with a real MariaDB
CLUSTER=drtest
ACCOUNT=dr

log() { echo "slurm_up: $*" >&2; }

# Is the daemon whose pid file is $1 alive?
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Wait up to $1 seconds for the command "${@:2}" to succeed.
wait_for() {
  local secs=$1; shift
  for ((i = 0; i < secs * 4; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  log "timed out waiting for: $*"; return 1
}

node_idle() { sinfo -h -o %t | grep -qx idle; }

[[ $(id -u) == 0 ]] || { log "needs root"; exit 1; }

if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid" && node_idle; then
  log "already up ($STATE)"; exit 0
fi

# --- packages (installing does not start services here: policy-rc.d) ------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null \
   || ! command -v mariadbd >/dev/null || ! command -v munged >/dev/null; then
  log "installing slurm-wlm munge slurmdbd mariadb-server"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    slurm-wlm munge slurmdbd mariadb-server >/dev/null
fi

mkdir -p "$STATE"/{log,spool,state,db}
chmod 755 "$STATE"

# --- munge: the stock socket /run/munge is what SLURM's auth/munge talks to ------------------
mkdir -p /run/munge "$STATE/munge" && chown munge:munge /run/munge "$STATE/munge"
if alive "$STATE/munge/munged.pid"; then
  :
elif [[ -S /run/munge/munge.socket.2 ]] && munge -n </dev/null | unmunge >/dev/null 2>&1; then
  log "a munged we did not start is serving: using it, leaving it alone"
else
  runuser -u munge -- munged --force --pid-file="$STATE/munge/munged.pid" \
    </dev/null >"$STATE/log/munged.out" 2>&1
fi

# --- MariaDB for slurmdbd, TCP on loopback only; $STATE/db (owned by mysql) holds everything ---
DB=$STATE/db
if ! alive "$DB/mariadb.pid"; then
  chown mysql:mysql "$DB"
  if [[ ! -d $DB/data/mysql ]]; then
    mariadb-install-db --user=mysql --datadir="$DB/data" --skip-test-db \
      --auth-root-authentication-method=socket >"$STATE/log/mariadb-install.log" 2>&1
  fi
  mariadbd --user=mysql --datadir="$DB/data" --socket="$DB/mysqld.sock" \
    --pid-file="$DB/mariadb.pid" --bind-address=127.0.0.1 --port="$DB_PORT" \
    --log-error="$DB/mariadb.log" </dev/null >/dev/null 2>&1 &
  disown
  wait_for 30 mariadb --socket="$DB/mysqld.sock" -e 'select 1'
fi
mariadb --socket="$DB/mysqld.sock" <<'SQL'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL

# --- config: jobs' srun reads /etc/slurm/slurm.conf whatever SLURM_CONF says ----------------
mkdir -p /etc/slurm
# First line of `slurmd -C` is the node as slurmd sees it; leave memory headroom for the OS.
node=$(slurmd -C | head -1)
mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
node=$(sed "s/RealMemory=[0-9]*/RealMemory=$((mem * 8 / 10))/" <<<"$node")
name=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<<"$node")
# Stand-in GPUs: SLURM's gpu plugin needs one device file per GPU; these two are harmless.
printf 'NodeName=%s Name=gpu File=%s\n' "$name" /dev/null "$name" /dev/zero >/etc/slurm/gres.conf

cat >/etc/slurm/slurm.conf <<EOF
# Written by tests/cluster/slurm_up.sh: a single-node test cluster, state in $STATE.
ClusterName=$CLUSTER
SlurmctldHost=$name
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoreFlags=job_comment
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
GresTypes=gpu
$node Gres=gpu:2
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

cat >/etc/slurm/slurmdbd.conf <<EOF
# Written by tests/cluster/slurm_up.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
chmod 600 /etc/slurm/slurmdbd.conf

# --- daemons -------------------------------------------------------------------------------
# Daemons fork into the background; their stdio goes to files so no caller's pipe is held open.
alive "$STATE/slurmdbd.pid" || slurmdbd </dev/null >"$STATE/log/slurmdbd.out" 2>&1
wait_for 30 sacctmgr -n list cluster
# Cluster, account and user must exist in the database before slurmctld registers.
sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description=tests Organization=dr >/dev/null 2>&1 || true
sacctmgr -i add user root Account="$ACCOUNT" DefaultAccount="$ACCOUNT" >/dev/null 2>&1 || true

alive "$STATE/slurmctld.pid" || slurmctld -i </dev/null >"$STATE/log/slurmctld.out" 2>&1
alive "$STATE/slurmd.pid" || slurmd </dev/null >"$STATE/log/slurmd.out" 2>&1
wait_for 60 node_idle
log "up: node $name idle, partition debug, account $ACCOUNT, state in $STATE"
