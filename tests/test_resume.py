"""Resume, crash safety and determinism.

A ``latest`` checkpoint cuts nothing: it records the episodes in flight, and a resumed run
rebuilds them by resetting each env with its episode's seed and replaying the actions taken. So
it must continue *exactly* as the run that never stopped: the same metrics rows (wall-clock
fields aside), the same final evaluation. Every installed algorithm is a case (``components.py``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from components import cases
from conftest import drlrun_executable, run_cli
from test_config import settings as config_settings

from drlrun import checkpoint
from drlrun.build import resume_settings
from drlrun.errors import DrlrunError
from drlrun.runner import Run, train

WALL_CLOCK = ("wall_time", "charts/SPS", "eval/train_seconds")  # the only fields that may differ

# Small budgets that still cross several checkpoints, learning updates and episode ends.
CASES = cases({
    "dqn": ("algo=dqn", "env=CartPole-v1", "total_steps=2400", "algo.learning_starts=500", "algo.train_freq=4",
            "algo.gradient_steps=1", "algo.target_update_interval=200", "buffer.capacity=2000", "env.num_envs=2",
            "network.hidden_sizes=[64,64]"),
    "ppo": ("algo=ppo", "env=CartPole-v1", "total_steps=3000", "env.num_envs=4", "algo.n_steps=64"),
    "a2c": ("algo=a2c", "env=CartPole-v1", "total_steps=3000"),
    "reinforce": ("algo=reinforce", "env=CartPole-v1", "total_steps=3000", "algo.baseline=true"),
    "sac": ("algo=sac", "env=Pendulum-v1", "total_steps=1200", "algo.learning_starts=300", "algo.batch_size=32",
            "network.hidden_sizes=[32,32]", "algo.n_step=3"),
    "td3": ("algo=td3", "env=Pendulum-v1", "total_steps=1200", "algo.learning_starts=300", "algo.batch_size=32",
            "network.hidden_sizes=[32,32]"),
    "ppo_normalized": ("algo=ppo", "env=Pendulum-v1", "total_steps=3000", "env.num_envs=2", "algo.n_steps=128",
                       "algo.normalize_obs=true", "algo.normalize_reward=true", "algo.anneal_lr=true"),
    # gSDE: the exploration matrices held across a checkpoint must travel with it
    "ppo_sde": ("algo=ppo", "env=Pendulum-v1", "total_steps=3000", "env.num_envs=2", "algo.n_steps=128",
                "algo.use_sde=true", "algo.sde_sample_freq=50"),
    "ddpg": ("algo=ddpg", "env=Pendulum-v1", "total_steps=1200", "algo.learning_starts=300", "algo.batch_size=32",
             "network.hidden_sizes=[32,32]", "buffer=prioritized"),
}, total_steps=3000)
COMMON = ("eval.interval=1000", "eval.episodes=2", "checkpoint.interval=400", "log.interval=200",
          "log.progress=false", "device=cpu")


def settings(*overrides: str):
    return config_settings(*COMMON, *overrides)


def metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in WALL_CLOCK} for row in rows]


def final(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    return {k: summary[k] for k in ("status", "total_steps", "episodes", "final_return_mean", "best_return_mean",
                                    "solved_at_step")}


class Crash(Exception):
    """Stands in for a kill right after a checkpoint."""


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_run_stopped_after_a_checkpoint_resumes_exactly(tmp_path, monkeypatch, case):
    cfg = settings(*CASES[case])
    train(cfg, tmp_path / "whole", progress=False)

    saves = {"n": 0}
    real_save = Run.save_checkpoint

    def save_then_crash(self, name, **kwargs):
        real_save(self, name, **kwargs)
        if name == "latest":
            saves["n"] += 1
            if saves["n"] == 3:  # the third 'latest': mid-run, with a filled buffer
                raise Crash

    monkeypatch.setattr(Run, "save_checkpoint", save_then_crash)
    with pytest.raises(Crash):
        train(cfg, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(Run, "save_checkpoint", real_save)
    assert json.loads((tmp_path / "resumed" / "summary.json").read_text())["status"] == "failed"

    resumed_cfg, loaded = resume_settings(tmp_path / "resumed", [])
    assert loaded[0]["step"] < cfg.total_steps
    summary = train(resumed_cfg, tmp_path / "resumed", progress=False, resume=loaded)
    assert summary["resumes"] == 1
    assert metrics(tmp_path / "resumed") == metrics(tmp_path / "whole")
    assert final(tmp_path / "resumed") == final(tmp_path / "whole")


def test_the_same_seed_twice_gives_identical_metrics_files(tmp_path):
    for case in ("dqn", "ppo", "sac"):
        cfg = settings(*CASES[case])
        train(cfg, tmp_path / f"{case}1", progress=False)
        train(cfg, tmp_path / f"{case}2", progress=False)
        assert metrics(tmp_path / f"{case}1") == metrics(tmp_path / f"{case}2")
        other = settings(*CASES[case], "seed=1")
        train(other, tmp_path / f"{case}3", progress=False)
        assert metrics(tmp_path / f"{case}3") != metrics(tmp_path / f"{case}1")  # the seed matters


def test_extending_a_finished_run_continues_its_curve(tmp_path):
    cfg = settings(*CASES["ppo"])
    train(cfg, tmp_path, progress=False)
    with pytest.raises(DrlrunError, match="already reached step 3,000 of total_steps=3,000"):
        resume_settings(tmp_path, [])
    with pytest.raises(DrlrunError, match=r"'algo\.lr' cannot change when resuming"):
        resume_settings(tmp_path, ["algo.lr=0.1"])
    longer, loaded = resume_settings(tmp_path, ["resume=x", "total_steps=4000"])
    summary = train(longer, tmp_path, progress=False, resume=loaded)
    assert summary["total_steps"] == 4000 and summary["resumes"] == 1
    steps = [row["step"] for row in metrics(tmp_path) if "eval/return_mean" in row]
    assert steps == [1000, 2000, 3000, 4000]  # one curve, no step twice


def test_without_the_buffer_an_off_policy_run_refills_before_learning(tmp_path, monkeypatch):
    cfg = settings(*CASES["dqn"], "checkpoint.buffer=false", "total_steps=2000")
    train(cfg, tmp_path, progress=False)
    _, state = checkpoint.load(tmp_path / "checkpoints" / "latest.pt")
    assert "buffer" not in state["agent"]
    longer, loaded = resume_settings(tmp_path, ["total_steps=3000"])
    run = Run(longer, tmp_path)
    try:
        run.restore(tmp_path / "checkpoints" / "latest.pt", *loaded)
        agent = run.agent
        assert len(agent.buffer) == 0 and agent.refill_until == agent.steps + 500
        updates = agent.n_updates
        agent.steps += 400  # still refilling: no gradient step from a near-empty buffer
        agent.update()
        assert agent.n_updates == updates
    finally:
        run.close()


def test_a_checkpoint_of_another_algorithm_or_network_is_refused_naming_both(tmp_path):
    train(settings(*CASES["ppo"], "total_steps=1000"), tmp_path / "ppo", progress=False)
    header, state = checkpoint.load(tmp_path / "ppo" / "checkpoints" / "latest.pt")
    for overrides, words in ((CASES["dqn"], ("algo='ppo'", "algo='dqn'")),
                             ((*CASES["ppo"], "network.hidden_sizes=[8]"), ("network_config", "[8]", "[64, 64]"))):
        run = Run(settings(*overrides), tmp_path / "other")
        try:
            with pytest.raises(DrlrunError) as info:
                run.restore(tmp_path / "ppo" / "checkpoints" / "latest.pt", header, state)
        finally:
            run.close()
        assert all(word in str(info.value) for word in words), str(info.value)


# ---------------------------------------------------------------------------- real processes
KILL_RUN = ("algo=dqn", "env=CartPole-v1", "total_steps=16000", "algo.learning_starts=1000", "eval.interval=4000",
            "eval.episodes=2", "checkpoint.interval=1000", "log.progress=false", "device=cpu")


def tensorboard_points(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    return [(e.step, round(e.value, 6)) for e in events.Scalars(tag)]


def wait_for_new_checkpoint(path: Path, after: float, proc: subprocess.Popen, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.stat().st_mtime > after:
            return True
        time.sleep(0.02)
    return False


def test_kill_9_at_random_points_then_resume_ends_as_the_uninterrupted_run(tmp_path):
    exe = drlrun_executable()
    whole = run_cli(*KILL_RUN, f"hydra.run.dir={tmp_path / 'whole'}", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr

    run_dir = tmp_path / "killed"
    latest = run_dir / "checkpoints" / "latest.pt"
    rng = random.Random(7)
    cmd = [exe, *KILL_RUN, f"hydra.run.dir={run_dir}"]
    kills = 0
    for _ in range(3):
        started = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait_for_new_checkpoint(latest, started, proc):
            time.sleep(rng.uniform(0.0, 0.4))  # somewhere between two checkpoints, or inside a write
        proc.kill()
        proc.wait()
        if proc.returncode == -signal.SIGKILL:
            kills += 1
            header, _ = checkpoint.load(latest)  # the last complete checkpoint always loads
            assert header["step"] % 1000 == 0
        cmd = [exe, f"resume={run_dir}"]
    assert kills >= 2
    resumed = run_cli(f"resume={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert not list(run_dir.rglob(".*.tmp"))  # no temp file of an interrupted write stays behind
    assert metrics(run_dir) == metrics(tmp_path / "whole")
    assert final(run_dir) == final(tmp_path / "whole")
    # TensorBoard too: what the killed processes logged after their checkpoints is purged
    for tag in ("eval/return_mean", "losses/td_loss", "charts/episodic_return"):
        assert tensorboard_points(run_dir, tag) == tensorboard_points(tmp_path / "whole", tag), tag
    assert (run_dir / ".hydra" / "overrides.yaml").read_text().count("total_steps=16000") == 1  # record kept


@pytest.mark.parametrize(("signum", "code", "vectorization"),
                         [(signal.SIGTERM, 143, "sync"), (signal.SIGINT, 130, "sync"), (signal.SIGINT, 130, "async")])
def test_sigterm_and_ctrl_c_save_a_checkpoint_and_say_how_to_resume(tmp_path, signum, code, vectorization):
    run_dir = tmp_path / "run"
    started = time.time()
    proc = subprocess.Popen([drlrun_executable(), *KILL_RUN, f"env.vectorization={vectorization}",
                             f"hydra.run.dir={run_dir}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert wait_for_new_checkpoint(run_dir / "checkpoints" / "latest.pt", started, proc)
    os.killpg(proc.pid, signum)  # to the whole process group, as a terminal's Ctrl-C (async env workers too)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"drlrun resume={run_dir}" in err and "Traceback" not in err
    summary = json.loads((run_dir / "summary.json").read_text())
    header, _ = checkpoint.load(run_dir / "checkpoints" / "latest.pt")
    assert summary["status"] == "interrupted" and header["step"] == summary["total_steps"] < 16000
    resumed = run_cli(f"resume={run_dir}", "total_steps=17000", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    done = json.loads((run_dir / "summary.json").read_text())
    assert done["status"] == "completed" and done["total_steps"] == 17000 and done["resumes"] == 1


class WritesAFile:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_malicious_checkpoint_is_refused_and_never_run(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("")
    evidence = tmp_path / "pwned"
    payload = {"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "header": {"step": 0},
               "state": {"agent": WritesAFile(str(evidence))}}
    torch.save(payload, run_dir / "checkpoints" / "latest.pt")
    result = run_cli(f"resume={run_dir}", cwd=tmp_path)
    assert result.returncode == 2 and "pickled Python objects" in result.stderr
    assert "Traceback" not in result.stderr
    assert not evidence.exists()
