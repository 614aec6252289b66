"""End to end: the `drlrun` command as a user runs it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

SMALL = ("total_steps=2000", "eval.interval=1000", "eval.episodes=3", "log.interval=500",
         "algo.learning_starts=200", "network.hidden_sizes=[32,32]")


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_a_small_run_writes_everything_a_user_expects(cli, tmp_path):
    run_dir = tmp_path / "run"
    result = cli(*SMALL, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    summary = read_summary(run_dir)
    for key in ("algo", "env", "seed", "status", "total_steps", "wall_seconds", "steps_per_second",
                "final_return_mean", "final_return_std", "best_return_mean", "solved_at_step", "cpu",
                "numeric_path"):
        assert key in summary
    assert summary["numeric_path"] and summary["numeric_path"].split(",")[0].isupper()  # e.g. AVX2, DEFAULT
    assert (summary["algo"], summary["env"], summary["status"], summary["total_steps"]) == ("dqn", "CartPole-v1", "completed", 2000)
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "latest.pt").is_file() and (run_dir / "checkpoints" / "best.pt").is_file()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval/return_mean" in r] == [1000, 2000]
    assert rows[-1]["charts/SPS"] > 0
    # TensorBoard's own reader sees CleanRL's tags and the HParams summary
    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/epsilon",
            "losses/td_loss", "losses/q_values", "eval/return_mean", "eval/return_std"} <= tags
    assert [e.step for e in events.Scalars("eval/return_mean")] == [1000, 2000]
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")
    assert "hparams/final_return_mean" in tags
    # the final table tells the user where things are
    assert "final_return_mean" in result.stdout and f"tensorboard --logdir {run_dir}" in result.stdout


def test_default_run_directory_is_under_outputs_named_by_algo_env_and_seed(cli, tmp_path):
    result = cli("total_steps=300", "eval.episodes=1", "algo.learning_starts=100", "seed=3")
    assert result.returncode == 0, result.stderr
    (summary_path,) = (tmp_path / "outputs").glob("*/*_dqn_CartPole-v1_seed3/summary.json")
    assert json.loads(summary_path.read_text())["seed"] == 3


def test_env_id_alone_selects_that_environments_preset_or_none(cli, tmp_path):
    result = cli("env.id=Acrobot-v1", "total_steps=300", "eval.episodes=1", f"hydra.run.dir={tmp_path / 'a'}")
    assert result.returncode == 0, result.stderr
    config = (tmp_path / "a" / ".hydra" / "config.yaml").read_text()
    assert "id: Acrobot-v1" in config and "lr: 0.00063" in config  # dqn_Acrobot-v1 preset
    result = cli("env.id=fake_envs:GuessEnv", "total_steps=300", "eval.episodes=2", "algo.learning_starts=50",
                 "algo.batch_size=16", f"hydra.run.dir={tmp_path / 'b'}")
    assert result.returncode == 0, result.stderr
    summary = read_summary(tmp_path / "b")
    assert summary["env"] == "fake_envs.GuessEnv" and summary["total_steps"] == 300
    result = cli("env.id=fake_envs:FakeGuess-v0", "total_steps=300", "eval.episodes=2", "algo.learning_starts=50",
                 "algo.batch_size=16", f"hydra.run.dir={tmp_path / 'c'}")
    assert result.returncode == 0, result.stderr
    assert read_summary(tmp_path / "c")["env"] == "FakeGuess-v0"


@pytest.mark.parametrize("extra", [("algo.double=true", "network=dueling"), ("buffer=prioritized", "algo.n_step=3")])
def test_dqn_variants_train_through_the_cli(cli, tmp_path, extra):
    result = cli(*SMALL, *extra, f"hydra.run.dir={tmp_path / 'r'}")
    assert result.returncode == 0, result.stderr
    assert read_summary(tmp_path / "r")["status"] == "completed"


def test_multirun_runs_each_job_in_its_own_directory(cli, tmp_path):
    result = cli("-m", "seed=0,1", "total_steps=300", "eval.episodes=1", "algo.learning_starts=100",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 0, result.stderr
    summaries = sorted((tmp_path / "sweep").glob("*/summary.json"))
    assert [json.loads(p.read_text())["seed"] for p in summaries] == [0, 1]
    names = [p.parent.name for p in summaries]  # job number, then the job's overrides
    assert names[0].startswith("0_") and "seed=0" in names[0] and "total_steps=300" in names[0]
    assert names[1].startswith("1_") and "seed=1" in names[1]


def test_early_stop_at_a_target_return(cli, tmp_path):
    result = cli("env.id=fake_envs:GuessEnv", "total_steps=5000", "eval.interval=500", "eval.episodes=2",
                 "eval.early_stop=true", "eval.target_return=1.0", "algo.learning_starts=50", "algo.batch_size=16",
                 "algo.train_freq=1", "algo.exploration_fraction=0.05", f"hydra.run.dir={tmp_path / 'r'}")
    assert result.returncode == 0, result.stderr
    summary = read_summary(tmp_path / "r")
    assert summary["early_stopped"] is True and summary["total_steps"] < 5000
    assert summary["final_return_mean"] == 1.0 and summary["solved_at_step"] == summary["total_steps"]


PLUGIN = '''
from dataclasses import dataclass

import numpy as np

from drlrun.config import param


@dataclass
class CounterConfig:
    name: str = "counter"
    favourite_action: int = param(1, ge=0)


class CounterAgent:
    """Plays its favourite action; 'learns' by counting the rewards it sees."""

    Config = CounterConfig
    action_spaces = ("discrete",)

    def __init__(self, cfg, ctx):
        self.cfg, self.total_reward = cfg, 0.0

    def act(self, obs, *, explore, deterministic=True):
        return np.full(len(obs), self.cfg.favourite_action)

    def observe(self, obs, actions, rewards, next_obs, terminated, truncated, valid):
        self.total_reward += float(rewards[valid].sum())

    def update(self):
        pass

    def metrics(self):
        return {"charts/total_reward": self.total_reward}

    def state_dict(self, *, with_buffer=True):
        return {"total_reward": self.total_reward}

    def load_state_dict(self, state):
        self.total_reward = state["total_reward"]
'''


def install_plugin(site: Path) -> None:
    """What pip would leave behind for a package declaring a drlrun.algos entry point."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "drlrun_counter.py").write_text(textwrap.dedent(PLUGIN))
    dist = site / "drlrun_counter-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: drlrun-counter\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[drlrun.algos]\ncounter = drlrun_counter:CounterAgent\n")


def test_a_plugin_algorithm_trains_through_the_cli(cli, tmp_path):
    site = tmp_path / "site"
    install_plugin(site)
    result = cli("algo=counter", "env.id=fake_envs:GuessEnv", "total_steps=200", "eval.episodes=2",
                 f"hydra.run.dir={tmp_path / 'r'}", extra_path=site)
    assert result.returncode == 0, result.stderr
    summary = read_summary(tmp_path / "r")
    assert summary["algo"] == "counter" and summary["final_return_mean"] == 1.0
    # and the registry's choices now include it
    result = cli("algo=nope", extra_path=site)
    assert result.returncode != 0 and "counter" in result.stderr and "dqn" in result.stderr
