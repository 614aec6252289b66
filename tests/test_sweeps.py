"""Multirun: every job runs even when some fail or diverge, and the sweep ends with a summary."""

from __future__ import annotations

import json

import pytest

from drlrun import checkpoint

TINY = ("total_steps=400", "eval.interval=100", "eval.episodes=2", "log.interval=100",
        "algo.learning_starts=150", "algo.batch_size=16", "algo.train_freq=1")


def test_failed_and_diverged_jobs_are_recorded_and_the_others_still_run(cli, tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = cli("-m", "env.id=fake_envs:GuessEnv,fake_envs:NaNRewardEnv", "algo.lr=0.001,-1", *TINY,
                 f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 1, result.stderr  # the sweep finished, with failures
    assert "Traceback" not in result.stderr + result.stdout
    rows = json.loads((sweep_dir / "sweep_summary.json").read_text())
    statuses = {row["overrides"]: row["status"] for row in rows}
    assert statuses == {
        "env.id=fake_envs:GuessEnv algo.lr=0.001": "completed",
        "env.id=fake_envs:NaNRewardEnv algo.lr=0.001": "diverged",
        "env.id=fake_envs:GuessEnv algo.lr=-1": "failed",
        "env.id=fake_envs:NaNRewardEnv algo.lr=-1": "failed",
    }
    by_status = {row["status"]: row for row in rows}
    assert "algo.lr=-1.0" in by_status["failed"]["error"] and "diverged" in by_status["diverged"]["error"]
    assert by_status["completed"]["final_return_mean"] == 1.0
    assert "1 of 4 jobs completed" in result.stdout
    markdown = (sweep_dir / "sweep_summary.md").read_text()
    assert markdown.count("\n| ") == 4 and "| diverged |" in markdown  # 4 job rows below the header


def test_a_diverging_run_stops_keeps_its_last_good_checkpoint_and_says_so(cli, tmp_path):
    run_dir = tmp_path / "r"
    result = cli("env.id=fake_envs:NaNRewardEnv", *TINY, f"hydra.run.dir={run_dir}")
    assert result.returncode == 3
    assert "diverged at step 200" in result.stderr and "losses/td_loss=nan" in result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["total_steps"] == 200
    header, _state = checkpoint.load(run_dir / "checkpoints" / "latest.pt")
    assert header["step"] == 100  # saved at the evaluation before learning started, never after


def test_three_jobs_in_parallel_through_hydras_joblib_launcher(cli, tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1,2", "env.id=fake_envs:GuessEnv",
                 *TINY, f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr
    rows = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert [(row["overrides"], row["status"]) for row in rows] == [
        ("seed=0", "completed"), ("seed=1", "completed"), ("seed=2", "completed")]
    seeds = sorted(json.loads(p.read_text())["seed"] for p in sweep_dir.glob("*/summary.json"))
    assert seeds == [0, 1, 2]
    assert all(row["final_return_mean"] == 1.0 for row in rows)
    # each job reports in one line (parallel jobs' tables would interleave), the sweep in one table
    assert all(f"job {i}: dqn fake_envs.GuessEnv seed {i} completed" in result.stdout for i in range(3))
    assert "TensorBoard: tensorboard" not in result.stdout


def test_three_jobs_on_a_local_ray_through_hydras_ray_launcher(cli, tmp_path):
    pytest.importorskip("ray", reason="ray comes with pip install 'drlrun[ray]' (CI installs it)")
    sweep_dir = tmp_path / "sweep"
    # address=local: a Ray of the sweep's own, even where another Ray runs on this machine
    result = cli("-m", "hydra/launcher=ray", "hydra.launcher.ray.init.address=local",
                 "+hydra.launcher.ray.init.num_cpus=2", "seed=0,1,2",
                 "env.id=fake_envs:GuessEnv", *TINY, f"hydra.sweep.dir={sweep_dir}", timeout=600)
    assert result.returncode == 0, result.stderr
    rows = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert [(row["overrides"], row["status"], row["final_return_mean"]) for row in rows] == [
        ("seed=0", "completed", 1.0), ("seed=1", "completed", 1.0), ("seed=2", "completed", 1.0)]


def test_job_directory_names_stay_short_and_unique():
    from drlrun.envs import SLUG_MAX, slug

    assert slug("algo.lr=0.001,seed=1") == "algo.lr=0.001,seed=1"
    long_a = ",".join(f"algo.param{i}=0.{i}123456789" for i in range(20))
    long_b = long_a.replace("param19=0.19", "param19=0.29")
    assert len(slug(long_a)) == SLUG_MAX and slug(long_a) != slug(long_b)
    assert slug(long_a).startswith("algo.param0=0.0123456789,")
