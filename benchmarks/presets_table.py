"""One markdown table of every preset pair on both numeric paths, from the ``report.csv`` files
that ``benchmarks/presets.sh`` has drlrun-report write under ``benchmarks/results/presets/``.

    python benchmarks/presets_table.py > benchmarks/results/presets/README.md

Per pair and numeric path: seeds at or above the threshold, the final return's mean with its 95%
bootstrap interval, the interquartile mean and the median training seconds to the threshold
(drlrun-report's definitions; report.md beside each report.csv names the CPU and numeric path);
and RL Zoo's published score for the pair, where it has one (``RL_ZOO``).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "presets"
PATHS = {"native": "this CPU's path", "emulated": "emulated other CPU"}
# RL Baselines3 Zoo's benchmark.md: one trained agent per pair, deterministic evaluation
# (LunarLander's scores are for its -v2, the version the Zoo trained on).
RL_ZOO = {("dqn", "CartPole-v1"): 500.0, ("dqn", "Acrobot-v1"): -76.6, ("dqn", "LunarLander-v3"): 154.4,
          ("a2c", "CartPole-v1"): 500.0, ("ppo", "CartPole-v1"): 500.0, ("ppo", "Acrobot-v1"): -73.5,
          ("ppo", "LunarLander-v3"): 242.1, ("ppo", "Pendulum-v1"): -172.2, ("sac", "Pendulum-v1"): -157.0,
          ("td3", "Pendulum-v1"): -151.9, ("sac", "LunarLanderContinuous-v3"): 260.4}


def read(path: Path) -> dict[str, str] | None:
    if not path.is_file():
        return None
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    return rows[0] if len(rows) == 1 else None


def cell(row: dict[str, str] | None) -> list[str]:
    if row is None:
        return ["not run", "", "", ""]
    seconds = row["median_seconds_to_solve"]
    return [f"{row['successes']}/{row['seeds']}",
            f"{float(row['final_return_mean']):.1f} [{float(row['ci95_low']):.1f}, {float(row['ci95_high']):.1f}]",
            f"{float(row['iqm']):.1f}", f"{float(seconds):.1f} s" if seconds else "-"]


def main() -> None:
    pairs = sorted({p.name for path in PATHS for p in (RESULTS / path).glob("*") if p.is_dir()})
    if not pairs:
        sys.exit(f"No reports under {RESULTS}: run benchmarks/presets.sh first.")
    head = ["pair", "threshold"]
    for label in PATHS.values():
        head += [f"solved ({label})", "final return, 95% CI", "IQM", "time to solve"]
    head.append("RL Zoo")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for pair in pairs:
        rows = {path: read(RESULTS / path / pair / "report.csv") for path in PATHS}
        any_row = next((r for r in rows.values() if r), None)
        algo, env = (any_row["algo"], any_row["env"]) if any_row else (pair.split("_")[0], pair.split("_", 1)[1])
        threshold = any_row["threshold"] if any_row else ""
        zoo = RL_ZOO.get((algo, env)) if pair == f"{algo}_{env}" else None  # (not for a test's own run)
        line = [pair, threshold] + [c for path in PATHS for c in cell(rows[path])]
        line.append(f"{zoo:g}" if zoo is not None else "-")
        print("| " + " | ".join(line) + " |")


if __name__ == "__main__":
    main()
