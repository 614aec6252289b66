"""Sweeps the way they run beyond one process: on a real Ray cluster (a head started here with
``ray start --head``, joined through ``address=auto`` exactly as the README says) and through
the submitit launcher's local executor (the config path SLURM users take)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent

TINY = ("env.id=fake_envs:GuessEnv", "total_steps=400", "eval.interval=100", "eval.episodes=2",
        "log.interval=100", "algo.learning_starts=150", "algo.batch_size=16", "algo.train_freq=1")


# Ray's token authentication is for clusters reachable by others; this head listens on this
# machine for one test, and the token a user may keep in ~/.ray/auth_token is not this head's.
NO_TOKEN = {"RAY_AUTH_MODE": "disabled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_executable() -> str:
    return str(Path(sys.executable).parent / "ray")


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[str]:
    """A Ray head node of its own (``ray start --head --block`` in a new process group) at a free
    port; its address is yielded. Its workers import the tests' environments, as every node of a
    real cluster must have the user's code installed. Afterwards only that process group is stopped: a Ray cluster
    of the user's on this machine is left alone."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    log = (tmp_path / "ray_head.log").open("w")
    head = subprocess.Popen([ray_executable(), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **NO_TOKEN, "PYTHONPATH": str(TESTS_DIR)})
    try:
        deadline = time.monotonic() + 240
        while subprocess.run([ray_executable(), "status", f"--address={address}"], capture_output=True,
                             env={**os.environ, **NO_TOKEN}).returncode != 0:
            assert head.poll() is None, (tmp_path / "ray_head.log").read_text()
            assert time.monotonic() < deadline, "the Ray head did not come up within 4 minutes"
            time.sleep(2)
        yield address
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # --block: the head stops the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        log.close()
        # Ray notes the latest head in this file, and a later ray.init() with no address joins the
        # cluster it names: remove it where it names this (now stopped) head, as `ray stop` would.
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if current.is_file() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()


def check_sweep(sweep_dir: Path, jobs: int) -> None:
    rows = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert [(row["overrides"], row["status"], row["final_return_mean"]) for row in rows] == [
        (f"seed={i}", "completed", 1.0) for i in range(jobs)]
    summaries = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/summary.json"))]
    assert sorted(s["seed"] for s in summaries) == list(range(jobs))
    assert all(s["status"] == "completed" for s in summaries)


def test_a_sweep_on_a_running_ray_cluster_through_address_auto(cli, tmp_path, ray_head):
    """The README's cluster command. hydra-ray-launcher gives ray.init a small object store, which
    Ray refuses when joining a cluster; drlrun's sweep callback leaves it out there."""
    sweep_dir = tmp_path / "sweep"
    result = cli("-m", "hydra/launcher=ray", "hydra.launcher.ray.init.address=auto", "seed=0,1,2", *TINY,
                 f"hydra.sweep.dir={sweep_dir}", timeout=600, env_vars={"RAY_ADDRESS": ray_head, **NO_TOKEN})
    assert result.returncode == 0, result.stderr
    check_sweep(sweep_dir, 3)
    assert "3 of 3 jobs completed" in result.stdout


def test_a_sweep_through_submitit_runs_each_job_as_its_own_process(cli, tmp_path):
    """hydra/launcher=submitit_local: the submitit launcher SLURM users take
    (hydra/launcher=submitit_slurm), with its local executor."""
    sweep_dir = tmp_path / "sweep"
    result = cli("-m", "hydra/launcher=submitit_local", "seed=0,1", *TINY, f"hydra.sweep.dir={sweep_dir}",
                 timeout=600)
    assert result.returncode == 0, result.stderr
    check_sweep(sweep_dir, 2)
    logs = list(sweep_dir.glob(".submitit/*/*_log.out"))
    assert len(logs) == 2  # each job ran as a submitit job, with its own log
