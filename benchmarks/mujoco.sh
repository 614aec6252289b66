#!/usr/bin/env bash
# A preset over seeds 0-2 at a step budget a CPU can afford, one job at a time on one core
# (torch_threads=1, Hydra's basic launcher), then drlrun-report. The runs land in
# outputs/<group>/<algo>_<env>/ (without checkpoints, which change nothing that is learned); the
# report (report.md, report.csv, learning curves) in benchmarks/results/<group>/<algo>_<env>/.
# GROUP is mujoco unless given (the MinAtar results use GROUP=minatar).
#
#   bash benchmarks/mujoco.sh sac 100000              # SAC on HalfCheetah-v5, 100k steps (the README's run)
#   bash benchmarks/mujoco.sh ppo 1000000             # the preset's full budget
#   ENV=Hopper-v5 SEEDS=0,1,2,3,4 bash benchmarks/mujoco.sh td3 300000
#   GROUP=minatar ENV=MinAtar-Breakout-v1 SEEDS=0,1,2,3,4 EVAL_INTERVAL=50000 bash benchmarks/mujoco.sh ppo 1000000
#
# Needs pip install 'drlrun[mujoco]' (or the extra of the env's family). An evaluation every
# EVAL_INTERVAL steps, 10k by default.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v drlrun > /dev/null || { echo "drlrun is not on PATH: activate its virtual environment first" >&2; exit 2; }
[ $# -eq 2 ] || { echo "usage: bash benchmarks/mujoco.sh ALGO TOTAL_STEPS   (e.g. sac 100000)" >&2; exit 2; }

algo=$1
steps=$2
env=${ENV:-HalfCheetah-v5}
seeds=${SEEDS:-0,1,2}
pair=${algo}_${env}
group=${GROUP:-mujoco}
dir=outputs/$group/$pair
report=benchmarks/results/$group/$pair
rm -rf "$dir"
mkdir -p "$dir" "$report"
echo "== $pair, seeds $seeds, $steps steps each -> $dir"
# (exit 1 when a job failed: the report lists it)
drlrun -m "algo=$algo" "env=$env" "seed=$seeds" "total_steps=$steps" "eval.interval=${EVAL_INTERVAL:-10000}" \
  torch_threads=1 log.progress=false checkpoint.enabled=false "hydra.sweep.dir=$dir" > "$dir/sweep.log" 2>&1 || true
drlrun-report "$dir" --out "$report" | tail -n 4
