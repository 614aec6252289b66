"""``log.backends=[tensorboard]`` (the default): TensorBoard event files in the run directory.

Each finished episode is a point at the step it ended (``charts/episodic_return``,
``charts/episodic_length``); every other tag is a point per row; the flattened config against
the final results fills the HParams tab. A resumed run drops what the stopped process logged
after its checkpoint (the writer's ``purge_step``), so no step is there twice.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from drlrun.sink import EPISODE_TAGS, SinkContext


class TensorBoardSink:
    """A ``SummaryWriter`` on the run directory."""

    def __init__(self, ctx: SinkContext) -> None:
        from torch.utils.tensorboard import SummaryWriter

        purge = None if ctx.resume_step is None else ctx.resume_step + 1
        self.writer: Any = SummaryWriter(log_dir=str(ctx.run_dir), purge_step=purge)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            if tag not in EPISODE_TAGS:  # TensorBoard has every episode at its own step already
                self.writer.add_scalar(tag, value, step)

    def episodes(self, steps: list[int], returns: list[float], lengths: list[int]) -> None:
        return_tag, length_tag = EPISODE_TAGS
        for step, ret, length in zip(steps, returns, lengths, strict=True):
            self.writer.add_scalar(return_tag, ret, step)
            self.writer.add_scalar(length_tag, length, step)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        values = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
        clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        exp, ssi, sei = hparams_summary(values, clean)
        file_writer = self.writer._get_file_writer()
        for summary in (exp, ssi, sei):
            file_writer.add_summary(summary)
        for tag, value in clean.items():
            self.writer.add_scalar(tag, value)

    def flush(self) -> None:
        self.writer.flush()

    def close(self, *, status: str, artifacts: list[Path]) -> None:
        self.writer.flush()
        self.writer.close()
