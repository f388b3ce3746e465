"""One video file (or URL) through an :class:`~vidllie.pipeline.enhancer.Enhancer`: reader,
writer, the streaming loop and the run's stats. This module owns that wiring:
:func:`enhance_video_file` runs a file through an enhancer already loaded, :func:`enhance_video`
(``vidllie.enhance_video``) loads one for the file.
The run loop (:func:`run_enhancement`) and the stats (:func:`run_stats`) are shared with live
recording (:func:`vidllie.jobs.live.enhance_live`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

import numpy as np

from vidllie.jobs.streaming import StreamCounts, run_stream
from vidllie.pipeline.enhancer import Enhancer
from vidllie.pipeline.environment import codec_threads, torch_threads
from vidllie.pipeline.hdr import HdrConversion, check_mode as check_hdr_mode, conversion_for
from vidllie.pipeline.options import EnhanceConfig
from vidllie.pipeline.transfer import bits_per_component
from vidllie.video import Frame, PassthroughPacket, VideoInfo, VideoReader, VideoWriter
from vidllie.video.info import warn


def enhance_video_file(
    enhancer: Enhancer,
    src: str | os.PathLike | BinaryIO,
    dst: str | os.PathLike | BinaryIO,
    *,
    start: float | None = None,
    end: float | None = None,
    codec: str | None = None,
    crf: int | None = 18,
    preset: str | None = "medium",
    pix_fmt: str | None = None,
    audio: bool = True,
    overwrite: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
    queue_size: int = 8,
    max_frames: int | None = None,
    format: str | None = None,
    input_format: str | None = None,
    input_options: dict[str, str] | None = None,
    hdr: str = "sdr",
    video_stream: int | None = None,
) -> dict[str, Any]:
    """Enhance a video file (or URL) into ``dst`` with ``enhancer``; returns the stats dict.

    Audio and other passthrough streams are copied unchanged; per-frame timestamps are kept
    (``start``/``end`` in seconds trim, and the output then starts at 0). The output appears
    under ``dst`` only when complete. ``progress(frames_done, total_or_None)`` is called at
    the start and after every batch written. ``max_frames`` stops after that many frames
    (audio stops with them).

    ``src``/``dst`` may be ``"-"`` (standard input/output) or file objects, read and written
    as streams (see :mod:`vidllie.video.pipes`); ``format`` names the output container
    (default: from the suffix, Matroska for a stream; ``"rawvideo"`` for bare frames),
    ``input_format``/``input_options`` the demuxer and its options (e.g. "rawvideo" with
    :func:`~vidllie.video.pipes.raw_video_options`).

    ``hdr``: what HDR (HLG/PQ) input becomes (see :mod:`vidllie.pipeline.hdr`): "sdr" (default,
    converted to SDR BT.709 before the model), "keep" (10-bit HEVC HLG BT.2020 out, highlights
    kept) or "as-is" (code values untouched). The stats' ``hdr`` section says what was done.
    ``video_stream``: which of several video streams to enhance (FFmpeg's stream number; default
    the first), e.g. the rear camera of a dual-channel dashcam file.
    """
    check_hdr_mode(hdr)
    enhancer.reset()
    enhancer.reset_stats()
    t_start = time.perf_counter()
    threads = codec_threads()  # None: FFmpeg's automatic count (no cgroup quota below the CPUs)
    with VideoReader(src, start=start, end=end, max_frames=max_frames, format=input_format,
                     options=input_options, threads=threads or "AUTO", video_stream=video_stream,
                     allow_hdr=True if hdr == "as-is" else "convert") as reader:
        info = reader.info
        conversion = conversion_for(info.hdr, hdr)
        if hdr == "keep" and info.hdr is None:
            warn(f"{reader.source} is SDR: hdr='keep' has nothing to keep, writing SDR BT.709")
        keep = conversion is not None and conversion.mode == "keep"
        offset = info.start_time if (start or end is not None) else 0.0
        writer = VideoWriter(
            dst, info, codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt, audio=audio,
            time_offset=offset, overwrite=overwrite, format=format,
            options={"threads": str(threads)} if threads else None, hdr="HLG" if keep else None,
        )
        enhancer.hdr = conversion  # for this run only: enhance_frames() and others never see it
        try:
            counts = run_enhancement(enhancer, reader.stream(), writer, info,
                                     total=info.estimated_frames, progress=progress,
                                     queue_size=queue_size)
        finally:
            enhancer.hdr = None
    return run_stats(enhancer, counts, t_start, source=reader.source, output=str(writer.path),
                     info=info, writer=writer, crf=crf, preset=preset, start=start, end=end,
                     audio=audio, hdr=hdr_stats(info, hdr, conversion))


def enhance_video(src: str | os.PathLike | BinaryIO, dst: str | os.PathLike | BinaryIO, **options: Any) -> dict[str, Any]:
    """Enhance ``src`` into ``dst`` with a fresh :class:`~vidllie.pipeline.enhancer.Enhancer`;
    returns the stats dict.

    ``options`` are :class:`~vidllie.pipeline.options.EnhanceConfig` fields (model, dino, device,
    precision, batch_size, chunk, temporal, dino_cache, ...) and :func:`enhance_video_file`
    arguments (start, end, codec, crf, preset, pix_fmt, audio, overwrite, progress, hdr, ...).

    Example:
        >>> stats = enhance_video("night.mp4", "night_enhanced.mp4", device="cuda")  # doctest: +SKIP
        >>> stats["fps"], stats["dino_cache"]["hit_rate"]                            # doctest: +SKIP
    """
    config, video_options = EnhanceConfig.split(options)
    return enhance_video_file(Enhancer(config.model, config=config), src, dst, **video_options)


def hdr_stats(info: VideoInfo, mode: str, conversion: HdrConversion | None) -> dict[str, Any]:
    """The stats' ``hdr`` section: whether the input was HDR and what was done with it."""
    if conversion is not None:
        return conversion.describe()
    if info.hdr is None:
        return {"input": None, "mode": mode, "output": "SDR BT.709", "conversion": None}
    return {"input": info.hdr, "mode": mode, "output": "code values as-is, tagged SDR BT.709",
            "conversion": None}


def run_enhancement(
    enhancer: Enhancer,
    items: Iterable[Frame | PassthroughPacket],
    writer: VideoWriter,
    info: VideoInfo,
    *,
    total: int | None,
    progress: Callable[[int, int | None], None] | None,
    queue_size: int,
) -> StreamCounts:
    """The run loop of files and live inputs: ``items`` (frames and passthrough packets in demux
    order) through the enhancer's batches into ``writer`` with :func:`run_stream`, which closes
    the writer on success and aborts it on any error. ``progress(frames_done, total)`` is called
    at the start and after every batch written.
    """
    done = 0

    def on_written(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    if progress is not None:
        progress(0, total)
    out_wide = info.bit_depth > 8 or bits_per_component(writer.pix_fmt) > 8

    def process(images: list[np.ndarray]):
        # 16-bit frames for >8-bit input or output: the writer takes both for any pix_fmt.
        return enhancer.process_batch(images, wide_output=out_wide)

    # Set torch's thread count once for the run (the enhancer's small stages set theirs inside).
    with torch_threads(enhancer.torch_threads):
        return run_stream(
            items, writer, process, batch_size=enhancer.batch_size, timer=enhancer.timer,
            queue_size=queue_size, progress=on_written,
        )


def run_stats(
    enhancer: Enhancer,
    counts: StreamCounts,
    t_start: float,
    *,
    source: str,
    output: str | list[str],
    info: VideoInfo,
    writer: VideoWriter,
    crf: int | None,
    preset: str | None,
    start: float | None,
    end: float | None,
    audio: bool,
    **extra: Any,
) -> dict[str, Any]:
    """The stats dict of a run that began at ``t_start`` (``time.perf_counter()``): the
    enhancer's timings and counters, then ``input``, ``output``, ``video``, any ``extra``
    sections and ``waits``."""
    wall = time.perf_counter() - t_start
    stats = enhancer.stats(wall_seconds=wall, frames=counts.frames_out)
    stats.update(
        input=source, output=output,
        video={
            "width": info.width, "height": info.height,
            "fps": float(info.fps) if info.fps else None, "vfr": info.vfr,
            "bit_depth": info.bit_depth, "codec": writer.codec, "pix_fmt": writer.pix_fmt,
            "crf": crf, "preset": preset, "start": start, "end": end,
            "passthrough_packets": counts.packets, "audio": audio,
        },
        **extra,
        waits={
            "compute_waiting_for_decode_s": round(counts.wait_decode_s, 4),
            "compute_waiting_for_encode_s": round(counts.wait_encode_s, 4),
        },
    )
    return stats
