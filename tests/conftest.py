from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from drlrun.compose import register_configs

TESTS_DIR = Path(__file__).parent
register_configs()


def drlrun_executable(name: str = "drlrun") -> str:
    """The installed console script (drlrun, drlrun-eval, ...), as a user would type it."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def python_path(*paths: str | Path) -> str:
    """PYTHONPATH with ``paths`` in front of the one inherited. No empty entry: Python reads one as
    the working directory, which in the repository would put the source tree before the
    installed drlrun (a non-editable install, as in CI, has its configs only there)."""
    inherited = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    return os.pathsep.join(str(p) for p in [*paths, *inherited] if str(p))


def run_cli(*args: str, cwd: Path, extra_path: Path | None = None, timeout: int = 300,
            env_vars: dict[str, str] | None = None, exe: str = "drlrun") -> subprocess.CompletedProcess[str]:
    """Run ``drlrun ARGS`` (or ``exe ARGS``) in a subprocess; tests' fake environments are importable."""
    env = dict(os.environ)
    paths = [str(TESTS_DIR)] + ([str(extra_path)] if extra_path else [])
    env["PYTHONPATH"] = python_path(*paths)
    env.pop("HYDRA_FULL_ERROR", None)
    env.update(env_vars or {})
    return subprocess.run([drlrun_executable(exe), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def cli(tmp_path: Path):
    def _run(*args: str, **kwargs):
        return run_cli(*args, cwd=tmp_path, **kwargs)

    return _run
