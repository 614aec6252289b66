"""Atari through Gymnasium's own wrappers (drlrun/preprocess.py), learning-only reward clipping
and life loss, and short Atari runs through the command line.

Each ALE copy must be exactly Gymnasium's pipeline (``gym.make(frameskip=1)``,
``AtariPreprocessing``, ``FrameStackObservation``) under drlrun's SeededEpisodes, with the
``env.atari.*`` settings; the agent learns from clipped rewards and lost lives while logged and
evaluated returns stay the game's; an ALE id without ale-py (or OpenCV) stops with exit 2 and
the extra to install.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml
from conftest import TESTS_DIR, run_cli
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

from drlrun import checkpoint
from drlrun.config import AtariConfig, EnvConfig
from drlrun.envs import RESTORE, episode_seed, make_envs, reset_seed, resolve_env_id
from drlrun.errors import DrlrunError
from drlrun.preprocess import LEARN_REWARD, LEARN_TERMINATED, LearningSignals
from drlrun.video import fps_of

pytest.importorskip("ale_py", reason="ale-py comes with pip install 'drlrun[atari]' (CI installs it)")
pytest.importorskip("cv2", reason="opencv comes with pip install 'drlrun[atari]' (CI installs it)")

BREAKOUT = "ALE/Breakout-v5"


def chain(env: gym.Env) -> list[gym.Env]:
    """``env`` and every env it wraps, outermost first."""
    out = [env]
    while hasattr(out[-1], "env"):
        out.append(out[-1].env)
    return out


def atari_envs(num_envs: int = 1, **settings) -> gym.vector.VectorEnv:
    atari = settings.pop("atari", {})
    cfg = EnvConfig(id=BREAKOUT, atari=AtariConfig(**atari), **settings)
    return make_envs(cfg, resolve_env_id(BREAKOUT), num_envs)


# ----------------------------------------------------------------------------- the copies
def test_each_copy_is_gymnasiums_pipeline_in_order_and_plays_as_it_does():
    envs = atari_envs()
    copy = envs.envs[0]
    kinds = [type(e).__name__ for e in chain(copy)]
    assert kinds == ["SeededEpisodes", "FrameStackObservation", "AtariPreprocessing", "OrderEnforcing",
                     "PassiveEnvChecker", "AtariEnv"]
    stack, pre, ale = chain(copy)[1], chain(copy)[2], copy.unwrapped
    assert (stack.stack_size, stack.padding_type) == (4, "reset")
    assert (pre.noop_max, pre.frame_skip, pre.screen_size, pre.terminal_on_life_loss) == (30, 4, (84, 84), False)
    assert ale._frameskip == 1  # the skip is AtariPreprocessing's alone
    assert ale.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)  # v5's sticky actions kept
    assert ale.ale.getInt("max_num_frames_per_episode") == 108_000
    assert envs.single_observation_space.shape == (4, 84, 84) and envs.single_observation_space.dtype == np.uint8
    assert fps_of(envs) == 15  # videos play in real time: 60 console frames/s, 4 per recorded step

    # the same observations and rewards as Gymnasium's wrappers applied by hand, seeded as drlrun seeds
    base = reset_seed(envs, 3)
    ours, _ = envs.reset(seed=base)
    assert all(np.array_equal(ours[0, 0], ours[0, i]) for i in range(4))  # a first stack: one frame, 4 times
    theirs_env = FrameStackObservation(AtariPreprocessing(gym.make(BREAKOUT, frameskip=1), noop_max=30), 4)
    theirs, _ = theirs_env.reset(seed=episode_seed(base[0], 0))
    np.testing.assert_array_equal(ours[0], theirs)
    rng = np.random.default_rng(0)
    for _ in range(2000):  # one whole game (random play loses its 5 lives in a few hundred steps)
        action = rng.integers(4)
        ours, reward, terminated, *_ = envs.step(np.array([action]))
        theirs, their_reward, their_terminated, *_ = theirs_env.step(action)
        np.testing.assert_array_equal(ours[0], theirs)
        assert (reward[0], terminated[0]) == (their_reward, their_terminated)
        if terminated[0]:
            break
    assert terminated[0]
    ours, *_ = envs.step(np.array([0]))  # the autoreset: the copy's next episode, on its next seed
    theirs, _ = theirs_env.reset(seed=episode_seed(base[0], 1))
    np.testing.assert_array_equal(ours[0], theirs)
    envs.close()
    theirs_env.close()


def test_an_atari_episode_is_rebuilt_from_its_seed_and_actions():
    """What an exact resume needs: the same copy seed and actions reach the same observation."""
    envs = atari_envs()
    seeds = reset_seed(envs, 11)
    obs, _ = envs.reset(seed=seeds)
    actions = np.random.default_rng(1).integers(4, size=80)
    for action in actions:
        obs, *_ = envs.step(np.array([action]))
    rebuilt, _ = envs.reset(seed=seeds, options={RESTORE: {seeds[0]: (0, actions, False)}})
    np.testing.assert_array_equal(rebuilt, obs)
    envs.close()


def test_env_atari_settings_reach_the_wrappers_and_bad_ones_are_refused():
    envs = atari_envs(atari={"noop_max": 0, "frame_skip": 3, "screen_size": 64, "frame_stack": 2},
                      max_episode_steps=50)
    copy = envs.envs[0]
    stack, pre = chain(copy)[1], chain(copy)[2]
    assert (stack.stack_size, pre.noop_max, pre.frame_skip, pre.screen_size) == (2, 0, 3, (64, 64))
    assert copy.unwrapped.ale.getInt("max_num_frames_per_episode") == 150  # 50 agent steps of 3 frames
    assert envs.single_observation_space.shape == (2, 64, 64)
    envs.close()
    with pytest.raises(DrlrunError, match=r"env.kwargs.frameskip=4.*env.atari.frame_skip"):
        atari_envs(kwargs={"frameskip": 4})
    with pytest.raises(DrlrunError, match=r"env.vectorization=native.*needs wrappers on every copy.*auto, sync, async"):
        atari_envs(vectorization="native")
    with pytest.raises(DrlrunError, match=r"env.atari.noop_max=0 .* only ALE ids get .*'CartPole-v1' is not one"):
        make_envs(EnvConfig(id="CartPole-v1", atari=AtariConfig(noop_max=0)), "CartPole-v1", 1)


def test_life_loss_and_clipped_rewards_are_for_learning_only():
    envs = atari_envs(clip_rewards=True, atari={"terminal_on_life_loss": True})
    kinds = [type(e).__name__ for e in chain(envs.envs[0])]
    assert kinds[:3] == ["SeededEpisodes", "LearningSignals", "FrameStackObservation"]
    envs.reset(seed=reset_seed(envs, 0))
    rng = np.random.default_rng(0)
    lives, lost, scored = 5, 0, []
    for _ in range(400):
        _obs, reward, terminated, _truncated, info = envs.step(rng.integers(4, size=1))
        if reward[0] != 0:
            scored.append((reward[0], info[LEARN_REWARD][0]))
        if info[LEARN_TERMINATED][0] and not terminated[0]:  # a life lost: an end for learning only
            assert info["lives"][0] == lives - 1
            lost += 1
        lives = info["lives"][0]
        if terminated[0]:
            break
    assert lost >= 1 and terminated[0] and info[LEARN_TERMINATED][0]  # the game over ends both
    assert scored and all(clipped == np.sign(raw) for raw, clipped in scored)
    envs.close()


class Lives(gym.Env):
    """Reward 3 per step; a life lost every second step, three lives."""

    observation_space = gym.spaces.Box(0, 1, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros(1, np.float32), {"lives": 3}

    def step(self, action):
        self.t += 1
        lives = 3 - self.t // 2
        return np.zeros(1, np.float32), 3.0, lives == 0, False, {"lives": lives}


def test_learning_signals_by_hand():
    env = LearningSignals(Lives(), clip_rewards=True, life_loss=True)
    env.reset()
    steps = [env.step(0) for _ in range(6)]
    assert [s[1] for s in steps] == [3.0] * 6  # the env's own reward is untouched
    assert [s[4][LEARN_REWARD] for s in steps] == [1.0] * 6
    assert [s[4][LEARN_TERMINATED] for s in steps] == [False, True, False, True, False, True]
    assert [s[2] for s in steps] == [False] * 5 + [True]


# ----------------------------------------------------------------------------- runs
SCORED = textwrap.dedent("""
    import gymnasium as gym
    import numpy as np

    class Scored(gym.Env):
        '''Reward 5 per step, 4 steps an episode: a return of 20.'''
        observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            return np.zeros(2, np.float32), {}

        def step(self, action):
            self.t += 1
            return np.full(2, self.t / 4, np.float32), 5.0, self.t == 4, False, {}
""")


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_the_agent_learns_clipped_rewards_while_returns_stay_unclipped(tmp_path):
    (tmp_path / "scored.py").write_text(SCORED)
    run = tmp_path / "run"
    result = run_cli("algo=dqn", "env.id=scored:Scored", "env.clip_rewards=true", "total_steps=200",
                     "algo.learning_starts=50", "buffer.capacity=500", "eval.episodes=2", "log.interval=100",
                     "log.progress=false", f"hydra.run.dir={run}", cwd=tmp_path, extra_path=tmp_path)
    assert result.returncode == 0, result.stderr
    logged = rows(run)
    assert {r["charts/episodic_return"] for r in logged if "charts/episodic_return" in r} == {20.0}
    assert [r["eval/return_mean"] for r in logged if "eval/return_mean" in r] == [20.0]
    _header, state = checkpoint.load(run / "checkpoints" / "latest.pt")
    buffer = state["agent"]["buffer"]
    learnt = buffer["rewards"].numpy()[buffer["valid"].numpy()]
    assert len(learnt) > 100 and set(learnt.tolist()) == {1.0}  # sign(5), in every transition


def test_an_ale_id_alone_picks_the_atari_option_and_its_preset(tmp_path):
    for env_id, option_total in (("ALE/Seaquest-v5", 10_000_000), ("ALE/Pong-v5", 10_000_000)):
        result = run_cli("algo=dqn", f"env.id={env_id}", "--cfg", "job", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        cfg = yaml.safe_load(result.stdout)
        assert cfg["env"]["id"] == env_id and cfg["env"]["clip_rewards"] is True
        assert cfg["network"]["name"] == "cnn" and cfg["total_steps"] == option_total
        assert cfg["algo"]["batch_size"] == 32 and cfg["buffer"]["capacity"] == 1_000_000


SMOKE = {
    "dqn": ("algo=dqn", "total_steps=400", "algo.learning_starts=200", "buffer.capacity=1000",
            "algo.exploration_final_eps=1.0"),  # (a random evaluation ends its game quickly)
    "ppo": ("algo=ppo", "total_steps=256", "env.num_envs=2", "algo.n_steps=32", "algo.batch_size=32",
            "algo.n_epochs=1"),
}


@pytest.mark.parametrize("algo", sorted(SMOKE))
def test_a_short_atari_run_completes(tmp_path, algo):
    run = tmp_path / "run"
    result = run_cli(*SMOKE[algo], f"env.id={BREAKOUT}", "eval.episodes=1", "env.max_episode_steps=400",
                     "log.interval=100", "log.progress=false", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["total_steps"] == int(SMOKE[algo][1].split("=")[1])
    evaluation = [r for r in rows(run) if "eval/return_mean" in r][-1]
    assert 0 < evaluation["eval/length_mean"] <= 400  # env.max_episode_steps counts agent steps
    header, state = checkpoint.load(run / "checkpoints" / "latest.pt")
    assert header["obs_shape"] == [4, 84, 84] and header["network"] == "cnn"
    if algo == "dqn":  # buffer=uniform on ALE frames keeps each frame once
        buffer = state["agent"]["buffer"]
        assert tuple(buffer["obs"].shape) == (1000, 1, 84, 84) and "history" in buffer


@pytest.mark.parametrize(("blocked", "needles"), [
    ("ale_py", ("env.id='ALE/Breakout-v5' needs the ALE package", "Install drlrun's atari extra")),
    ("cv2", ("Atari preprocessing resizes frames with OpenCV", "Install drlrun's atari extra")),
], ids=["ale-py", "opencv"])
def test_an_ale_id_without_its_packages_names_the_extra(tmp_path, blocked, needles):
    script = textwrap.dedent(f"""
        import sys
        import gymnasium as gym
        for key in [k for k in gym.registry if k.startswith("ALE/")]:
            del gym.registry[key]
        sys.modules["{blocked}"] = None  # as if not installed
        from drlrun.cli import main
        sys.argv = ["drlrun", "algo=dqn", "env.id=ALE/Breakout-v5", "log.progress=false", "hydra.run.dir=RUN"]
        main()
    """).replace("RUN", str(tmp_path / "run"))
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(TESTS_DIR), "PATH": ""})
    assert result.returncode == 2, result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in result.stderr, result.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
