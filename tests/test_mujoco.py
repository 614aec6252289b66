"""MuJoCo locomotion: the sac, td3 and ppo presets (RL Zoo's tuned values) compose with every key
in the schema, run through the CLI, record videos of the rendered robot, and a MuJoCo id without
the mujoco package is refused with the extra to install (exit 2, no traceback)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TESTS_DIR, run_cli
from test_config import settings

from drlrun.envs import missing_extra_hint

CONF = Path(__file__).resolve().parents[1] / "conf"
ENVS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")
ALGOS = ("sac", "td3", "ppo")
# A few hundred steps, learning from the first hundred, episodes cut to 50 steps and a 160x160
# camera so that evaluations and videos are short (MuJoCo renders in software without a GPU):
# what runs is each preset with only these changed.
SMOKE = {
    "sac": ("algo.learning_starts=100", "algo.batch_size=32"),
    "td3": ("algo.learning_starts=100", "algo.batch_size=32"),
    "ppo": ("algo.n_steps=100", "algo.batch_size=50", "algo.n_epochs=2"),
}


def leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    """{'algo.lr': 3e-4, ...} for a nested mapping."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def value_at(obj: object, dotted: str) -> object:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("algo", ALGOS)
def test_each_mujoco_preset_composes_and_every_value_arrives(algo, env):
    preset = yaml.safe_load((CONF / "preset" / f"{algo}_{env}.yaml").read_text())
    s = settings(f"algo={algo}", f"env={env}")  # a key the schema lacks would raise here
    assert s.env.id == env and s.algo.name == algo
    values = leaves(preset)
    assert len(values) >= 8
    for key, expected in values.items():
        assert value_at(s, key) == expected, key
    if algo == "ppo":  # as RL Zoo's VecNormalize (normalize: true)
        assert s.algo.normalize_obs and s.algo.normalize_reward
    else:  # RL Zoo's MuJoCo defaults: 10k random steps first, a 1M replay
        assert s.algo.learning_starts == 10_000 and s.buffer.capacity == 1_000_000


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("mujoco", reason="MuJoCo comes with pip install 'drlrun[mujoco]' (CI installs it through [dev])")
    root = tmp_path_factory.mktemp("mujoco")
    runs = {}
    for algo in ALGOS:
        run = root / algo
        result = run_cli(f"algo={algo}", "env=HalfCheetah-v5", *SMOKE[algo], "total_steps=300",
                         "env.max_episode_steps=50", "+env.kwargs.width=160", "+env.kwargs.height=160",
                         "eval.interval=300", "eval.episodes=2", "log.progress=false",
                         "device=cpu", f"hydra.run.dir={run}", cwd=root)
        assert result.returncode == 0, result.stderr
        runs[algo] = run
    return runs


@pytest.mark.parametrize("algo", ALGOS)
def test_a_mujoco_smoke_run_completes_with_its_preset(smoke_runs, algo):
    run = smoke_runs[algo]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["total_steps"] == 300
    assert math.isfinite(summary["final_return_mean"])
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    preset = leaves(yaml.safe_load((CONF / "preset" / f"{algo}_HalfCheetah-v5.yaml").read_text()))
    overridden = {o.split("=")[0] for o in SMOKE[algo]} | {"total_steps", "eval.interval"}
    for key, expected in preset.items():
        if key not in overridden:
            assert value_at_mapping(config, key) == expected, key


def value_at_mapping(tree: dict, dotted: str) -> object:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def test_ppo_on_mujoco_learns_its_observation_statistics(smoke_runs):
    from drlrun.build import load_trained

    agent = load_trained(smoke_runs["ppo"], "last", "cpu").agent
    rms = agent.obs_norm.rms
    assert agent.obs_norm.enabled and rms.mean.shape == (17,)
    assert rms.count == pytest.approx(300, abs=1)  # every training observation, none of the evaluations'
    assert np.all(rms.var > 0) and not np.allclose(rms.mean, 0.0)


def test_a_mujoco_video_shows_the_rendered_robot(smoke_runs, tmp_path):
    import imageio_ffmpeg

    result = run_cli(str(smoke_runs["sac"]), "episodes=1", "video=true", cwd=tmp_path, exe="drlrun-eval",
                     env_vars={"DISPLAY": "", "WAYLAND_DISPLAY": ""})
    cause = result.stderr.partition("MuJoCo renders off-screen")[0]
    if result.returncode == 2 and "cannot render" in cause and re.search(r"egl|opengl", cause, re.IGNORECASE):
        pytest.skip(f"no off-screen OpenGL (EGL) on this machine: {cause.strip()[-300:]}")
    assert result.returncode == 0, result.stderr
    [video] = json.loads((smoke_runs["sac"] / "eval.json").read_text())["videos"]
    reader = imageio_ffmpeg.read_frames(video)
    meta = next(reader)
    assert tuple(meta["size"]) == (160, 160)  # the run's camera (env.kwargs), not the 17 numbers the agent reads
    first = np.frombuffer(next(reader), dtype=np.uint8)
    assert first.std() > 10  # a picture, not a blank frame
    assert imageio_ffmpeg.count_frames_and_secs(video)[0] == 51  # the reset and 50 steps


def test_mujoco_ids_name_their_extra_and_others_the_known_ones():
    assert "pip install 'drlrun[mujoco]'" in missing_extra_hint("HalfCheetah-v5")
    assert "pip install 'drlrun[mujoco]'" in missing_extra_hint("Humanoid-v5")
    assert "pip install 'drlrun[box2d]'" in missing_extra_hint("LunarLander-v3")
    generic = missing_extra_hint("CartPole-v1")
    assert "box2d" in generic and "mujoco" in generic and "drlrun[NAME]" in generic


MISSING_MUJOCO = textwrap.dedent("""
    import sys
    sys.modules["mujoco"] = None  # as if not installed: 'import mujoco' raises ImportError
    from drlrun.cli import main
    sys.argv = ["drlrun", *sys.argv[1:]]
    main()
""")


def test_a_mujoco_id_without_the_package_names_the_extra(tmp_path):
    result = subprocess.run([sys.executable, "-c", MISSING_MUJOCO, "algo=sac", "env=HalfCheetah-v5",
                             "log.progress=false", f"hydra.run.dir={tmp_path / 'run'}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(TESTS_DIR), "PATH": ""})
    assert result.returncode == 2, result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    assert "env.id='HalfCheetah-v5' needs an optional dependency that is not installed" in result.stderr
    assert "pip install 'drlrun[mujoco]'" in result.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
