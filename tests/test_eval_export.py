"""drlrun-eval, videos and drlrun-export: a trained agent, watched, measured and shipped.

The exported file must act as the agent does: the same discrete choices, and continuous actions
equal up to float rounding, on 100 observations the agent meets, with observation normalisation
baked in.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from components import cases
from conftest import run_cli
from test_config import settings

from drlrun.build import load_trained
from drlrun.episodes import EVAL_SEED_OFFSET
from drlrun.export import ExportArgs, export_run, sample_observations
from drlrun.runner import train

# One small run per installed algorithm (components.py), plus PPO with normalisation baked in.
RUNS = cases({
    "dqn": ("algo=dqn", "env=CartPole-v1", "total_steps=1500", "algo.learning_starts=500", "algo.train_freq=4",
            "algo.gradient_steps=1", "network.hidden_sizes=[32,32]"),
    "ppo_normalized": ("algo=ppo", "env=Pendulum-v1", "total_steps=1024", "env.num_envs=2", "algo.n_steps=128",
                       "algo.normalize_obs=true", "algo.normalize_reward=true"),
    "a2c": ("algo=a2c", "env=CartPole-v1", "total_steps=1000", "algo.normalize_obs=true", "network.shared=true"),
    "reinforce": ("algo=reinforce", "env=CartPole-v1", "total_steps=1000", "algo.baseline=true"),
    "sac": ("algo=sac", "env=Pendulum-v1", "total_steps=700", "algo.learning_starts=300", "algo.batch_size=32",
            "network.hidden_sizes=[32,32]", "network.activation=tanh"),
    "td3": ("algo=td3", "env=Pendulum-v1", "total_steps=700", "algo.learning_starts=300", "algo.batch_size=32",
            "network.hidden_sizes=[32,32]"),
    "ddpg": ("algo=ddpg", "env=Pendulum-v1", "total_steps=700", "algo.learning_starts=300", "algo.batch_size=32",
             "network.hidden_sizes=[32,32]"),
}, total_steps=1024)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One small trained run per algorithm (trained in-process: no .hydra/ directory, so the
    settings come from the checkpoint)."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, overrides in RUNS.items():
        cfg = settings(*overrides, "eval.interval=500", "eval.episodes=2", "log.progress=false", "device=cpu")
        train(cfg, root / name, progress=False)
        out[name] = root / name
    return out


def run_exported(fmt: str, path: Path, obs: np.ndarray) -> np.ndarray:
    """The exported file, run by its own runtime only (no drlrun code)."""
    if fmt == "torchscript":
        return torch.jit.load(str(path))(torch.from_numpy(obs)).numpy()
    if fmt == "export":
        return torch.export.load(str(path)).module()(torch.from_numpy(obs)).detach().numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"obs": obs})[0]


@pytest.mark.parametrize("fmt", ["torchscript", "export", "onnx"])
@pytest.mark.parametrize("name", sorted(RUNS))
def test_the_exported_policy_chooses_the_agents_actions(runs, tmp_path, name, fmt):
    out = tmp_path / f"policy-{name}.{fmt}"
    info = export_run(runs[name], ExportArgs(format=fmt, checkpoint="last", output=str(out)))
    assert info["checked_observations"] == 100
    trained = load_trained(runs[name], "last")
    obs = sample_observations(trained)
    assert len(obs) == 100 and len(np.unique(obs, axis=0)) > 50  # real, varied observations
    expected = trained.agent.act(obs, explore=False, deterministic=True)
    actions = run_exported(fmt, out, obs)
    assert actions.shape == np.asarray(expected).shape
    if trained.spec.action_kind == "discrete":
        assert (actions == expected).all()
    else:
        np.testing.assert_allclose(actions, expected, atol=1e-5)
        assert (actions >= trained.spec.action_low).all() and (actions <= trained.spec.action_high).all()
    meta = json.loads(out.with_name(out.name + ".json").read_text())
    assert meta["format"] == fmt and meta["input"]["shape"] == ["batch", *trained.spec.obs_shape]


def test_normalisation_is_baked_into_the_export(runs, tmp_path):
    trained = load_trained(runs["ppo_normalized"], "last")
    rms = trained.agent.obs_norm.rms
    assert not np.allclose(rms.mean, 0.0) and trained.agent.obs_norm.enabled  # statistics were learned
    out = tmp_path / "policy.pt"
    export_run(runs["ppo_normalized"], ExportArgs(format="torchscript", output=str(out), checkpoint="last"))
    with pytest.warns(DeprecationWarning):  # torch marks TorchScript deprecated; drlrun still offers it
        module = torch.jit.load(str(out))
    buffers = {name: value for name, value in module.named_buffers()}
    np.testing.assert_allclose(buffers["0.mean"].numpy(), rms.mean)
    np.testing.assert_allclose(buffers["0.std"].numpy(), np.sqrt(rms.var + trained.agent.obs_norm.eps))


def test_drlrun_eval_matches_the_runs_own_final_evaluation(cli, tmp_path):
    run = tmp_path / "run"
    train_args = ("algo=ppo", "env=CartPole-v1", "total_steps=4000", "eval.interval=2000", "eval.episodes=4",
                  "log.progress=false", f"hydra.run.dir={run}")
    assert cli(*train_args).returncode == 0
    seed = 0 + EVAL_SEED_OFFSET  # the seeds the run's evaluations used
    result = run_cli(str(run), "checkpoint=last", "episodes=4", f"seed={seed}", cwd=tmp_path,
                     exe="drlrun-eval")
    assert result.returncode == 0, result.stderr
    assert "mean return" in result.stdout
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    final_eval = [row for row in evals if "eval/return_mean" in row][-1]
    report = json.loads((run / "eval.json").read_text())
    assert report["return_mean"] == pytest.approx(final_eval["eval/return_mean"])
    assert len(report["returns"]) == 4 and report["checkpoint_step"] == 4000
    fresh = run_cli(str(run), "episodes=3", cwd=tmp_path, exe="drlrun-eval")  # last, fresh seeds
    assert fresh.returncode == 0, fresh.stderr
    report = json.loads((run / "eval.json").read_text())
    assert report["seed"] != seed and len(report["lengths"]) == 3 and report["checkpoint"].endswith("latest.pt")


def test_video_to_mp4_and_tensorboard(runs, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "sac"
    shutil.copytree(runs["sac"], run)
    result = run_cli(str(run), "episodes=2", "video=true", "tensorboard=true", cwd=tmp_path, exe="drlrun-eval")
    assert result.returncode == 0, result.stderr
    videos = list((run / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].read_bytes()[4:8] == b"ftyp"  # an MP4 container
    events = EventAccumulator(str(run), size_guidance={"images": 0}).Reload()
    [tag] = [t for t in events.Tags()["images"] if t.startswith("videos/")]
    image = events.Images(tag)[0]
    assert image.encoded_image_string[:6] == b"GIF89a"


def test_training_records_an_evaluation_video_every_k_evaluations(cli, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    result = cli("algo=ppo", "env=CartPole-v1", "total_steps=3000", "eval.interval=1000", "eval.episodes=2",
                 "eval.video_every=2", "log.progress=false", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (run / "videos").iterdir()) == ["eval-step2000.mp4"]
    events = EventAccumulator(str(run), size_guidance={"images": 0}).Reload()
    assert [e.step for e in events.Images("eval/video")] == [2000]


def test_eval_and_export_refuse_bad_input_cleanly(runs, tmp_path):
    cases = [
        ("drlrun-eval", (str(tmp_path / "nowhere"),), ["no such directory"]),
        ("drlrun-eval", (str(runs["dqn"]), "episodes=0"), ["episodes=0", ">= 1"]),
        ("drlrun-eval", (str(runs["dqn"]), "episode=3"), ["Unknown key 'episode'", "episodes"]),
        ("drlrun-eval", (str(runs["dqn"]), "render=window"), ["render='window'", "none, human"]),
        ("drlrun-eval", (str(runs["dqn"]), f"checkpoint={runs['ppo_normalized'] / 'checkpoints' / 'latest.pt'}"),
         ["algo='ppo'", "algo='dqn'"]),
        ("drlrun-eval", (str(runs["dqn"]), "checkpoint=/no/such.pt"), ["does not exist"]),
        ("drlrun-eval", (str(runs["dqn"]), "render=human"), ["no display", "video=true"]),
        ("drlrun-export", (str(runs["dqn"]), "format=tflite"), ["format='tflite'", "export, torchscript, onnx"]),
        ("drlrun-export", (str(tmp_path),), ["not a drlrun run directory"]),
    ]
    for exe, args, words in cases:
        result = run_cli(*args, cwd=tmp_path, exe=exe, env_vars={"DISPLAY": "", "WAYLAND_DISPLAY": ""})
        assert result.returncode == 2, (exe, args, result.stderr)
        assert "Traceback" not in result.stderr
        for word in words:
            assert word in result.stderr, (args, result.stderr)
    assert not (runs["dqn"] / "eval.json").exists()  # nothing written by a refused command
