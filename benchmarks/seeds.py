"""Run one drlrun configuration over several seeds and print a markdown table.

    python benchmarks/seeds.py --seeds 0,1,2,3,4 -- algo=dqn env=CartPole-v1

Each run is the `drlrun` command a user types, timed as a whole (start-up included), one after
another so that runs do not compete for the cores. Results are also written as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--json", type=Path, help="append one JSON line per run here")
    parser.add_argument("overrides", nargs="*", help="drlrun overrides")
    args = parser.parse_args()
    exe = shutil.which("drlrun") or str(Path(sys.executable).parent / "drlrun")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            run_dir = Path(tmp) / f"seed{seed}"
            cmd = [exe, *args.overrides, f"seed={seed}", "log.progress=false", f"hydra.run.dir={run_dir}"]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                raise SystemExit(f"seed {seed} failed")
            summary = json.loads((run_dir / "summary.json").read_text())
            summary["command_wall_seconds"] = round(wall, 2)
            rows.append(summary)
            if args.json:
                with args.json.open("a") as f:
                    f.write(json.dumps({"overrides": args.overrides, **summary}) + "\n")
    print("| seed | final_return_mean | best_return_mean | solved_at_step | train wall (s) | command wall (s) |")
    print("|---|---|---|---|---|---|")
    for s in rows:
        print(f"| {s['seed']} | {s['final_return_mean']:.1f} | {s['best_return_mean']:.1f} | {s['solved_at_step']} "
              f"| {s['wall_seconds']:.1f} | {s['command_wall_seconds']:.1f} |")


if __name__ == "__main__":
    main()
