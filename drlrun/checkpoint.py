"""Checkpoints: written atomically, read back without ever unpickling code.

A checkpoint is a ``torch.save`` file holding only tensors and plain Python values. It is loaded
with ``torch.load(weights_only=True)``, which refuses any other object instead of running it,
and carries a header (format, algorithm, environment, shapes) checked before the agent is touched.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from drlrun.errors import DrlrunError

FORMAT = "drlrun-checkpoint"
VERSION = 1


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Any) -> None:
    """Write through ``write(file)`` to a temp file in the same directory, fsync, then rename.

    A crash at any moment leaves either the old file or the new one, never a torn file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the file should read like any other
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save(path: Path, header: dict[str, Any], state: dict[str, Any]) -> None:
    payload = {"format": FORMAT, "version": VERSION, "header": header, "state": state}
    atomic_write(path, lambda f: torch.save(payload, f))


def load(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(header, state)``; anything but a drlrun checkpoint is refused with a clear error."""
    path = Path(path)
    if not path.is_file():
        raise DrlrunError(f"Checkpoint {str(path)!r} does not exist.")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise DrlrunError(f"{str(path)!r} is not a readable checkpoint (corrupt, truncated, or not a torch.save file).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DrlrunError(
            f"Refused to load {str(path)!r}: it holds pickled Python objects, which could run code. "
            f"drlrun checkpoints hold only tensors and plain values. ({str(exc).splitlines()[0]})"
        ) from exc
    except Exception as exc:
        raise DrlrunError(f"{str(path)!r} is not a readable checkpoint (corrupt or truncated): {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DrlrunError(f"{str(path)!r} is not a drlrun checkpoint (no '{FORMAT}' header).")
    if payload.get("version") != VERSION:
        raise DrlrunError(f"{str(path)!r} has checkpoint version {payload.get('version')}; this drlrun reads {VERSION}.")
    return payload["header"], payload["state"]


def check_header(path: str | Path, header: dict[str, Any], expected: dict[str, Any]) -> None:
    """Fail, naming both values, where the checkpoint was made for another algorithm/env/shape."""
    for key, want in expected.items():
        if key not in header and key not in ("algo", "env"):
            continue  # written before drlrun recorded it; loading the weights still checks shapes
        got = header.get(key)
        if got != want:
            raise DrlrunError(
                f"Checkpoint {str(path)!r} was written for {key}={got!r}, but this run has {key}={want!r}."
            )


def write_json(path: Path, content: Any) -> None:
    """``content`` as indented JSON, written atomically."""
    atomic_write(path, lambda f: f.write((json.dumps(content, indent=2) + "\n").encode()))


def load_agent_state(agent: Any, state: dict[str, Any], path: str | Path, algo: str) -> None:
    """The checkpoint's agent state into ``agent``, or a DrlrunError naming the checkpoint."""
    try:
        agent.load_state_dict(state["agent"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise DrlrunError(f"Checkpoint {str(path)!r} does not fit this run's {algo} agent: "
                          f"{str(exc).splitlines()[0]}") from exc
