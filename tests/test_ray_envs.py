"""``env.vectorization=ray``: the env copies in Ray actors behave as one SyncVectorEnv of them all.

Through the command line as a user runs it (a local Ray of the run's own, 2 actors, 4 copies): the
same seed trains identically with sync and ray, Ctrl-C and resume continue exactly, and a killed
actor stops the run with a clear message and a checkpoint. At the unit level, the vector env's
observations, rewards, ends and infos equal a SyncVectorEnv's step for step, autoresets included.

The environments below are imported by the Ray workers too (``module:Class`` ids), so this module
keeps its top-level imports light.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest

TESTS_DIR = Path(__file__).parent
WALL_CLOCK = ("wall_time", "charts/SPS", "eval/train_seconds")
RUN = ("algo=ppo", "env=CartPole-v1", "env.num_envs=4", "algo.n_steps=64", "total_steps=6000", "eval.interval=2000",
       "eval.episodes=2", "checkpoint.interval=1000", "log.interval=500", "log.progress=false", "device=cpu")
RAY = ("env.vectorization=ray", "env.ray.actors=2")


class InfoEnv(gym.Env):
    """Random rewards, random episode ends and every kind of info a SyncVectorEnv merges: ints and
    floats some steps only, arrays, objects and a nested dict at episode ends; renders a small frame."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self.render_mode = render_mode
        self.t = 0
        self.label = "fresh"

    def _obs(self) -> np.ndarray:
        return np.array([self.t, *self.np_random.normal(size=2)], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {"start": int(self.np_random.integers(100))}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        info: dict[str, Any] = {"t": self.t}
        if self.t % 2:
            info["odd"] = float(self.np_random.random())
        terminated = bool(self.np_random.random() < 0.08)
        if terminated:
            info["final"] = {"length": self.t, "pair": np.array([self.t, int(action)])}
            info["tag"] = f"ended at {self.t}"
        return self._obs(), float(self.np_random.normal()) + int(action), terminated, False, info

    def render(self) -> np.ndarray:
        return np.full((4, 4, 3), self.t % 256, dtype=np.uint8)

    def nap(self, seconds: float) -> None:
        """A hung environment (for the timeout test)."""
        time.sleep(seconds)


class DiesInFlight(gym.Env):
    """Long episodes of a constant reward. The copy whose episode was reset with ``die_seed`` ends
    its process (as an out-of-memory kill or a crashed simulator would) at that episode's step
    ``die_at``: whatever process it lives in, here the Ray actor holding it."""

    def __init__(self, die_seed: int = -1, die_at: int = 10**9) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.die_seed, self.die_at = die_seed, die_at
        self.doomed = False
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.doomed, self.t = seed == self.die_seed, 0
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        if self.doomed and self.t == self.die_at:
            os._exit(1)
        return np.array([self.t / 1000, int(action)], dtype=np.float32), 1.0, self.t >= 1000, False, {}


# ---------------------------------------------------------------------------- helpers
def metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in WALL_CLOCK} for row in rows]


def final(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    return {k: summary[k] for k in ("status", "total_steps", "episodes", "final_return_mean", "best_return_mean")}


def same_infos(a: dict, b: dict) -> bool:
    """Vector infos equal key for key, arrays by value and dtype, nested dicts alike."""
    if a.keys() != b.keys():
        return False
    for key, value in a.items():
        other = b[key]
        if isinstance(value, dict):
            if not (isinstance(other, dict) and same_infos(value, other)):
                return False
        elif not (value.dtype == other.dtype and value.shape == other.shape and np.array_equal(value, other)):
            return False
    return True


@pytest.fixture(scope="module")
def sync_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: RUN with env.vectorization=sync."""
    from conftest import run_cli

    run_dir = tmp_path_factory.mktemp("sync") / "run"
    result = run_cli(*RUN, f"hydra.run.dir={run_dir}", cwd=run_dir.parent)
    assert result.returncode == 0, result.stderr
    return run_dir


# ---------------------------------------------------------------------------- through the CLI
def test_ray_trains_exactly_as_sync_for_the_same_seed(cli, tmp_path, sync_run):
    result = cli(*RUN, *RAY, f"hydra.run.dir={tmp_path / 'ray'}")
    assert result.returncode == 0, result.stderr
    assert metrics(tmp_path / "ray") == metrics(sync_run)
    assert final(tmp_path / "ray") == final(sync_run)
    assert any("eval/return_mean" in row for row in metrics(sync_run))  # evaluations (on Ray too) compared


def test_ctrl_c_then_resume_with_ray_ends_as_the_uninterrupted_run(tmp_path, sync_run):
    """SIGINT to the whole process group, as a terminal sends it: Ray's own processes ignore it, the
    run checkpoints and exits 130; the resumed run rebuilds its episodes in flight inside the actors."""
    from conftest import drlrun_executable, python_path, run_cli

    run_dir = tmp_path / "run"
    latest = run_dir / "checkpoints" / "latest.pt"
    proc = subprocess.Popen([drlrun_executable(), *RUN, *RAY, f"hydra.run.dir={run_dir}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": python_path(TESTS_DIR)})
    try:
        while not latest.exists() and proc.poll() is None:
            time.sleep(0.02)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert f"drlrun resume={run_dir}" in err and "Traceback" not in err
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    resumed = run_cli(f"resume={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert metrics(run_dir) == metrics(sync_run)
    assert final(run_dir) | {"status": "completed"} == final(sync_run)
    assert json.loads((run_dir / "summary.json").read_text())["resumes"] == 1


def test_a_killed_actor_stops_the_run_naming_its_copies_and_node_with_a_checkpoint(cli, tmp_path):
    from drlrun import checkpoint
    from drlrun.envs import copy_seeds, episode_seed

    die_at = 120
    doomed = episode_seed(copy_seeds(0, 4)[2], 0)  # copy 2's first episode: in actor 2, with copy 3
    result = cli("algo=ppo", "env.id=test_ray_envs:DiesInFlight", f"+env.kwargs.die_seed={doomed}",
                 f"+env.kwargs.die_at={die_at}", "env.num_envs=4", "algo.n_steps=32", "total_steps=4000",
                 "eval.interval=0", "log.progress=false", "device=cpu", *RAY, f"hydra.run.dir={tmp_path / 'run'}",
                 timeout=300)
    assert result.returncode == 4, result.stderr
    message = " ".join(result.stderr.split())
    assert "env copies 2-3 of 4" in message and "Ray actor 2 of 2" in message, message
    assert f"(host {socket.gethostname()}," in message and "the actor died during a step" in message, message
    assert f"drlrun resume={tmp_path / 'run'}" in message and "Traceback" not in result.stderr
    header, _ = checkpoint.load(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert header["step"] == 4 * (die_at - 1)  # the last step every copy completed
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "env copies 2-3" in summary["error"]


# ---------------------------------------------------------------------------- the vector env itself
@pytest.fixture(scope="module")
def ray_here() -> Iterator[None]:
    """A local Ray for this process, whose workers import this module's environments."""
    ray = pytest.importorskip("ray", reason="Ray comes with pip install 'drlrun[ray]' (CI installs it through [dev])")
    with pytest.MonkeyPatch.context() as mp:
        from conftest import python_path

        mp.setenv("PYTHONPATH", python_path(TESTS_DIR))
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield
        finally:
            ray.shutdown()


def make_pair(num_envs: int, actors: int, timeout: float = 60.0,
              **env: Any) -> tuple[gym.vector.VectorEnv, gym.vector.VectorEnv]:
    """InfoEnv copies (time limit 12) as a sync vector env and as a ray one, as make_envs builds them."""
    import dataclasses

    from drlrun.config import EnvConfig, RayEnvConfig
    from drlrun.envs import make_envs, resolve_env_id

    cfg = EnvConfig(id="test_ray_envs:InfoEnv", num_envs=num_envs, max_episode_steps=12,
                    ray=RayEnvConfig(actors=actors, timeout=timeout), **env)
    env_id = resolve_env_id(cfg.id)
    sync = make_envs(cfg, env_id, num_envs)
    try:
        on_ray = make_envs(dataclasses.replace(cfg, vectorization="ray"), env_id, num_envs)
    except BaseException:
        sync.close()
        raise
    return sync, on_ray


def test_steps_resets_and_infos_equal_a_sync_vector_envs(ray_here):
    """Five copies over two actors (3 + 2): several hundred random steps with autoresets, time-limit
    truncations, and infos present on some copies only; then a masked reset."""
    from drlrun.envs import copy_seeds

    sync, on_ray = make_pair(5, 2, kwargs={"render_mode": "rgb_array"})
    try:
        assert on_ray.drlrun_copies and on_ray.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
        assert on_ray.single_observation_space == sync.single_observation_space
        assert on_ray.action_space == sync.action_space and on_ray.render_mode == "rgb_array"
        seeds = copy_seeds(3, 5)
        (a, a_info), (b, b_info) = sync.reset(seed=seeds), on_ray.reset(seed=seeds)
        assert np.array_equal(a, b) and same_infos(a_info, b_info)
        rng = np.random.default_rng(0)
        ends = 0
        for t in range(300):
            actions = rng.integers(3, size=5)
            expected, got = sync.step(actions), on_ray.step(actions)
            for x, y in zip(expected[:4], got[:4], strict=True):
                assert x.dtype == y.dtype and np.array_equal(x, y), t
            assert same_infos(expected[4], got[4]), (t, expected[4], got[4])
            ends += int((expected[2] | expected[3]).sum())
        assert ends > 50 and np.array_equal(np.stack(sync.render()), np.stack(on_ray.render()))
        mask = np.array([False, True, False, False, True])  # one copy in each actor
        (a, a_info), (b, b_info) = (e.reset(seed=seeds, options={"reset_mask": mask}) for e in (sync, on_ray))
        assert np.array_equal(a, b) and same_infos(a_info, b_info)
        assert on_ray.get_attr("t") == sync.get_attr("t")
        on_ray.set_attr("label", ["a", "b", "c", "d", "e"])
        assert on_ray.call("get_wrapper_attr", "label") == ("a", "b", "c", "d", "e")
    finally:
        sync.close()
        on_ray.close()


def test_a_raising_or_hung_copy_fails_clearly_and_is_never_waited_for_again(ray_here):
    """An env that raises inside its actor, and one that does not answer within env.ray.timeout,
    become EnvsFailed naming the copies and node; later calls fail at once with the same message,
    and closing ends the stuck actor."""
    from drlrun.interrupt import EnvsFailed

    host = socket.gethostname()
    for call, words in ((("no_such_method",), "the environment raised AttributeError in a call of 'no_such_method'"),
                        (("nap", 30.0), "did not finish a call of 'nap' within env.ray.timeout=2 s")):
        sync, on_ray = make_pair(2, 1, timeout=2.0)
        sync.close()
        try:
            on_ray.reset(seed=[1, 2])
            started = time.monotonic()
            with pytest.raises(EnvsFailed) as failed:
                on_ray.call(*call)
            assert time.monotonic() - started < 20
            message = str(failed.value)
            assert message.startswith("env.vectorization=ray: env copies 0-1 of 2 (env.id='test_ray_envs.InfoEnv'), "
                                      "in Ray actor 1 of 1 on node "), message
            assert f"(host {host}," in message and words in message, message
            with pytest.raises(EnvsFailed) as again:
                on_ray.step(np.zeros(2, dtype=np.int64))
            assert str(again.value) == message
        finally:
            on_ray.close()


def test_an_unreachable_cluster_or_a_missing_ray_is_a_user_error_at_once(monkeypatch):
    """ray.init retries an address where nothing answers for minutes; drlrun asks the port first.
    Without Ray installed, the message names the extra."""
    from test_cluster import free_port

    from drlrun.envs_ray import check_reachable, import_ray
    from drlrun.errors import DrlrunError

    port = free_port()
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=f"nothing answers at .*:{port}"):
        check_reachable(f"127.0.0.1:{port}", 5.0)
    assert time.monotonic() - started < 5
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(DrlrunError, match=r"pip install 'drlrun\[ray\]'"):
        import_ray()
