"""`drlrun-report`: the statistics by hand, then the command on a fixture of fake runs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from drlrun import report
from drlrun.report import aggregate_curves, bootstrap_ci, iqm

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- statistics
def test_iqm_is_the_mean_of_the_middle_half():
    # n=8: cut int(0.25 * 8) = 2 from each end of sorted [1, 2, 3, 4, 6, 7, 8, 100]
    # -> mean of [3, 4, 6, 7] = 20 / 4 = 5. The outlier 100 is gone (the plain mean is 16.375).
    assert iqm([1, 2, 3, 4, 100, 6, 7, 8]) == 5.0
    # n=5: int(1.25) = 1 cut from each end of [1, 2, 3, 4, 50] -> mean of [2, 3, 4] = 3
    assert iqm([50, 1, 2, 3, 4]) == 3.0
    # n=3: int(0.75) = 0, nothing is cut: the IQM of fewer than 4 values is their mean
    assert iqm([1, 2, 9]) == 4.0
    assert np.isnan(iqm([]))


def test_bootstrap_ci_of_equal_values_is_that_value():
    # every resample of [7.5, 7.5, 7.5] has mean 7.5
    assert bootstrap_ci([7.5, 7.5, 7.5]) == (7.5, 7.5)
    # also for values whose sum rounds: 0.1 + 0.1 + 0.1 != 0.3 in floating point
    assert bootstrap_ci([0.1] * 3) == (0.1, 0.1)
    assert bootstrap_ci([42.0]) == (42.0, 42.0)


def test_bootstrap_ci_of_two_values_spans_both():
    # resamples of [a, b] are aa, ab, ba, bb: means a, (a+b)/2, b with probabilities 1/4, 1/2, 1/4.
    # The 2.5th percentile falls inside the lowest quarter (all a) and the 97.5th inside the
    # highest (all b), so the 95% interval is (a, b).
    assert bootstrap_ci([10.0, 30.0]) == (10.0, 30.0)
    # a 40% interval is the 30th..70th percentiles: both inside the middle half, (a + b) / 2
    assert bootstrap_ci([10.0, 30.0], confidence=0.4) == (20.0, 20.0)


def test_bootstrap_ci_of_three_values_is_min_max():
    # n=3: the lowest possible mean, a, needs all three draws to be a: probability 1/27 = 3.7%,
    # more than the 2.5% below the lower bound, so the lower bound is a (and the upper one c).
    assert bootstrap_ci([100.0, 200.0, 120.0]) == (100.0, 200.0)


def test_bootstrap_ci_of_four_values_by_counting_resamples():
    # n=4: 4^4 = 256 equally likely ordered resamples of [100, 120, 160, 200].
    # Lowest means: 100 (all four 100: 1 way), 105 (three 100 + one 120: 4 ways), then 110 (two
    # 100 + two 120: 6 ways). P(mean <= 105) = 5/256 = 2.0% < 2.5% < P(mean <= 110) = 11/256 =
    # 4.3%, so the 2.5th percentile is 110. Highest: 200 (1 way), 190 (three 200 + one 160: 4
    # ways), then 180 (three 200 + one 120: 4 ways, two 200 + two 160: 6 ways).
    # P(mean >= 190) = 5/256 < 2.5% < P(mean >= 180) = 15/256, so the 97.5th percentile is 180.
    values = [100.0, 200.0, 120.0, 160.0]
    assert bootstrap_ci(values) == (110.0, 180.0)
    # 10,000 resamples estimate those probabilities closely enough for any seed
    assert bootstrap_ci(values, seed=1) == (110.0, 180.0)
    assert all(np.isnan(bootstrap_ci([])))  # no values, no interval
    with pytest.raises(ValueError):
        bootstrap_ci(values, confidence=95)  # a fraction, not a percentage


def test_bootstrap_ci_is_reproducible():
    # a fixed seed: the report prints the same numbers every time it is run
    values = [3.1, 4.1, 5.9, 2.6, 5.3, 5.8, 9.7]
    assert bootstrap_ci(values) == bootstrap_ci(values)
    assert bootstrap_ci(values, seed=1) != bootstrap_ci(values)


def test_aggregate_curves_averages_only_the_runs_that_reached_x():
    # run 1 goes on to x=10, run 2 stops at x=5 (early stop, or still running)
    band = aggregate_curves([([0, 10], [0, 10]), ([0, 5], [10, 20])])
    # grid: the union of both runs' x
    assert band.x.tolist() == [0, 5, 10]
    # x=0: (0 + 10) / 2 = 5; x=5: run 1 interpolated to 5, run 2 is 20 -> 12.5;
    # x=10: only run 1 has got there (run 2 is not extrapolated) -> 10
    assert band.mean.tolist() == [5.0, 12.5, 10.0]
    assert band.count.tolist() == [2, 2, 1]
    # two runs: the interval spans both values (see above); one run: just its value
    assert band.low.tolist() == [0.0, 5.0, 10.0]
    assert band.high.tolist() == [10.0, 20.0, 10.0]


def test_groups_are_labelled_by_what_tells_them_apart():
    def run(seed: int, **config: object) -> report.RunRecord:
        # seed and log.* differ between all runs: neither makes a new group
        flat = {"seed": seed, "log.interval": 100 * seed, "env.id": "CartPole-v1", **config}
        return report.RunRecord(Path(f"run{seed}"), flat, {"status": "completed"}, [])

    dqn = {"algo.name": "dqn", "algo.double": True}
    groups = report.group_runs([run(0, **dqn, **{"algo.lr": 0.001}),
                                run(1, **dqn, **{"algo.lr": 0.001}),  # the same, another seed
                                run(2, **dqn, **{"algo.lr": 0.01}),
                                run(3, **{"algo.name": "ppo", "algo.lr": 0.0003, "algo.clip": 0.2})])
    assert [len(g.runs) for g in groups] == [2, 1, 1]
    # algo.double and algo.clip differ too, but only because the algorithm does: left out.
    # algo.lr varies between the dqn groups, so it stays. env.id is the same everywhere.
    assert [g.label for g in groups] == ["algo=dqn algo.lr=0.001", "algo=dqn algo.lr=0.01",
                                         "algo=ppo algo.lr=0.0003"]
    # one group: named by algorithm and environment
    assert [g.label for g in report.group_runs([run(0, **dqn), run(1, **dqn)])] == [
        "dqn CartPole-v1"]


# --------------------------------------------------------------------------- a fixture of runs
def config(lr: float, seed: int, **top: object) -> dict:
    """A composed config like the one Hydra saves in .hydra/config.yaml."""
    cfg = {
        "algo": {"name": "dqn", "lr": lr, "gamma": 0.99, "batch_size": 64},
        "env": {"id": "CartPole-v1", "num_envs": 1, "threshold": None},
        "network": {"name": "mlp", "hidden_sizes": [64, 64], "activation": "relu"},
        "buffer": {"name": "uniform", "capacity": 10000},
        "seed": seed, "device": "cpu", "total_steps": 4000, "torch_threads": 1, "debug": False,
        "eval": {"interval": 1000, "episodes": 10, "deterministic": True, "early_stop": True,
                 "target_return": 90.0},
        "checkpoint": {"interval": 0, "save_best": True, "enabled": True},
        "log": {"interval": 1000, "progress": True, "tensorboard": True},
    }
    cfg.update(top)
    return cfg


def write_run(run_dir: Path, cfg: dict, returns: list[float], seconds_per_eval: float, *,
              status: str | None = "completed", error: str | None = None, machine: dict | None = None) -> None:
    """A run directory: evaluations every 1000 steps taking ``seconds_per_eval`` training
    seconds each; ``status=None`` leaves out summary.json (a run still going)."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    overrides = [f"algo.lr={cfg['algo']['lr']}", f"seed={cfg['seed']}"]
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    lines, solved_step, solved_seconds = [], None, None
    for i, value in enumerate(returns, start=1):
        step, seconds = 1000 * i, seconds_per_eval * i
        lines.append(json.dumps({"step": step - 500, "wall_time": seconds - 0.5,
                                 "charts/episodic_return": value / 2, "charts/SPS": 450.0}))
        lines.append(json.dumps({"step": step, "wall_time": seconds + 0.1,
                                 "eval/return_mean": value, "eval/return_std": 5.0,
                                 "eval/length_mean": value, "eval/train_seconds": seconds}))
        if value >= 90 and solved_step is None:
            solved_step, solved_seconds = step, seconds
    text = "\n".join(lines) + "\n"
    if status is None:
        text += '{"step": 2500, "wall_ti'  # a live run is writing its next line
    (run_dir / "metrics.jsonl").write_text(text)
    if status is None:
        return
    steps, train_seconds = 1000 * len(returns), seconds_per_eval * len(returns)
    summary = {"algo": "dqn", "env": "CartPole-v1", "seed": cfg["seed"], "status": status,
               "early_stopped": steps < 4000, "total_steps": steps,
               "wall_seconds": train_seconds + 1, "train_seconds": train_seconds,
               "train_steps_per_second": round(steps / train_seconds, 1),
               "final_return_mean": returns[-1] if status == "completed" else None,
               "final_eval_step": steps, "threshold": 90.0, "solved_at_step": solved_step,
               "solved_at_seconds": solved_seconds, "device": "cpu", "run_dir": str(run_dir)}
    if error:
        summary["error"] = error
    summary.update(machine or {})
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    """Two configurations of DQN (algo.lr 0.001 and 0.01), threshold 90, early stop on.

    lr=0.001, a sweep (outputs/multirun/...), 4 completed seeds + 1 failed:
      seed  eval returns          s/eval  final  solved at (first eval >= 90)  train steps/s
      0     10, 40, 80, 100       2.0     100    step 4000, 8.0 s              4000/8.0 = 500
      1     20, 60, 200           2.5     200    step 3000, 7.5 s              3000/7.5 = 400
      2     50, 120               2.5     120    step 2000, 5.0 s              2000/5.0 = 400
      3     30, 70, 85, 160       1.75    160    step 4000, 7.0 s              4000/7.0 = 571.4
      4     5                     -       failed (error), not in the statistics
      mean (100 + 200 + 120 + 160) / 4 = 145; 95% CI (110, 180) (counted in the test of
      bootstrap_ci above); IQM: sorted [100, 120, 160, 200], cut 1 from
      each end -> (120 + 160) / 2 = 140; success 4/4; median time to solve of [8, 7.5, 5, 7]
      = (7 + 7.5) / 2 = 7.25 s; median train steps/s (400 + 500) / 2 = 450.
      Seed 3 ran with other log/checkpoint/torch_threads settings: still the same group.
    lr=0.01, single runs (outputs/2026-11-24/...), 2 completed seeds + 1 running:
      0     10, 30, 40, 50        2.0     50     never                         500
      1     20, 50, 60, 70        2.5     70     never                         400
      2     30, 45 (no summary)   2.0     running
      mean 60; CI: two values -> (50, 70); IQM of 2 values = mean = 60; success 0/2.
    """
    sweep = tmp_path / "outputs" / "multirun" / "2026-11-24" / "10-00-00"
    for job, (seed, returns, seconds) in enumerate([(0, [10, 40, 80, 100], 2.0),
                                                    (1, [20, 60, 200], 2.5),
                                                    (2, [50, 120], 2.5)]):
        write_run(sweep / f"{job}_algo.lr=0.001,seed={seed}", config(0.001, seed), returns, seconds)
    quiet = config(0.001, 3, torch_threads=2, log={"interval": 500, "progress": False,
                                                   "tensorboard": False},
                   checkpoint={"interval": 0, "save_best": False, "enabled": False})
    write_run(sweep / "3_algo.lr=0.001,seed=3", quiet, [30, 70, 85, 160], 1.75)
    write_run(sweep / "4_algo.lr=0.001,seed=4", config(0.001, 4), [5], 1.0, status="failed",
              error="RuntimeError: CUDA out of memory")
    (sweep / "multirun.yaml").write_text("hydra: {mode: MULTIRUN}\n")
    singles = tmp_path / "outputs" / "2026-11-24"
    for seed, returns, seconds in [(0, [10, 30, 40, 50], 2.0), (1, [20, 50, 60, 70], 2.5)]:
        write_run(singles / f"11-00-0{seed}_dqn_CartPole-v1_seed{seed}", config(0.01, seed),
                  returns, seconds)
    write_run(singles / "11-00-02_dqn_CartPole-v1_seed2", config(0.01, 2), [30, 45], 2.0,
              status=None)
    return tmp_path / "outputs"


def drlrun_report(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user would type it."""
    script = Path(sys.executable).parent / "drlrun-report"
    assert script.exists(), "install with: pip install -e '.[dev]'"
    return subprocess.run([str(script), *map(str, args)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "200"})


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as f:
        return {row["group"]: row for row in csv.DictReader(f)}


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, the first after the 8-byte signature:
    4 bytes length, b'IHDR', then width and height as big-endian uint32."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_report_on_a_sweep_and_single_runs(outputs):
    result = drlrun_report(outputs / "multirun" / "2026-11-24" / "10-00-00",
                           outputs / "2026-11-24")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr

    # written next to the runs: the common parent of the two paths
    rows = read_csv(outputs / "report.csv")
    # the groups are labelled by the one key that differs between them
    assert list(rows) == ["algo.lr=0.001", "algo.lr=0.01"]
    a, b = rows["algo.lr=0.001"], rows["algo.lr=0.01"]
    assert (a["algo"], a["env"], a["algo.lr"]) == ("dqn", "CartPole-v1", "0.001")
    assert (a["seeds"], a["failed"], a["running"]) == ("4", "1", "0")
    assert (b["seeds"], b["failed"], b["running"]) == ("2", "0", "1")

    assert float(a["final_return_mean"]) == pytest.approx(145.0)
    assert float(a["iqm"]) == pytest.approx(140.0)
    # worked out in test_bootstrap_ci_of_four_values_by_counting_resamples
    assert (float(a["ci95_low"]), float(a["ci95_high"])) == (110.0, 180.0)
    assert (a["threshold"], a["successes"], a["success_rate"]) == ("90.0", "4", "1.0")
    assert (a["solved"], float(a["median_seconds_to_solve"])) == ("4", 7.25)
    assert float(a["median_train_steps_per_second"]) == pytest.approx(450.0)

    assert float(b["final_return_mean"]) == pytest.approx(60.0)
    assert (float(b["ci95_low"]), float(b["ci95_high"])) == (50.0, 70.0)
    assert float(b["iqm"]) == pytest.approx(60.0)
    assert (b["successes"], b["success_rate"], b["solved"]) == ("0", "0.0", "0")
    assert b["median_seconds_to_solve"] == ""  # nothing solved: no median

    md = (outputs / "report.md").read_text()
    assert "| group | seeds |" in md and "|---|" in md
    assert "| algo.lr=0.001 | 4 (+1 failed) | 145 | [110, 180] | 140 |" in md
    assert "| algo.lr=0.01 | 2 (+1 running) | 60 | [50, 70] |" in md
    # the runs left out of the statistics, with their status and error
    assert "RuntimeError: CUDA out of memory" in md and "| failed |" in md
    assert "| running | 45 at step 2,000 |" in md
    assert "RuntimeError: CUDA out of memory" in result.stdout

    pngs = ["curve_algo.lr=0.001.png", "curve_algo.lr=0.01.png", "curves.png"]
    assert sorted(p.name for p in outputs.glob("*.png")) == pngs
    for name in pngs:
        path = outputs / name
        width, height = png_size(path)
        assert 300 <= width <= 4000 and 300 <= height <= 4000, (name, width, height)
        assert path.stat().st_size > 10_000, name
        assert f"]({name})" in md


def test_threshold_and_time_axis_options(outputs, tmp_path):
    # --threshold 110 replaces each run's 90. lr=0.001 finals >= 110: 200, 120, 160 -> 3 of 4;
    # first evals >= 110: seed 1 at 7.5 s, seed 2 at 5.0 s, seed 3 at 7.0 s -> median 7.0 s
    out = tmp_path / "elsewhere"
    code = report.main([str(outputs / "multirun"), "--threshold", "110", "--x", "time",
                        "--out", str(out)])
    assert code == 0
    # one configuration: labelled by algo and env
    rows = read_csv(out / "report.csv")
    assert list(rows) == ["dqn CartPole-v1"]
    row = rows["dqn CartPole-v1"]
    assert (row["threshold"], row["successes"], row["success_rate"]) == ("110.0", "3", "0.75")
    assert (row["solved"], row["median_seconds_to_solve"]) == ("3", "7.0")
    # one group: its curve, no combined plot
    assert sorted(p.name for p in out.glob("*.png")) == ["curve_dqn_CartPole-v1.png"]


def test_without_matplotlib_the_tables_are_still_written(outputs, tmp_path, monkeypatch, capsys):
    # None in sys.modules makes `import matplotlib...` raise ImportError, as if not installed
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    out = tmp_path / "no-plots"
    assert report.main([str(outputs), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.csv", "report.md"]
    assert "pip install 'drlrun[report]'" in capsys.readouterr().out


def test_a_missing_path_is_named_without_a_traceback(tmp_path):
    missing = tmp_path / "outputs" / "no-such-sweep"
    result = drlrun_report(missing)
    assert result.returncode == 2
    assert str(missing) in result.stderr.replace("\n", "")
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_directory_without_runs_says_what_a_run_directory_holds(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    result = drlrun_report(tmp_path / "empty")
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "No runs found" in message and "empty" in message
    assert "summary.json" in message and "metrics.jsonl" in message
    assert "Traceback" not in result.stderr


def test_runs_on_another_cpu_or_numeric_path_are_reported_apart(tmp_path):
    # The same seeds follow other trajectories on another numeric path: never one group.
    for path, finals in (("AVX512", [100.0, 110.0]), ("DEFAULT, MKL SSE4_2", [50.0, 70.0])):
        for seed, final in enumerate(finals):
            write_run(tmp_path / path.split(",")[0] / f"seed{seed}", config(0.001, seed), [final], 1.0,
                      machine={"cpu": "Intel(R) Xeon(R) Processor", "numeric_path": path})
    out = tmp_path / "report"
    assert report.main([str(tmp_path), "--out", str(out)]) == 0
    rows = read_csv(out / "report.csv")
    assert sorted(rows) == ["machine.numeric_path=AVX512", "machine.numeric_path=DEFAULT, MKL SSE4_2"]
    assert float(rows["machine.numeric_path=AVX512"]["final_return_mean"]) == pytest.approx(105.0)
    md = (out / "report.md").read_text()
    assert ("Measured on: Intel(R) Xeon(R) Processor (AVX512); Intel(R) Xeon(R) Processor (DEFAULT, MKL SSE4_2)"
            in md)
