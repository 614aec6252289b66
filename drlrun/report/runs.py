"""Reading runs: which directories are runs, and what each one holds (its composed config, its
summary.json and the evaluation rows of its metrics.jsonl), as :class:`RunRecord`."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drlrun.config import flatten
from drlrun.errors import DrlrunError

COMPLETED = "completed"
RUNNING = "running"
EVAL_KEY = "eval/return_mean"
TIME_KEY = "eval/train_seconds"
# What summary.json records of the machine (drlrun.summary.machine): part of a group's identity.
MACHINE_KEYS = ("cpu", "numeric_path", "gpu")
RUN_FILES = ("summary.json", "metrics.jsonl", ".hydra/config.yaml")

RUN_DIR_HINT = ("A run directory is what `drlrun` writes for each run (outputs/<date>/<time>_..., "
                "or a job directory of a sweep under outputs/multirun/<date>/<time>/): it holds "
                "summary.json, metrics.jsonl or .hydra/config.yaml.")


def natural_key(text: str) -> list[Any]:
    """'2_seed=2' before '10_seed=10' (sweep job numbers)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def relative(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:  # another drive on Windows
        return str(path)


def finite(value: Any) -> float | None:
    """``value`` as a float if it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def is_run_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in RUN_FILES)


def find_run_dirs(root: Path) -> list[Path]:
    """Run directories at or under ``root`` (hidden directories and run directories' insides are
    not searched), in natural order so a sweep's jobs come as numbered."""
    if is_run_dir(root):
        return [root]
    found = []
    for dirpath, dirnames, _files in os.walk(root):
        here = Path(dirpath)
        if here != root and is_run_dir(here):
            found.append(here)
            dirnames.clear()
            continue
        dirnames[:] = sorted((d for d in dirnames if not d.startswith(".")), key=natural_key)
    return found


def _one_value_leaves(obj: Any) -> Any:
    """A loaded config with each list as one compact JSON value ([64,64]) and each empty mapping
    as '{}', so that :func:`drlrun.config.flatten` keeps them as one setting of the run."""
    if isinstance(obj, dict):
        return {key: _one_value_leaves(value) for key, value in obj.items()} if obj else "{}"
    if isinstance(obj, list):
        return json.dumps(obj, separators=(",", ":"), default=str)
    return obj


def flatten_config(obj: Any) -> dict[str, Any]:
    """A nested config as dotted keys: {'algo': {'lr': 0.001}} -> {'algo.lr': 0.001}."""
    return flatten(_one_value_leaves(obj)) if isinstance(obj, dict) and obj else {}


@dataclass
class RunRecord:
    """One run directory as read from disk (not :class:`drlrun.runner`'s run being trained)."""

    path: Path
    config: dict[str, Any]                 # flattened .hydra/config.yaml ({} if none)
    summary: dict[str, Any] | None         # summary.json (None while running)
    evals: list[dict[str, Any]]            # evaluation rows of metrics.jsonl, by step
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.summary is None:
            return RUNNING
        return str(self.summary.get("status") or COMPLETED)

    @property
    def final_return(self) -> float | None:
        """The summary's final evaluation mean (completed runs)."""
        return finite(self.summary.get("final_return_mean")) if self.summary else None

    @property
    def counted(self) -> bool:
        """In the return statistics: completed, with a final return."""
        return self.status == COMPLETED and self.final_return is not None

    @property
    def seed(self) -> Any:
        if self.summary and self.summary.get("seed") is not None:
            return self.summary["seed"]
        return self.config.get("seed")

    @property
    def algo(self) -> str:
        value = self.config.get("algo.name") or (self.summary or {}).get("algo")
        return str(value) if value else "unknown-algo"

    @property
    def env(self) -> str:
        value = self.config.get("env.id") or (self.summary or {}).get("env")
        return str(value) if value else "unknown-env"

    def threshold(self, override: float | None) -> float | None:
        """--threshold, else the one the run used (summary), else its config's."""
        if override is not None:
            return override
        for value in ((self.summary or {}).get("threshold"), self.config.get("eval.target_return"),
                      self.config.get("env.threshold")):
            if finite(value) is not None:
                return float(value)
        return None

    def curve(self, x_axis: str) -> tuple[list[float], list[float]]:
        """(x, eval return) pairs: x is the env step or the training seconds."""
        xs, ys = [], []
        for row in self.evals:
            x = finite(row.get("step") if x_axis == "step" else row.get(TIME_KEY))
            y = finite(row.get(EVAL_KEY))
            if x is not None and y is not None:
                xs.append(x)
                ys.append(y)
        return xs, ys

    def seconds_to_solve(self, threshold: float) -> float | None:
        """Training seconds (evaluation excluded) until the first evaluation >= threshold."""
        summary = self.summary or {}
        if summary.get("threshold") == threshold and "solved_at_step" in summary:
            if summary.get("solved_at_step") is None:
                return None
            if finite(summary.get("solved_at_seconds")) is not None:
                return float(summary["solved_at_seconds"])
        for row in self.evals:
            value = finite(row.get(EVAL_KEY))
            if value is not None and value >= threshold:
                return finite(row.get(TIME_KEY))
        return None


def _read_evals(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    by_step: dict[float, dict[str, Any]] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        notes.append(f"metrics.jsonl unreadable ({exc.strerror})")
        return []
    for line in text.splitlines():
        if EVAL_KEY not in line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written by a live run, or a torn one
        if isinstance(row, dict) and finite(row.get("step")) is not None:
            by_step[row["step"]] = row  # a resumed run may repeat a step: the last one wins
    return [by_step[s] for s in sorted(by_step)]


def _read_summary(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        loaded = None
    # summary.json is written atomically, so a bad one is not a live run: list it as such.
    return loaded if isinstance(loaded, dict) else {
        "status": "unreadable", "error": "summary.json is not a readable JSON object"}


def _read_config(path: Path, notes: list[str]) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return flatten_config(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        notes.append(".hydra/config.yaml unreadable: grouped by algo and env only")
        return {}


def read_run(path: Path) -> RunRecord:
    """Read what a run directory holds; anything missing or unreadable is noted, not fatal."""
    notes: list[str] = []
    summary = _read_summary(path / "summary.json")
    config = _read_config(path / ".hydra" / "config.yaml", notes)
    metrics = path / "metrics.jsonl"
    evals = _read_evals(metrics, notes) if metrics.is_file() else []
    if not config:
        source = summary or {}
        config = {"algo.name": source.get("algo", "unknown-algo"),
                  "env.id": source.get("env", "unknown-env")}
    for key in MACHINE_KEYS:  # the same seed learns differently on another CPU or numeric path
        if summary and key in summary:
            config[f"machine.{key}"] = summary[key]
    return RunRecord(path, config, summary, evals, notes)


def resolve_roots(paths: Sequence[str]) -> list[Path]:
    """The given paths as existing directories (a run's summary.json or metrics.jsonl stands for
    its run directory, a sweep's multirun.yaml for the sweep); every bad one is named in one
    error."""
    roots, missing, files = [], [], []
    for text in paths:
        path = Path(text).expanduser()
        if not path.exists():
            missing.append(text)
        elif path.is_file():
            if path.name in ("summary.json", "metrics.jsonl", "multirun.yaml"):
                roots.append(path.resolve().parent)
            else:
                files.append(text)
        else:
            roots.append(path.resolve())
    if missing:
        names = ", ".join(f"'{m}'" for m in missing)
        raise DrlrunError(f"{names} {'does' if len(missing) == 1 else 'do'} not exist. Give run "
                          "directories or sweep directories, e.g. drlrun-report outputs/multirun/"
                          "<date>/<time>.")
    if files:
        names = ", ".join(f"'{f}'" for f in files)
        raise DrlrunError(f"{names} {'is a file' if len(files) == 1 else 'are files'}, not a run "
                          f"or sweep directory. {RUN_DIR_HINT}")
    return roots


def collect_runs(roots: list[Path]) -> list[RunRecord]:
    """Every run under ``roots``, each once, in the order found; an error names roots with none."""
    seen: dict[Path, None] = {}
    empty = []
    for root in roots:
        found = find_run_dirs(root)
        if not found:
            empty.append(root)
        seen.update(dict.fromkeys(found))
    if empty:
        names = ", ".join(f"'{relative(p, Path.cwd())}'" for p in empty)
        raise DrlrunError(f"No runs found under {names}. {RUN_DIR_HINT}")
    return [read_run(path) for path in seen]
