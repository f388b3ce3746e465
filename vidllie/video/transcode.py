"""Read -> (optional per-frame function) -> write, with audio passthrough. Used by tests and tools."""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from .info import Frame
from .reader import VideoReader
from .writer import VideoWriter


def transcode(src: str | os.PathLike, dst: str | os.PathLike, *,
              process: Callable[[np.ndarray], np.ndarray] | None = None,
              start: float | None = None, end: float | None = None,
              reader_options: dict | None = None, **writer_options) -> dict:
    """Stream ``src`` into ``dst`` frame by frame (identity when ``process`` is None).

    ``process`` maps an (H, W, 3) image to an image of the same shape and dtype family.
    Trimmed output (start/end) is rebased to start at 0. Returns simple counts.
    """
    with VideoReader(src, start=start, end=end, **(reader_options or {})) as reader:
        info = reader.info
        offset = info.start_time if (start or end is not None) else 0.0
        writer_options.setdefault("time_offset", offset)
        frames = packets = 0
        with VideoWriter(dst, info, **writer_options) as writer:
            for item in reader.stream():
                if isinstance(item, Frame):
                    image = process(item.image) if process else item.image
                    writer.write(image, item.pts, item.time_base)
                    frames += 1
                else:
                    writer.mux(item)
                    packets += 1
    return {"frames": frames, "passthrough_packets": packets, "width": info.width,
            "height": info.height, "fps": float(info.fps) if info.fps else None}
