"""The end of a multirun: one table of every job (overrides, status, final return, wall time).

Hydra calls :class:`SweepSummary` (registered in ``conf/config.yaml`` under ``hydra.callbacks``)
on the machine that launched the sweep, after the last job, whatever the launcher. Jobs never
raise out of the task function in a multirun (see ``drlrun.cli``): a job that fails or diverges
writes its summary.json with that status and the error, and the sweep goes on. The table is
printed and saved as ``sweep_summary.json`` and ``sweep_summary.md`` in the sweep directory.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict
from rich.console import Console
from rich.table import Table

from drlrun.checkpoint import atomic_write, write_json

# Jobs of the last sweep in this process that did not complete; the CLI exits non-zero if any.
FAILED_JOBS: list[str] = []


def _job_number(job_dir: Path) -> tuple[int, str]:
    head = job_dir.name.split("_", 1)[0]
    return (int(head), job_dir.name) if head.isdigit() else (1 << 30, job_dir.name)


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job directory (a directory with ``.hydra/overrides.yaml``) of the sweep."""
    rows = []
    job_dirs = sorted({p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")}, key=_job_number)
    # Hydra stores sweep values escaped (fake_envs\\:Env); show them as they were typed.
    every = [[re.sub(r"\\(.)", r"\1", o) for o in yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text()) or []]
             for d in job_dirs]
    shared = set.intersection(*(set(o) for o in every)) if every else set()
    for job_dir, all_overrides in zip(job_dirs, every, strict=True):
        overrides = [o for o in all_overrides if o not in shared] or all_overrides
        summary_path = job_dir / "summary.json"
        summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        rows.append({
            "job": job_dir.name.split("_", 1)[0],
            "overrides": " ".join(overrides),  # the ones that differ between jobs
            "shared_overrides": " ".join(o for o in all_overrides if o in shared),
            "status": summary.get("status", "missing"),
            "final_return_mean": summary.get("final_return_mean"),
            "wall_seconds": summary.get("wall_seconds"),
            "error": summary.get("error", "" if summary else "no summary.json: the job was killed or is running"),
            "dir": str(job_dir),
        })
    return rows


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def render(rows: list[dict[str, Any]], sweep_dir: Path) -> Table:
    shared = rows[0]["shared_overrides"] if rows else ""
    table = Table(title=f"Sweep {sweep_dir}" + (f"\nevery job: {shared}" if shared else ""), title_justify="left")
    for column in ("job", "overrides", "status", "final return", "wall (s)", "error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        style = "" if row["status"] == "completed" else "red"
        table.add_row(row["job"], row["overrides"], row["status"], _fmt(row["final_return_mean"]),
                      _fmt(row["wall_seconds"]), row["error"].splitlines()[0][:200] if row["error"] else "",
                      style=style)
    return table


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| job | overrides | status | final return | wall (s) | error |", "|---|---|---|---|---|---|"]
    for row in rows:
        error = row["error"].splitlines()[0].replace("|", "\\|") if row["error"] else ""
        lines.append(f"| {row['job']} | {row['overrides']} | {row['status']} | {_fmt(row['final_return_mean'])} "
                     f"| {_fmt(row['wall_seconds'])} | {error} |")
    return "\n".join(lines) + "\n"


def write_sweep_summary(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = collect(sweep_dir)
    write_json(sweep_dir / "sweep_summary.json", rows)
    atomic_write(sweep_dir / "sweep_summary.md", lambda f: f.write(markdown(rows).encode()))
    return rows


RAY_LAUNCHER = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"


def join_ray_cluster_as_given(config: DictConfig) -> None:
    """hydra-ray-launcher gives ``ray.init`` a small object store (``object_store_memory``) unless
    the config names one, and Ray refuses any object store size from a process that joins a
    running cluster (``hydra.launcher.ray.init.address=auto`` or ``HOST:PORT``): the cluster sized
    it already. So when an address is given and no size, the size is set to none (Ray's "not
    given"); a Ray that the sweep starts itself keeps the launcher's default."""
    launcher = config.hydra.launcher
    if launcher.get("_target_") != RAY_LAUNCHER:
        return
    init = launcher.ray.init
    if init.get("address") not in (None, "", "local") and "object_store_memory" not in init:
        with open_dict(init):
            init.object_store_memory = None


class SweepSummary(Callback):
    """Hydra callback: adjusts the launcher's settings before the sweep starts, and prints and
    saves the sweep's table once every job has returned."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        join_ray_cluster_as_given(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.exists():
            return
        rows = write_sweep_summary(sweep_dir)
        console = Console()
        console.print(render(rows, sweep_dir))
        failed = [row["job"] for row in rows if row["status"] not in ("completed", "pruned")]
        done = sum(row["status"] == "completed" for row in rows)
        pruned = sum(row["status"] == "pruned" for row in rows)
        console.print(f"{done} of {len(rows)} jobs completed{f', {pruned} pruned' if pruned else ''}. Table: {sweep_dir / 'sweep_summary.md'}. "
                      f"Compare them: drlrun-report {sweep_dir}", soft_wrap=True, highlight=False)
        FAILED_JOBS[:] = failed
