"""The runner's loop: next-step autoreset, termination vs truncation, evaluation quotas."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from drlrun.agent import BuildContext
from drlrun.buffers.replay import UniformConfig
from drlrun.config import EnvConfig, EvalConfig, LogConfig, RunConfig
from drlrun.envs import make_envs, resolve_env_id
from drlrun.episodes import evaluate
from drlrun.nets import MLPConfig
from drlrun.registry import ALGOS
from drlrun.runner import Run
from drlrun.telemetry import Telemetry


@dataclass
class RecorderConfig:
    name: str = "recorder"


@ALGOS.register("recorder")
class Recorder:
    """Always plays action 0 and keeps a copy of everything the runner hands it."""

    Config = RecorderConfig
    action_spaces = ("discrete",)

    def __init__(self, cfg: RecorderConfig, ctx: BuildContext) -> None:
        self.rows: list[tuple[np.ndarray, ...]] = []

    def act(self, obs, *, explore, deterministic=True):
        return np.zeros(len(obs), dtype=np.int64)

    def observe(self, obs, actions, rewards, next_obs, terminated, truncated, valid):
        self.rows.append(tuple(np.array(a, copy=True) for a in (obs, rewards, next_obs, terminated, truncated, valid)))

    def update(self):
        pass

    def metrics(self):
        return {}

    def state_dict(self, *, with_buffer=True):
        return {}

    def load_state_dict(self, state):
        pass


def record(tmp_path: Path, **env_kwargs) -> list[tuple[np.ndarray, ...]]:
    cfg = RunConfig(algo=RecorderConfig(), env=EnvConfig(**env_kwargs), network=MLPConfig(),
                    buffer=UniformConfig(), total_steps=16, device="cpu",
                    eval=EvalConfig(interval=0, episodes=1), log=LogConfig(progress=False, tensorboard=False))
    run = Run(cfg, tmp_path)
    run.telemetry = Telemetry(tmp_path, total_steps=16, title="t", tensorboard=False, progress=False)
    try:
        run.train()
    finally:
        run.telemetry.close()
        run.close()
    return run.agent.rows


def column(rows, field: int, env: int = 0) -> list:
    return [r[field][env].tolist() for r in rows]


def test_termination_final_observation_and_the_autoreset_row(tmp_path):
    rows = record(tmp_path, id="fake_envs:CountEnv", kwargs={"length": 3}, num_envs=2)
    obs, rew, nxt, term, trunc, valid = (column(rows, i) for i in range(6))
    # obs [t, episode]: steps 0,1,2 then terminal obs [3, 0] returned on the terminating step
    assert obs[:5] == [[0, 0], [1, 0], [2, 0], [3, 0], [0, 1]]
    assert nxt[2] == [3, 0]  # the true final observation, not the reset one
    assert term[:5] == [False, False, True, False, False]
    assert trunc[:5] == [False] * 5
    assert valid[:5] == [True, True, True, False, True]  # row 3 only reset the env
    assert rew[3] == 0.0
    # both envs of the vector env behave the same
    assert column(rows, 5, env=1)[:5] == valid[:5]


def test_truncation_is_reported_as_truncated_not_terminated(tmp_path):
    rows = record(tmp_path, id="fake_envs:CountEnv", kwargs={"length": 10}, max_episode_steps=2)
    term, trunc, valid = column(rows, 3), column(rows, 4), column(rows, 5)
    assert trunc[:4] == [False, True, False, False]
    assert term[:4] == [False, False, False, False]
    assert valid[:4] == [True, True, False, True]
    assert column(rows, 2)[1] == [2, 0]  # final observation of the truncated episode


class FirstAction:
    def act(self, obs, *, explore, deterministic=True):
        return np.zeros(len(obs), dtype=np.int64)


@pytest.mark.parametrize("episodes", [1, 3, 10])
def test_evaluation_runs_exactly_the_requested_episodes(episodes):
    env_id = resolve_env_id("fake_envs:CountEnv")
    envs = make_envs(EnvConfig(id="fake_envs:CountEnv", kwargs={"length": 4}), env_id, min(episodes, 4))
    returns, lengths = evaluate(FirstAction(), envs, episodes, seed=0, deterministic=True)
    envs.close()
    assert len(returns) == episodes
    assert returns.tolist() == [4.0] * episodes
    assert lengths.tolist() == [4] * episodes
