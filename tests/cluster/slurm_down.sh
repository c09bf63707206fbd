#!/usr/bin/env bash
# Stop the daemons tests/cluster/slurm_up.sh started, each by the pid file it wrote in
# $DR_SLURM_DIR (default /tmp/dr-slurm). Idempotent; a munged it did not start is left alone.
# The state folder is kept (the database makes the next start faster); delete it for a clean slate.
set -uo pipefail

STATE=${DR_SLURM_DIR:-/tmp/dr-slurm}

# Pids of live daemons we started, clients first, the database and munge last.
pids=()
for file in slurmd.pid slurmctld.pid slurmdbd.pid db/mariadb.pid munge/munged.pid; do
  [[ -s $STATE/$file ]] || continue
  pid=$(cat "$STATE/$file")
  rm -f "$STATE/$file"
  kill -TERM "$pid" 2>/dev/null && pids+=("$pid") && echo "slurm_down: TERM $file ($pid)" >&2
done

# Wait up to 15 s for all of them together, then KILL what is left.
for ((i = 0; i < 60; i++)); do
  left=()
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
  ((${#left[@]} == 0)) && exit 0
  sleep 0.25
done
echo "slurm_down: KILL ${left[*]}" >&2
kill -KILL "${left[@]}" 2>/dev/null
exit 0
