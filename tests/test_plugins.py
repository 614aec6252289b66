"""Plug-ins as a user writes them: the README's example agent (from the README's text alone) and
the example package under examples/, each installed with pip and run through the CLI: train,
checkpoint, resume, drlrun-eval, drlrun-export. And the contract refusing a class that misses a
part, by name, with exit 2 and no traceback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TESTS_DIR, drlrun_executable, python_path

ROOT = Path(__file__).resolve().parents[1]


def pip_install(source: Path, target: Path) -> Path:
    """``pip install`` a plug-in folder into ``target`` (put on PYTHONPATH by the tests), as a user
    would into their environment: real dist-info, real entry points. No network: the build
    backend (setuptools) is the one already installed."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True, text=True)
    return target


def readme_plugin(folder: Path) -> Path:
    """The README's plug-in example: each code block after a ``plugin-example: FILE`` marker."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"<!-- plugin-example: (\S+).*?-->\n```\w+\n(.*?)```", readme, flags=re.S)
    assert {name for name, _ in blocks} == {"my_agent.py", "pyproject.toml"}, blocks
    folder.mkdir(parents=True)
    for name, text in blocks:
        (folder / name).write_text(text)
    return folder


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def metric_rows(run_dir: Path) -> list[dict]:
    drop = {"wall_time", "charts/SPS", "eval/train_seconds"}
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in drop} for row in rows]


def stop_after_first_checkpoint(args: tuple[str, ...], run_dir: Path, site: Path, cwd: Path) -> None:
    """Start ``drlrun ARGS`` and send SIGTERM as soon as its first checkpoint is on disk: the run
    saves a checkpoint at the step it reached and stops with 143 (Ctrl-C's way out)."""
    env = {**os.environ, "PYTHONPATH": python_path(TESTS_DIR, site)}
    proc = subprocess.Popen([drlrun_executable(), *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    latest = run_dir / "checkpoints" / "latest.pt"
    deadline = time.monotonic() + 300
    while not latest.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err  # stopped part-way, with a checkpoint


def train_resume_eval_export(cli, tmp_path: Path, site: Path, algo: str, steps: int, *extra: str) -> dict:
    """Train ``algo`` for ``steps``; train it again, stopped by SIGTERM after its first
    checkpoint and resumed: the two runs must log the same metrics. Then evaluate and export the
    resumed run. Returns its summary."""
    common = (f"algo={algo}", "env=CartPole-v1", "env.num_envs=4", f"total_steps={steps}",
              f"eval.interval={steps // 4}", "eval.episodes=4", "log.interval=500", "checkpoint.interval=1000",
              "log.progress=false", *extra)
    whole, split = tmp_path / "whole", tmp_path / "split"
    result = cli(*common, f"hydra.run.dir={whole}", extra_path=site)
    assert result.returncode == 0, result.stderr
    stop_after_first_checkpoint((*common, f"hydra.run.dir={split}"), split, site, tmp_path)
    result = cli(f"resume={split}", extra_path=site)
    assert result.returncode == 0, result.stderr
    assert summary(split)["resumes"] == 1
    assert metric_rows(split) == metric_rows(whole)  # resume really resumes
    result = cli(str(split), "episodes=3", extra_path=site, exe="drlrun-eval")
    assert result.returncode == 0, result.stderr
    result = cli(str(split), "format=torchscript", extra_path=site, exe="drlrun-export")
    assert result.returncode == 0, result.stderr
    assert (split / "export" / "policy.pt").is_file()
    return summary(split)


def test_the_readme_plugin_trains_resumes_evaluates_and_exports(cli, tmp_path):
    site = pip_install(readme_plugin(tmp_path / "my_agent"), tmp_path / "site")
    result = cli("--cfg", "job", "algo=best_action", extra_path=site)
    assert result.returncode == 0 and "epsilon: 0.1" in result.stdout, result.stderr
    done = train_resume_eval_export(cli, tmp_path, site, "best_action", 20_000)
    assert done["status"] == "completed" and done["total_steps"] == 20_000


def test_the_example_package_learns_cartpole_through_the_cli(cli, tmp_path):
    """Tabular Q-learning is numpy and Python floats only (CartPole too), so this outcome is the
    same on every CPU; a random policy scores about 22."""
    site = pip_install(ROOT / "examples" / "drlrun-tabular", tmp_path / "site")
    done = train_resume_eval_export(cli, tmp_path, site, "tabular_q", 40_000)
    assert done["final_return_mean"] > 60, done


def test_the_contract_resume_and_export_tests_cover_a_new_algorithm_without_edits(tmp_path):
    """Installing the example package is all it takes: the registry-driven test cases include it,
    and they pass."""
    site = pip_install(ROOT / "examples" / "drlrun-tabular", tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": python_path(site)}
    files = ["tests/test_agents.py", "tests/test_resume.py", "tests/test_eval_export.py"]
    # (the pytest script, not `python -m pytest`, which would put the working directory, the
    # source tree, before the installed drlrun on sys.path)
    result = subprocess.run([drlrun_executable("pytest"), "-q", "-p", "no:cacheprovider", "-k", "tabular_q",
                             *files], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:]
    ran = re.search(r"(\d+) passed", result.stdout)
    assert ran and int(ran.group(1)) >= 5, result.stdout[-3000:]  # contract, resume, 3 export formats


BROKEN = '''
from dataclasses import dataclass


@dataclass
class HalfConfig:
    name: str = "half"


class HalfAgent:
    Config = HalfConfig
    action_spaces = ("discrete",)

    def __init__(self, cfg, ctx):
        pass

    def act(self, obs, *, explore, deterministic=True):
        return obs[:, 0].astype(int) * 0

    def state_dict(self):
        return {}
'''


def test_an_agent_missing_required_methods_is_refused_by_name(cli, tmp_path):
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "half_agent.py").write_text(BROKEN)
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "half-agent"\nversion = "0.1"\n[tool.setuptools]\npy-modules = ["half_agent"]\n'
        '[project.entry-points."drlrun.algos"]\nhalf = "half_agent:HalfAgent"\n')
    site = pip_install(folder, tmp_path / "site")
    result = cli("algo=half", "total_steps=100", f"hydra.run.dir={tmp_path / 'r'}", extra_path=site)
    assert result.returncode == 2
    assert "agent contract" in result.stderr and "observe, update, load_state_dict" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r" / "summary.json").exists()
    # the broken plug-in leaves every other algorithm usable
    result = cli("algo=ppo", "total_steps=256", "eval.episodes=1", f"hydra.run.dir={tmp_path / 'ok'}",
                 extra_path=site)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("attribute, message", [
    ("Config = None", "needs a 'Config' dataclass"),
    ('action_spaces = ("pixels",)', "action_spaces"),
])
def test_the_contract_names_a_bad_class_attribute(attribute, message):
    from drlrun.agent import check_agent_class
    from drlrun.algos.ppo import PPO
    from drlrun.errors import DrlrunError

    namespace: dict = {}
    exec(f"class Bad(PPO):\n    {attribute}\n", {"PPO": PPO}, namespace)
    with pytest.raises(DrlrunError, match=message):
        check_agent_class("algorithm", "ppo", namespace["Bad"])
