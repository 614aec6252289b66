"""Nothing but the algorithm's own settings changes what is learned.

Evaluation runs on its own envs (with the global RNG states put back afterwards) and a checkpoint
records the episodes in flight instead of cutting them, so the same configuration and seed with
other evaluation, checkpoint, logging and video settings must train identically: the same losses
at every step both runs logged, and the same training episodes, each at the step it ended. And a
resumed run rebuilds the episodes in flight by replaying their actions, or says that it cannot.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from test_config import settings as config_settings
from test_resume import CASES, metrics, tensorboard_points

from drlrun.build import resume_settings
from drlrun.envs import SeededEpisodes, copy_seeds, episode_seed
from drlrun.runner import train

# Settings that must not matter, in two very different combinations.
SIDE_A = ("eval.interval=1000", "eval.episodes=2", "checkpoint.interval=400", "log.interval=200")
SIDE_B = ("eval.interval=700", "eval.episodes=3", "eval.deterministic=false", "checkpoint.enabled=false",
          "log.interval=300")
SIDE_C = ("eval.interval=500", "eval.episodes=1", "checkpoint.interval=100", "log.interval=100",
          "eval.video_every=2")


def losses(run_dir: Path) -> dict[int, dict[str, float]]:
    """The losses logged at each step (evaluation rows, which hold none, left out)."""
    rows = ({k: v for k, v in row.items() if k.startswith("losses/")} | {"step": row["step"]}
            for row in metrics(run_dir))
    return {row.pop("step"): row for row in rows if len(row) > 1}


@pytest.mark.parametrize("case", ["dqn", "ppo", "reinforce", "sac"])
def test_evaluation_checkpoints_logging_and_video_do_not_change_training(tmp_path, case):
    runs = {}
    for name, side in (("a", SIDE_A), ("b", SIDE_B), ("c", SIDE_C)):
        if name == "c" and case not in ("dqn", "ppo"):
            continue  # (videos are slow: two algorithms cover them)
        cfg = config_settings(*CASES[case], *side, "log.progress=false", "device=cpu")
        train(cfg, tmp_path / name, progress=False)
        runs[name] = tmp_path / name
    episodes = {name: tensorboard_points(run, "charts/episodic_return") for name, run in runs.items()}
    assert len(episodes["a"]) >= 5
    logged = {name: losses(run) for name, run in runs.items()}
    for name in runs:
        if name == "a":
            continue
        assert episodes[name] == episodes["a"], f"run {name} trained on other episodes"
        common = sorted(set(logged["a"]) & set(logged[name]))
        assert len(common) >= 2
        for step in common:
            assert logged[name][step] == logged["a"][step], f"run {name} differs at step {step}"
        assert any(logged["a"][step] for step in common)  # the runs did learn at those steps


def test_every_episode_is_reset_with_a_seed_of_its_own_copy_and_number():
    envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync", wrappers=[SeededEpisodes])
    seeds = copy_seeds(0, 2)
    assert seeds != copy_seeds(1, 2) and len(set(seeds)) == 2
    first, _ = envs.reset(seed=seeds)
    for i in range(2):  # episode 0 of copy i starts as a lone CartPole reset with its seed
        alone, _ = gym.make("CartPole-v1").reset(seed=episode_seed(seeds[i], 0))
        assert np.array_equal(first[i], alone)
    starts = []
    ended = np.zeros(2, dtype=bool)
    for _ in range(400):  # constant action: episodes end within a few dozen steps
        obs, _, terminated, truncated, _ = envs.step(np.zeros(2, dtype=np.int64))
        starts += [obs[i].copy() for i in np.flatnonzero(ended)]  # the autoreset rows
        ended = terminated | truncated
    assert len(starts) >= 4
    assert len({tuple(s) for s in starts}) == len(starts)  # no episode repeats another's start
    wrapper = envs.envs[0]
    expected, _ = gym.make("CartPole-v1").reset(seed=episode_seed(seeds[0], wrapper.episode))
    assert wrapper.episode >= 2 and any(np.array_equal(expected, s) for s in starts)


def test_an_episode_in_flight_is_rebuilt_from_its_seed_and_actions():
    env = SeededEpisodes(gym.make("LunarLander-v3"))
    env.reset(seed=5)
    env.reset()  # episode 1
    rng = np.random.default_rng(0)
    actions = [int(a) for a in rng.integers(0, 4, size=30)]
    for action in actions:
        reached, *_ = env.step(action)
    again = SeededEpisodes(gym.make("LunarLander-v3"))
    rebuilt, _ = again.reset(seed=5, options={"drlrun_restore": {5: (1, actions, False)}})
    assert np.array_equal(rebuilt, reached)
    assert again.episode == 1
    # An episode that had just ended: the next step only starts episode 2, as an autoreset does.
    ended = SeededEpisodes(gym.make("LunarLander-v3"))
    ended.reset(seed=5, options={"drlrun_restore": {5: (1, actions, True)}})
    obs, reward, terminated, truncated, _ = ended.step(0)
    start, _ = gym.make("LunarLander-v3").reset(seed=episode_seed(5, 2))
    assert np.array_equal(obs, start) and reward == 0.0 and not (terminated or truncated)
    assert ended.episode == 2


def test_a_resume_that_cannot_rebuild_an_episode_says_so_and_goes_on(tmp_path, capsys):
    # CountEnv's observation holds how often it was reset, which no replay of one episode repeats.
    cfg = config_settings("algo=ppo", "env.id=fake_envs:CountEnv", "+env.kwargs.length=7", "env.num_envs=2",
                          "total_steps=400", "algo.n_steps=16", "eval.interval=200", "eval.episodes=1",
                          "checkpoint.interval=0", "log.progress=false", "device=cpu")
    cfg.total_steps = 202
    train(cfg, tmp_path, progress=False)
    longer, loaded = resume_settings(tmp_path, ["total_steps=400"])
    capsys.readouterr()
    summary = train(longer, tmp_path, progress=False, resume=loaded)
    out = " ".join(capsys.readouterr())
    assert "could not be rebuilt" in out and "training env(s) 0, 1" in out
    assert summary["status"] == "completed" and summary["total_steps"] == 400
    lengths = [value for _, value in tensorboard_points(tmp_path, "charts/episodic_length")]
    assert set(lengths) == {7.0}  # no cut or merged episode was reported
    summary_file = json.loads((tmp_path / "summary.json").read_text())
    assert summary_file["resumes"] == 1


def test_a_resume_at_a_step_where_episodes_end_continues_exactly(tmp_path, monkeypatch):
    # One-step episodes: every other vector step ends them all, the steps between only reset.
    # Checkpoints every 11 vector steps fall on both kinds, so the rebuilt episodes include ones
    # that had just ended (whose next step is an autoreset) and ones that had just begun.
    from test_resume import Crash

    from drlrun.runner import Run

    cfg = config_settings("algo=dqn", "env.id=fake_envs:FakeGuess-v0", "env.num_envs=3", "total_steps=600",
                          "algo.learning_starts=60", "algo.batch_size=8", "buffer.capacity=300", "algo.n_step=3",
                          "network.hidden_sizes=[8]", "eval.interval=200", "eval.episodes=2",
                          "checkpoint.interval=33", "log.interval=30", "log.progress=false", "device=cpu")
    train(cfg, tmp_path / "whole", progress=False)
    real_save, saves = Run.save_checkpoint, {"n": 0}

    def save_then_crash(self, name, **kwargs):
        real_save(self, name, **kwargs)
        if name == "latest":
            saves["n"] += 1
            if saves["n"] == 5:
                assert self.flight.ended.any()  # an episode had just ended at this checkpoint
                raise Crash

    monkeypatch.setattr(Run, "save_checkpoint", save_then_crash)
    with pytest.raises(Crash):
        train(cfg, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(Run, "save_checkpoint", real_save)
    resumed_cfg, loaded = resume_settings(tmp_path / "resumed", [])
    train(resumed_cfg, tmp_path / "resumed", progress=False, resume=loaded)
    assert metrics(tmp_path / "resumed") == metrics(tmp_path / "whole")
    assert (tensorboard_points(tmp_path / "resumed", "charts/episodic_return")
            == tensorboard_points(tmp_path / "whole", "charts/episodic_return"))


def test_a_native_vector_env_resumes_with_new_episodes_and_says_so(tmp_path, capsys):
    # CartPole's native vector env: its copies share one RNG, so no episode can be rebuilt. Every
    # episode reported after the resume must still be whole: CartPole pays 1 a step, so each
    # episode's return equals its length.
    cfg = config_settings("algo=ppo", "env=CartPole-v1", "env.vectorization=native", "env.num_envs=4",
                          "total_steps=2000", "algo.n_steps=32", "eval.interval=1000", "eval.episodes=1",
                          "log.progress=false", "device=cpu")
    cfg.total_steps = 1000
    train(cfg, tmp_path, progress=False)
    longer, loaded = resume_settings(tmp_path, ["total_steps=2000"])
    capsys.readouterr()
    summary = train(longer, tmp_path, progress=False, resume=loaded)
    assert "training env(s) 0, 1, 2, 3 could not be rebuilt" in " ".join(capsys.readouterr())
    assert summary["total_steps"] == 2000
    returns = tensorboard_points(tmp_path, "charts/episodic_return")
    lengths = tensorboard_points(tmp_path, "charts/episodic_length")
    assert any(step > 1000 for step, _ in returns)
    assert returns == lengths
