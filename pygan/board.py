"""TensorBoard event files of a run (``pygan train --tensorboard``), written through tensorboardX
(the ``tensorboard`` extra): the step and epoch statistics as scalars and each epoch's samples as
an image, all against the run's step count."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

#: The extra that installs the writer.
EXTRA = "pip install 'pygan[tensorboard]'"


class EventLog:
    """A run's TensorBoard log in ``folder``.

    ``purge_step``: on a resumed run, the step it resumes at: TensorBoard then drops the events
    the interrupted run wrote beyond it, as ``metrics.jsonl`` is trimmed.
    """

    def __init__(self, folder: str | os.PathLike[str], purge_step: int | None = None) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ImportError(f"TensorBoard logs need tensorboardX: {EXTRA}") from None
        # tensorboardX names a file by the second it opens it (and truncates one of that name): a
        # count of the files before it keeps a quick resume from replacing the last one
        written = len(list(Path(folder).glob("events.out.tfevents.*"))) if Path(folder).is_dir() else 0
        self.writer = SummaryWriter(logdir=os.fspath(folder), purge_step=purge_step, flush_secs=30,
                                    filename_suffix=f".{written:04d}")

    def scalars(self, group: str, row: dict[str, Any], step: int) -> None:
        """Every finite number of ``row`` as the scalar ``group/key`` at ``step`` (counters,
        texts and lists are left out)."""
        for key, value in row.items():
            if key in ("kind", "epoch", "batch", "steps", "seconds", "best_epoch") or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)) and np.isfinite(value):
                self.writer.add_scalar(f"{group}/{key}", float(value), global_step=step)

    def image(self, tag: str, picture: np.ndarray, step: int) -> None:
        """A uint8 picture ``(H, W)`` or ``(H, W, 3)`` (what ``pygan.plot`` draws) at ``step``."""
        rgb = picture if picture.ndim == 3 else np.repeat(picture[:, :, None], 3, axis=2)
        self.writer.add_image(tag, np.ascontiguousarray(rgb[:, :, :3]), global_step=step, dataformats="HWC")

    def close(self) -> None:
        """Write what is buffered and close the file."""
        self.writer.close()
