#!/bin/bash
# slurm-wlm + munge for the local test cluster (tools/slurm/setup_slurm.sh), installed with apt-get where missing.
# `make test` and `make test-slurm` run it first; a no-op when the binaries are there. Needs root on Debian/Ubuntu.
set -euo pipefail
NEEDED=(/usr/sbin/slurmctld /usr/sbin/slurmd /usr/sbin/munged /usr/bin/sbatch /usr/bin/srun)
missing() { for p in "${NEEDED[@]}"; do [ -e "$p" ] || return 0; done; return 1; }
missing || exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install_slurm.sh: SLURM is missing and this is not a root Debian machine: install slurm-wlm and munge to run the slurm tests" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "install_slurm.sh: apt-get install slurm-wlm munge (the local test cluster; once per machine)"
apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null; }
if missing; then
  echo "install_slurm.sh: apt-get install slurm-wlm munge did not provide ${NEEDED[*]}" >&2
  exit 1
fi
