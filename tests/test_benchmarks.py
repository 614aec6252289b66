"""benchmarks/vs_sb3.py: both sides get the same hyperparameters, and every task runs; and what
benchmarks/floor.py counts as each task's unavoidable work."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from functools import reduce
from pathlib import Path

import pytest
from test_config import settings

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "vs_sb3.py"

_spec = importlib.util.spec_from_file_location("vs_sb3", SCRIPT)
assert _spec is not None and _spec.loader is not None
vs_sb3 = importlib.util.module_from_spec(_spec)
sys.modules["vs_sb3"] = vs_sb3  # dataclasses look their module up while the class is created
_spec.loader.exec_module(vs_sb3)


def lookup(obj, dotted: str):
    return reduce(getattr, dotted.split("."), obj)


def sb3_lookup(kwargs: dict, dotted: str):
    """A value of the SB3 keyword arguments; a dotted key is a nested dict."""
    return reduce(lambda d, key: d[key], dotted.split("."), kwargs)


@pytest.mark.parametrize("name", list(vs_sb3.TASKS))
def test_drlrun_side_runs_exactly_the_printed_overrides(name):
    """Composing the printed command line (presets included) gives every value of the table."""
    task = vs_sb3.TASKS[name]
    s = settings(*task.drlrun_overrides())
    assert (s.algo.name, s.env.id, s.total_steps) == (task.algo, task.gym_id, task.total_steps)
    for hp in task.hps:
        value = lookup(s, hp.drlrun)
        assert value == pytest.approx(hp.value) if isinstance(hp.value, float) else value == hp.value, hp.drlrun
    assert s.checkpoint.enabled is False and s.eval.episodes == vs_sb3.EVAL_EPISODES


@pytest.mark.parametrize("name", list(vs_sb3.TASKS))
def test_sb3_side_gets_the_same_values(name):
    task = vs_sb3.TASKS[name]
    s = settings(*task.drlrun_overrides())
    kwargs = task.sb3_kwargs()
    for hp in task.hps:
        pair = hp.sb3_pair()
        if pair is None:
            continue
        key, expected = pair
        assert sb3_lookup(kwargs, key) is expected or sb3_lookup(kwargs, key) == expected, key
    assert kwargs["n_envs"] == s.env.num_envs
    lr = kwargs["learning_rate"]
    if callable(lr):  # a linear schedule on the SB3 side is drlrun's anneal_lr
        assert s.algo.anneal_lr and lr(1.0) == pytest.approx(s.algo.lr) and lr(0.0) == 0.0
        assert lr(0.5) == pytest.approx(s.algo.lr / 2)
    else:
        assert lr == pytest.approx(s.algo.lr) and not getattr(s.algo, "anneal_lr", False)
    if "clip_range" in kwargs:
        clip = kwargs["clip_range"]
        assert (clip(1.0) if callable(clip) else clip) == pytest.approx(s.algo.clip_range)
        assert callable(clip) == s.algo.anneal_clip
    if "gamma" in kwargs:
        assert kwargs["gamma"] == pytest.approx(s.algo.gamma)
    arch = kwargs["policy_kwargs"]["net_arch"]
    assert arch == s.network.hidden_sizes


def test_frames_task_gives_sb3_drlruns_torso_on_channels_first_frames():
    """SB3's side of dqn_minatar_breakout: drlrun's cnn torso for the same settings (same feature
    width, so net_arch adds the same hidden layer) on the frames moved channels first, as 0/1."""
    import gymnasium as gym
    import numpy as np

    from drlrun.envs import register_namespace
    from drlrun.nets import FrameEncoder

    task = vs_sb3.TASKS["dqn_minatar_breakout"]
    s = settings(*task.drlrun_overrides())
    assert s.network.name == "cnn" and task.sb3_policy == "CnnPolicy"
    register_namespace(task.gym_id)
    env = vs_sb3.channels_first_wrapper()(gym.make(task.gym_id))
    raw, _ = env.unwrapped.reset(seed=3)
    obs, _ = env.reset(seed=3)
    assert env.observation_space.shape == (4, 10, 10) and env.observation_space.high.max() == 1
    assert obs.dtype == np.uint8 and np.array_equal(obs, raw.transpose(2, 0, 1))
    if importlib.util.find_spec("stable_baselines3") is None:
        return  # the extractor itself needs SB3 (pip install 'drlrun[bench]')
    extractor = vs_sb3.frames_cnn_class()(env.observation_space, **task.sb3_kwargs()["policy_kwargs"]
                                          ["features_extractor_kwargs"])
    assert extractor.features_dim == FrameEncoder(s.network, (10, 10, 4), np.bool_).out_dim == 16 * 8 * 8


def test_smoke_run_shrinks_rollouts_to_fit_and_says_so():
    task = vs_sb3.TASKS["ppo_lunar"].resized(300)
    s = settings(*task.drlrun_overrides())
    assert s.total_steps == 300 and s.algo.n_steps * s.env.num_envs <= 300
    assert task.sb3_kwargs()["n_steps"] == s.algo.n_steps and task.sb3_kwargs()["batch_size"] == s.algo.batch_size
    assert s.eval.interval == 300  # one evaluation, at the end


def run_script(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)


def test_every_task_runs_a_few_hundred_steps(tmp_path):
    out = tmp_path / "rows.jsonl"
    proc = run_script("--steps", "300", "--seeds", "1", "--sides", "drlrun", "--json", str(out), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["task"] for row in rows] == list(vs_sb3.TASKS)
    for row in rows:
        assert row["total_steps"] == 300 and row["drlrun_sps"] > 0
        assert isinstance(row["drlrun_return"], float)
        assert row["drlrun_overrides"][:2] == [f"algo={vs_sb3.TASKS[row['task']].algo}",
                                               f"env={vs_sb3.TASKS[row['task']].env}"]
    assert "| ppo_cartpole |" in proc.stdout and "drlrun steps/s" in proc.stdout


@pytest.mark.skipif(importlib.util.find_spec("stable_baselines3") is None,
                    reason="stable-baselines3 is a benchmark-only extra (pip install 'drlrun[bench]'); "
                           "CI installs only [dev], so this side-by-side smoke run is for a benchmark machine")
def test_both_sides_run_when_sb3_is_installed(tmp_path):
    out = tmp_path / "rows.jsonl"
    proc = run_script("--steps", "300", "--seeds", "1", "--tasks", "ppo_cartpole", "--json", str(out),
                      tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(out.read_text())
    assert row["sb3_sps"] > 0 and row["ratio"] == pytest.approx(row["drlrun_sps"] / row["sb3_sps"], rel=0.01)


def test_unknown_task_is_refused_with_the_choices(tmp_path):
    proc = run_script("--tasks", "ppo_pong", tmp_path=tmp_path)
    assert proc.returncode != 0
    assert "ppo_pong" in proc.stderr and "ppo_cartpole" in proc.stderr


# --------------------------------------------------------------------------- benchmarks/floor.py
_floor_spec = importlib.util.spec_from_file_location("floor", ROOT / "benchmarks" / "floor.py")
assert _floor_spec is not None and _floor_spec.loader is not None
floor = importlib.util.module_from_spec(_floor_spec)
sys.modules["floor"] = floor
_floor_spec.loader.exec_module(floor)


def count(mms, shape: tuple[int, int, int]) -> int:
    """Matmuls of ``shape`` (in any orientation), a stacked pair counting twice."""
    return sum(mm.members for mm in mms if sorted((mm.rows, mm.inner, mm.cols)) == sorted(shape))


def test_floor_counts_the_matmuls_worked_out_by_hand():
    # SAC, 256x256 networks, batch 256: pi(s') (1), twin target critics (2), twin critics forward,
    # weight and input gradients (6), actor forward, weight and input gradients (3), twin critics
    # forward and input gradients for the actor loss (4): 16 matmuls of 256x256x256.
    mms, steps = floor.step_matmuls(vs_sb3.TASKS["sac_pendulum"])
    assert count(mms, (256, 256, 256)) == 16 and steps == 1 + 20_000 - 100
    # DQN, batch 64: online forward, weight and input gradients, target forward of the 256x256 layer;
    # a round at learning_starts (1k), then (50k - 1k) // train_freq 256 = 191 more, of 128 steps.
    mms, steps = floor.step_matmuls(vs_sb3.TASKS["dqn_cartpole"])
    assert count(mms, (64, 256, 256)) == 4 and steps == (1 + 191) * 128
    # PPO: 100k // (32 x 8) = 390 rollouts x 20 epochs of one 256-row minibatch; 1M // (1024 x 16)
    # = 61 rollouts x 4 epochs x 256 minibatches of 64.
    mms, steps = floor.step_matmuls(vs_sb3.TASKS["ppo_cartpole"])
    assert count(mms, (256, 64, 64)) == 2 * 3 and steps == 390 * 20  # stacked torsos: fwd, dW, dx
    assert floor.step_matmuls(vs_sb3.TASKS["ppo_lunar"])[1] == 61 * 4 * 256
