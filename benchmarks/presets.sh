#!/usr/bin/env bash
# Every preset pair over seeds 0-9 (the default over 0-19), on this CPU's own numeric path and on
# another CPU's, emulated: Hydra multirun (two jobs at a time through the joblib launcher) and
# drlrun-report, nothing else. The runs land in outputs/presets/<path>/<pair>/ (without
# checkpoints, which change nothing that is learned); drlrun-report's report.md, report.csv and
# learning curves in benchmarks/results/presets/<path>/<pair>/.
#
#   bash benchmarks/presets.sh                      # every pair, both paths (hours on 2 cores)
#   bash benchmarks/presets.sh dqn_CartPole-v1      # one pair
#   PATHS=native bash benchmarks/presets.sh ppo_CartPole-v1 a2c_CartPole-v1
#
# "emulated" sets ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2: torch's and MKL's
# plain kernels, whose rounding differs from the AVX2/AVX-512 ones, as another machine's would.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v drlrun > /dev/null || { echo "drlrun is not on PATH: activate its virtual environment first" >&2; exit 2; }

ALL_PAIRS=(dqn_CartPole-v1 dqn_Acrobot-v1 dqn_LunarLander-v3 reinforce_CartPole-v1 a2c_CartPole-v1
           ppo_CartPole-v1 ppo_Acrobot-v1 ppo_LunarLander-v3 ppo_Pendulum-v1 sac_Pendulum-v1
           td3_Pendulum-v1 sac_LunarLanderContinuous-v3)
pairs=("$@")
[ ${#pairs[@]} -eq 0 ] && pairs=("${ALL_PAIRS[@]}")
read -r -a paths <<< "${PATHS:-native emulated}"
jobs=${JOBS:-2}
runs=outputs/presets
reports=benchmarks/results/presets

for path in "${paths[@]}"; do
  for pair in "${pairs[@]}"; do
    algo=${pair%%_*}
    env=${pair#*_}
    seeds=0,1,2,3,4,5,6,7,8,9
    [ "$pair" = dqn_CartPole-v1 ] && seeds=$(seq -s, 0 19)  # the embedded default: 20 seeds
    dir=$runs/$path/$pair
    rm -rf "$dir"
    mkdir -p "$dir" "$reports/$path/$pair"
    if [ "$path" = emulated ]; then
      export ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2
    else
      unset ATEN_CPU_CAPABILITY MKL_ENABLE_INSTRUCTIONS
    fi
    echo "== $pair on the $path numeric path -> $dir"
    # (exit 1 when a job failed: the report lists it)
    drlrun -m "algo=$algo" "env=$env" "seed=$seeds" log.progress=false checkpoint.enabled=false \
      hydra/launcher=joblib "hydra.launcher.n_jobs=$jobs" "hydra.sweep.dir=$dir" > "$dir/sweep.log" 2>&1 || true
    threshold=()  # Pendulum has no reward threshold of its own: swung up and held is about -150 to -200
    [ "$env" = Pendulum-v1 ] && threshold=(--threshold -200)
    drlrun-report "$dir" --out "$reports/$path/$pair" "${threshold[@]}" | tail -n 4
  done
done
