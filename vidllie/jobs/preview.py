"""``vidllie preview``: the result at a few moments of a video, in seconds, before the full run.

At each of N moments (spread over the video, or chosen) the reader seeks to a short run of
frames ending at the moment (:class:`~vidllie.video.VideoReader`'s exact ``start``/``end``: only
the frames from the keyframe before the run are decoded, never the whole file); the
:class:`~vidllie.pipeline.enhancer.Enhancer` enhances the run as one stream, so the temporal stage
has built up its state, and the run's last frame is shown. The result is a contact sheet
(:mod:`~vidllie.jobs.sheet`): one row per moment, the input and one column per model, each
labelled with the time, the mean luma and the model; optionally a split-screen clip of the runs.
The measured per-frame time (moments after the first: the first includes loading and compiling
for the frame size) times the frame count estimates the full run::

    from vidllie import preview
    r = preview("night.mp4", "sheet.png", models=["default", "fast"])
    r["sheet"]                           # (H, W, 3) uint8
    r["moments"][0]["luma_out"]["fast"]  # mean luma after, 0..255
    r["full_run"]["seconds"]["default"]  # estimated time of `vidllie enhance` on this machine
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidllie.errors import InputError, OutputError
from vidllie.jobs.plan import check_output_file, is_pipe, is_url, parse_time
from vidllie.jobs.sheet import contact_sheet, split_screen, write_png
from vidllie.ops.color import mean_luma
from vidllie.pipeline.enhancer import Enhancer
from vidllie.pipeline.hdr import HdrConversion, conversion_for
from vidllie.video import VideoReader, VideoWriter

MOMENTS = 4
# Frames enhanced per moment: the temporal stage's per-pixel average then spans 8 frames (it
# caps near 18 at the default strength) and its brightness state has followed 7 frames, while 4
# moments stay a few percent of a 1000-frame clip.
RUN_FRAMES = 8
CELL_WIDTH = 480


def moment_times(lo: float, hi: float, n: int) -> list[float]:
    """``n`` times spread over [lo, hi): the centre of each of ``n`` equal parts.

    >>> moment_times(0.0, 40.0, 4)
    [5.0, 15.0, 25.0, 35.0]
    """
    return [lo + (hi - lo) * (i + 0.5) / n for i in range(n)]


def format_time(seconds: float) -> str:
    """``75.25`` -> ``1:15.25``; hours when needed (``1:02:03.00``).

    >>> format_time(75.25), format_time(3723.0)
    ('1:15.25', '1:02:03.00')
    """
    m, s = divmod(max(0.0, seconds), 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:05.2f}" if h else f"{m}:{s:05.2f}"


def parse_moments(at: str | Sequence[str | float] | None) -> list[float] | None:
    """``"0:10,1:30"`` (or a list of times) -> seconds; InputError for a malformed or negative one.

    >>> parse_moments("0:10, 90.5")
    [10.0, 90.5]
    """
    if at is None:
        return None
    items = at.split(",") if isinstance(at, str) else list(at)
    times = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            raise InputError(f"--at: an empty time in {at!r}: give times like 0:10,1:30")
        try:
            t = parse_time(item) if isinstance(item, str) else float(item)
        except InputError as err:
            raise InputError(f"--at: {err}") from None
        if t is None or t < 0 or t != t:
            raise InputError(f"--at: time must be >= 0 seconds, got {item!r}")
        times.append(t)
    if not times:
        raise InputError("--at: give at least one time")
    return times


def _luma(image: np.ndarray) -> float:
    """Mean BT.709 luma on the 0..255 scale (uint16 input scaled)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    return float(mean_luma(x)[0]) * (255.0 / 65535.0 if image.dtype == np.uint16 else 1.0)


def _model_name(model: Any) -> str:
    if isinstance(model, torch.nn.Module):
        return type(model).__name__
    text = os.fspath(model)
    return Path(text).stem if ("/" in text or text.endswith(".safetensors")) else text


def _as_sdr(images: list[np.ndarray], conversion: HdrConversion | None) -> list[np.ndarray]:
    """HDR input frames as the model sees them (SDR BT.709, uint16), for the input column."""
    if conversion is None:
        return images
    x = torch.from_numpy(np.stack(images).astype(np.float32) / 65535.0).permute(0, 3, 1, 2)
    sdr, _ = conversion.to_sdr(x)  # (B, 3, H, W) in [0, 1]
    out = (sdr.clamp(0, 1) * 65535.0 + 0.5).to(torch.int32).permute(0, 2, 3, 1).numpy()
    return list(out.astype(np.uint16))


def _read_run(source: str, t: float, frames: int, fps: float, lo: float, end: float | None,
              video_stream: int | None = None) -> tuple[list, float, int]:
    """Up to ``frames`` frames ending at ``t`` (not before ``lo``): (images, time of the last, frames decoded)."""
    run_start = max(lo, t - (frames - 0.5) / fps)  # [run_start, stop) holds `frames` frame slots
    stop = t + 0.5 / fps if end is None else min(t + 0.5 / fps, end)
    with VideoReader(source, start=run_start, end=stop, max_frames=frames, passthrough=False,
                     allow_hdr="convert", video_stream=video_stream) as reader:  # HLG/PQ: converted as `enhance` does
        got = list(reader)
        stream_start = reader.info.start_time - run_start
        decoded = reader.frames_decoded
    return [f.image for f in got], got[-1].time - stream_start, decoded


def preview(
    source: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    models: Sequence[Any] = ("default",),
    at: str | Sequence[str | float] | None = None,
    moments: int = MOMENTS,
    frames: int = RUN_FRAMES,
    start: float | str | None = None,
    end: float | str | None = None,
    clip: str | os.PathLike | None = None,
    overwrite: bool = False,
    width: int = CELL_WIDTH,
    progress: Callable[[int, int], None] | None = None,
    video_stream: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Enhance a few moments of ``source``; returns the sheet (an array) and the figures.

    ``models``: one column each (names, paths or modules, as for :class:`Enhancer`). ``at``:
    the moments (``"0:10,1:30"`` or seconds), else ``moments`` spread over [start, end).
    ``frames``: frames enhanced at each moment (the last is shown). ``output``: also write the
    sheet there as PNG; ``clip``: a split-screen video (input left, first model's output right)
    of every moment's run. ``width``: each cell's width in the sheet. ``options``:
    :class:`~vidllie.pipeline.options.EnhanceConfig` fields (device, temporal, runtime, ...).
    Files are written whole or not at all; ``overwrite`` replaces existing ones.
    ``video_stream``: which video stream of the input (as ``vidllie enhance --video-stream``).
    """
    began = time.perf_counter()
    src = os.fspath(source)
    if is_url(src) or is_pipe(src):
        raise InputError(f"preview seeks in a file: {src} is a stream; enhance a recorded piece of it")
    if moments < 1 or frames < 1 or width < 16:
        raise ValueError("moments and frames must be >= 1, width >= 16")
    if not models:
        raise ValueError("give at least one model")
    lo = parse_time(start) if isinstance(start, str) else start
    end = parse_time(end) if isinstance(end, str) else end
    lo = lo or 0.0
    chosen = parse_moments(at)
    for path in (output, clip):
        if path is not None:
            check_output_file(path, "output")
            if Path(path).exists() and not overwrite:
                raise OutputError(f"{path} exists; pass -y to overwrite")

    with VideoReader(src, passthrough=False, allow_hdr="convert", video_stream=video_stream) as probe:  # one frame
        info = probe.info
    conversion = conversion_for(info.hdr, "sdr")  # HLG/PQ: shown and enhanced as SDR BT.709
    decoded = 1
    fps = float(info.fps or 25)
    duration = info.duration
    hi = min(end, duration) if (end is not None and duration) else (end or duration)
    name = Path(src).name
    if hi is None:
        raise InputError(f"cannot tell how long {name} is: choose the moments with --at")
    if lo >= hi:
        raise InputError(f"--start {format_time(lo)} is at or beyond the end of {name} ({format_time(hi)})")
    if chosen is None:
        chosen = moment_times(lo, hi, moments)
    for t in chosen:
        if t >= hi:
            raise InputError(f"--at {format_time(t)} is beyond the end of {name} ({format_time(hi)})")
        if t < lo:
            raise InputError(f"--at {format_time(t)} is before --start ({format_time(lo)})")

    runs, times = [], []
    for t in chosen:
        images, shown, n = _read_run(src, t, frames, fps, lo, end, video_stream)
        runs.append(images)
        times.append(shown)
        decoded += n

    names = [_model_name(m) for m in models]
    outputs: list[list[list[np.ndarray]]] = []  # [model][moment] -> frames
    per_frame: dict[str, float] = {}
    total, done = len(models) * sum(len(r) for r in runs), 0
    for model, label in zip(models, names):
        enhancer = Enhancer(model, **options)
        enhancer.hdr = conversion
        per_moment, seconds = [], []
        for images in runs:
            t0 = time.perf_counter()
            per_moment.append(list(enhancer.enhance_frames(images)))
            seconds.append(time.perf_counter() - t0)
            done += len(images)
            if progress is not None:
                progress(done, total)
        # The first moment includes loading and compiling for the frame size: time the others.
        steady = slice(1, None) if len(runs) > 1 else slice(None)
        per_frame[label] = sum(seconds[steady]) / sum(len(r) for r in runs[steady])
        outputs.append(per_moment)
        temporal = enhancer.smoother.strength

    runs = [_as_sdr(r, conversion) for r in runs]  # the input column: HDR shown as the model saw it
    full_frames = info.estimated_frames if (start is None and end is None) else None
    full_frames = full_frames or max(1, round((hi - lo) * fps))
    rows, labels, figures = [], [], []
    for i, (images, shown) in enumerate(zip(runs, times)):
        stamp = format_time(shown)
        luma_in = _luma(images[-1])
        luma_out = {label: _luma(outputs[m][i][-1]) for m, label in enumerate(names)}
        row = [(images[-1], f"{stamp}  input  luma {luma_in:.1f}")]
        row += [(outputs[m][i][-1], f"{stamp}  {label}  luma {luma_out[label]:.1f}") for m, label in enumerate(names)]
        rows.append(row)
        labels.append([text for _, text in row])
        figures.append({"time": shown, "requested": chosen[i], "frames": len(images),
                        "luma_in": luma_in, "luma_out": luma_out})
    title = (f"{name}  {info.width}x{info.height}  {frames} frames enhanced per moment, the last shown  "
             f"temporal {temporal:g}" + (f"  {info.hdr} -> SDR" if conversion else ""))
    sheet = contact_sheet(rows, title=title, width=min(width, info.width))

    clip_path = None
    if clip is not None:
        clip_info = dataclasses.replace(info, passthrough=(), timecode=None,
                                        time_base=1 / Fraction(info.fps or 25))
        with VideoWriter(clip, clip_info, audio=False, overwrite=overwrite) as writer:
            for images, outs in zip(runs, outputs[0]):
                for before, after in zip(images, outs):
                    writer.write(split_screen(before, after))
        clip_path = writer.path
    sheet_path = write_png(sheet, output, overwrite=overwrite) if output is not None else None
    return {
        "source": src, "output": sheet_path, "clip": clip_path, "sheet": sheet, "models": names,
        "moments": figures, "labels": labels, "frames_decoded": decoded,
        "hdr": conversion.describe() if conversion else None,
        "seconds": time.perf_counter() - began,
        "full_run": {"frames": full_frames, "per_frame_seconds": per_frame,
                     "seconds": {k: v * full_frames for k, v in per_frame.items()}},
    }
