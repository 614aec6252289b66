"""Run one drlrun configuration over several seeds and print a markdown table.

    python benchmarks/seeds.py --seeds 0,1,2,3,4 -- algo=ppo env=CartPole-v1
    python benchmarks/seeds.py --jobs 2 --threshold -200 --json results.jsonl -- algo=sac env=Pendulum-v1

Each run is the `drlrun` command a user types, timed as a whole (start-up included). With
``--jobs 1`` (the default) runs go one after another, so wall times are clean; ``--jobs 2`` runs two
at once (each with one torch thread), which halves the elapsed time on a 2-core machine at the
cost of slower individual runs. Results are also appended as JSON lines with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import median
from typing import Any


def run_seed(exe: str, overrides: list[str], seed: int, root: Path) -> dict[str, Any]:
    run_dir = root / f"seed{seed}"
    cmd = [exe, *overrides, f"seed={seed}", "log.progress=false", f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"seed": seed, "status": "failed", "error": proc.stderr.strip()[-2000:], "command_wall_seconds": wall}
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["command_wall_seconds"] = round(wall, 2)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once")
    parser.add_argument("--threshold", type=float, help="success threshold (default: the run's own)")
    parser.add_argument("--json", type=Path, help="append one JSON line per run here")
    parser.add_argument("overrides", nargs="*", help="drlrun overrides")
    args = parser.parse_args()
    exe = shutil.which("drlrun") or str(Path(sys.executable).parent / "drlrun")
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda s: run_seed(exe, args.overrides, s, Path(tmp)), seeds))
    if args.json:
        with args.json.open("a") as f:
            for row in rows:
                f.write(json.dumps({"overrides": args.overrides, "jobs": args.jobs, **row}) + "\n")
    print(f"`drlrun {' '.join(args.overrides)}` ({args.jobs} at a time)\n")
    print("| seed | final_return_mean | best_return_mean | solved_at_step | train wall (s) | command wall (s) |")
    print("|---|---|---|---|---|---|")
    finals = []
    for s in rows:
        if s.get("status") == "failed":
            print(f"| {s['seed']} | failed | | | | {s['command_wall_seconds']:.1f} |")
            continue
        finals.append((s["final_return_mean"], args.threshold if args.threshold is not None else s["threshold"]))
        print(f"| {s['seed']} | {s['final_return_mean']:.1f} | {s['best_return_mean']:.1f} | {s['solved_at_step']} "
              f"| {s['wall_seconds']:.1f} | {s['command_wall_seconds']:.1f} |")
    if finals:
        passed = sum(1 for value, threshold in finals if threshold is not None and value >= threshold)
        print(f"\n{passed}/{len(rows)} seeds at or above the threshold; median final return "
              f"{median(v for v, _ in finals):.1f}")


if __name__ == "__main__":
    main()
