"""Resident memory of a whole training run: does it stay flat once the replay buffer is full?

    python benchmarks/memory_run.py                      # DQN, CartPole-v1, 1M steps, 100k buffer
    python benchmarks/memory_run.py --steps 200000 -- algo=sac env=Pendulum-v1

Runs ``drlrun`` as a user does, samples the process's VmRSS every ``--every`` seconds together
with the step it has logged, and prints the samples and the growth from the first sample after
the buffer filled to the end. A leak (per-step Python objects, a growing list of metrics, an
ever-growing TensorBoard queue) shows as steady growth after the fill.
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


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return None
    return None


def last_step(metrics: Path) -> int:
    if not metrics.exists():
        return 0
    with metrics.open("rb") as f:
        f.seek(max(0, metrics.stat().st_size - 4096))
        lines = f.read().decode(errors="replace").splitlines()
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--capacity", type=int, default=100_000, help="replay buffer capacity")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("overrides", nargs="*", default=["algo=dqn", "env=CartPole-v1"])
    args = parser.parse_args()
    exe = shutil.which("drlrun") or str(Path(sys.executable).parent / "drlrun")
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [exe, *args.overrides, f"total_steps={args.steps}", f"buffer.capacity={args.capacity}",
               "log.progress=false", f"hydra.run.dir={run_dir}"]
        print("$", " ".join(cmd[1:]))
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        samples: list[tuple[float, int, float]] = []
        start = time.perf_counter()
        while proc.poll() is None:
            rss = rss_mib(proc.pid)
            if rss:  # (None once it has exited; 0 in the instant after the fork)
                samples.append((time.perf_counter() - start, last_step(run_dir / "metrics.jsonl"), rss))
            time.sleep(args.every)
        if proc.returncode != 0:
            raise SystemExit(f"drlrun failed ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
    print("| seconds | step | RSS (MiB) |\n|---|---|---|")
    for seconds, step, rss in samples:
        print(f"| {seconds:.0f} | {step:,} | {rss:.1f} |")
    full = [s for s in samples if s[1] >= 2 * args.capacity]  # well past the fill
    if len(full) >= 2:
        growth = full[-1][2] - full[0][2]
        peak = max(s[2] for s in full) - full[0][2]
        print(f"\nfrom step {full[0][1]:,} to {full[-1][1]:,}: RSS {full[0][2]:.1f} -> {full[-1][2]:.1f} MiB "
              f"({growth:+.1f} MiB, peak {peak:+.1f} MiB above the first sample)")


if __name__ == "__main__":
    main()
