#!/usr/bin/env bash
# Partitioned reconstruction on a Slurm cluster: one array task per part, then one merge job.
# The photos and the work folder must be on a file system every node sees.
#
#   examples/slurm_reconstruct.sh PHOTOS WORK PARTS [more hashkit reconstruct options]
#
# Each task runs `hashkit reconstruct PHOTOS -o WORK --parts PARTS --part $SLURM_ARRAY_TASK_ID`:
# the first to start writes the plan (WORK/parts.json) under a lock, the others read it, and each
# reconstructs its part into WORK/part-NNN/. The merge job, started when every task has ended
# well, finds the parts done and writes WORK/pairs.h5. A task that fails can be resubmitted alone
# (sbatch --array=N ...): COLMAP's finished stages are kept.
set -euo pipefail
photos=$1 work=$2 parts=$3
shift 3
mkdir -p "$work/logs"
array=$(sbatch --parsable --array=0-$((parts - 1)) --cpus-per-task="${CPUS:-8}" --output="$work/logs/part-%a.log" \
    --wrap="hashkit reconstruct '$photos' -o '$work' --parts $parts --part \$SLURM_ARRAY_TASK_ID $*")
sbatch --dependency=afterok:"$array" --output="$work/logs/merge.log" \
    --wrap="hashkit reconstruct '$photos' -o '$work' --parts $parts $*"
echo "submitted array $array ($parts parts) and its merge; logs in $work/logs"
