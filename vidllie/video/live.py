"""Live inputs (cameras, HTTP/RTSP/UDP streams): one continuous stream across reconnects, a
window counted from the first frame (no seeking), and rolling segment files.

    source = LiveSource("rtsp://cam/stream", end=600.0, stop=stop_event)
    writer = SegmentWriter("night.mkv", lambda: source.info, seconds=300)   # or a VideoWriter
    for item in source.stream():            # Frame | PassthroughPacket, times continuous
        ...

PyAV only (no torch), like the rest of ``vidllie.video``.
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError
from .info import Frame, PassthroughPacket, VideoInfo, warn
from .probe import is_url
from .reader import VideoReader
from .writer import VideoWriter


def is_endless(info: VideoInfo) -> bool:
    """A stream with no known duration (camera, live HTTP/UDP/RTSP): reconnect when it drops."""
    return not info.duration


class LiveSource:
    """Frames and passthrough packets of a live input, continuous across reconnects.

    ``start``/``end`` (seconds) are counted from the first frame received, without seeking.
    When ``stop`` is set the stream ends at the next item (the caller then finishes its output).
    When an endless stream drops (read error or end), it is reopened up to ``reconnect`` times in
    a row, ``reconnect_wait`` seconds apart; the frames after the reconnect follow the last ones
    with the real gap (wall clock) in between, at the first connection's frame size. A finite
    input (known duration, e.g. a file over HTTP) is never reopened: its end is the end.
    """

    def __init__(self, source: str | os.PathLike, *, start: float | None = None,
                 end: float | None = None, stop: threading.Event | None = None,
                 reconnect: int = 5, reconnect_wait: float = 2.0,
                 options: dict[str, str] | None = None, audio: bool = True,
                 format: str | None = None, video_stream: int | None = None) -> None:
        if start is not None and start < 0:
            raise InputError(f"start must be >= 0 seconds (got {start})")
        if end is not None and (end <= 0 or (start is not None and end <= start)):
            raise InputError(f"end must be after start (start={start}, end={end})")
        self.source = source if hasattr(source, "read") else os.fspath(source)
        self.start, self.end = start or 0.0, end
        self.stop = stop or threading.Event()
        self.reconnect, self.reconnect_wait = max(0, reconnect), reconnect_wait
        self._options, self._audio, self._video_stream = options, audio, video_stream
        # URLs and pipes (standard input, file objects) cannot seek: the window is counted here.
        piped = not isinstance(self.source, str) or self.source == "-"
        self._seekable = not (piped or is_url(self.source))
        if self._seekable:  # a file: the reader seeks to the window itself
            self.reader = VideoReader(self.source, start=start, end=end, passthrough=audio,
                                      video_stream=video_stream)
            self.start, self.end = 0.0, None
        else:
            self.reader = VideoReader(self.source, options=options, passthrough=audio, format=format,
                                      video_stream=video_stream)
        self.info = self.reader.info
        # Only a URL can be reopened; a pipe that ends has ended.
        self.endless = not piped and not self._seekable and is_endless(self.info)
        self.reconnects = 0
        self.gaps: list[float] = []  # seconds missing at each reconnect
        self.frames = 0
        self.stopped_by = None  # "stop" | "end" | "input" after the stream ended

    @property
    def first_time(self) -> float:
        """Stream time (s) of the first frame received (of the window, for a file)."""
        return self.info.start_time

    @property
    def origin(self) -> float:
        """Stream time (s) that becomes 0 in the output: the first frame + ``start``."""
        return self.first_time + self.start

    def _reopen(self) -> bool:
        size = (self.info.width, self.info.height)
        for attempt in range(1, self.reconnect + 1):
            if self.stop.wait(self.reconnect_wait):
                return False
            try:
                new = VideoReader(self.source, options=self._options, passthrough=self._audio,
                                  size=size, video_stream=self._video_stream)
            except InputError as err:
                warn(f"{self.source}: reconnect {attempt}/{self.reconnect} failed ({err})")
                continue
            # The old reader stays open until now: its streams are the audio templates of any
            # segment the encoder opens meanwhile.
            old, self.reader, self.info = self.reader, new, replace(new.info, source=self.source)
            old.close()
            self.reconnects += 1
            return True
        warn(f"{self.source}: the stream is gone after {self.reconnect} reconnect attempts; "
             "finishing the output with what was received")
        return False

    def stream(self) -> Iterator[Frame | PassthroughPacket]:
        """Items in demux order with continuous times (a single pass)."""
        first = self.first_time
        lo = self.origin
        hi = first + self.end if self.end is not None else None
        offset = 0.0  # seconds added to the current connection's times
        last_time = None  # output-continuous time of the last frame
        last_clock = time.monotonic()
        index = 0
        joined = False
        try:
            while True:
                it = self.reader.stream()
                try:
                    for item in it:
                        if self.stop.is_set():
                            self.stopped_by = "stop"
                            return
                        if isinstance(item, Frame):
                            if joined:
                                # Place the new connection's first frame after the real gap.
                                gap = time.monotonic() - last_clock
                                offset = (last_time + max(gap, _period(self.info))) - item.time
                                self.gaps.append(round(gap, 3))
                                joined = False
                                warn(f"{self.source}: reconnected; the recording has a gap of "
                                     f"{gap:.1f} s after {last_time - lo:.1f} s of output")
                            t = item.time + offset
                            if hi is not None and t >= hi - 1e-6:
                                self.stopped_by = "end"
                                return
                            last_time, last_clock = t, time.monotonic()
                            if t < lo - 1e-6:
                                continue
                            pts = item.pts + round(offset / item.time_base)
                            yield replace(item, pts=pts, time=t, index=index)
                            index += 1
                            self.frames = index
                        else:
                            if joined:
                                continue  # audio before the new connection's first frame
                            t = item.time + offset if item.time is not None else None
                            # Audio just before the first frame (encoder priming) is kept,
                            # as for files; with a start, the window cuts it.
                            early = self.start > 0 and t is not None and t < lo - 1e-6
                            if early or (t is not None and hi is not None and t >= hi - 1e-6):
                                continue
                            _shift_packet(item, offset)
                            yield replace(item, time=t)
                finally:
                    it.close()  # the reader stays open for the writer's templates: see close()
                if self.stop.is_set():
                    self.stopped_by = "stop"
                    return
                if not self.endless or not self._reopen():
                    self.stopped_by = "stop" if self.stop.is_set() else "input"
                    return
                joined = last_time is not None
        except BaseException:
            self.reader.close()
            raise

    def close(self) -> None:
        """Close the input (after the writer is finished)."""
        self.reader.close()


def _period(info: VideoInfo) -> float:
    return 1.0 / float(info.fps) if info.fps else 0.04


def _shift_packet(item: PassthroughPacket, seconds: float) -> None:
    if not seconds:
        return
    pkt = item.packet
    ticks = round(seconds / pkt.time_base)
    if pkt.pts is not None:
        pkt.pts += ticks
    if pkt.dts is not None:
        pkt.dts += ticks


def segment_name(path: Path, when: _dt.datetime) -> Path:
    """``night.mkv`` + 2026-11-30 22:15:00 -> ``night_20261130-221500.mkv``."""
    return path.with_name(f"{path.stem}_{when:%Y%m%d-%H%M%S}{path.suffix}")


class SegmentWriter:
    """Rolling, individually complete files of ``seconds`` each (NVR style), named with their
    start time (local wall clock): ``night_20261130-221500.mkv``, ``night_20261130-222000.mkv``...

    Same interface as :class:`VideoWriter` (write, mux, close, abort). Each segment is a
    VideoWriter (temp name, renamed when the segment is done) whose times start at 0; a crash or
    ``abort()`` loses only the segment being written. ``info()`` gives the current input's info
    (its streams are the audio templates of the next segment). ``first_time`` is the stream
    time of the first frame and ``clock`` the wall-clock time it stands for.
    """

    def __init__(self, path: str | os.PathLike, info: Callable[[], VideoInfo], seconds: float, *,
                 first_time: float, clock: _dt.datetime | None = None,
                 **writer_options) -> None:
        if seconds <= 0:
            raise OutputError(f"segment length must be > 0 seconds (got {seconds})")
        self.path = Path(os.fspath(path))
        self._info, self.seconds = info, float(seconds)
        self._first, self._clock = first_time, clock or _dt.datetime.now()
        self._options = writer_options
        self._writer: VideoWriter | None = None
        self._end = None  # stream time where the current segment ends
        self._pending: list[PassthroughPacket] = []
        self.segments: list[Path] = []
        self._frames = 0
        # The requested pixel format until the first segment's writer says what it uses (the
        # run asks the enhancer for 16-bit frames when it is deeper than 8 bits).
        self.pix_fmt = writer_options.get("pix_fmt")
        self.codec = None
        folder = self.path.parent  # checked now, not when the first segment is due
        if not folder.is_dir():
            raise OutputError(f"output folder does not exist: {folder}")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(f"output folder is not writable: {folder}")

    def _open(self, t: float) -> None:
        k = int((t - self._first) / self.seconds + 1e-6)  # a frame on the boundary starts k
        seg_start = self._first + k * self.seconds
        self._end = seg_start + self.seconds
        when = self._clock + _dt.timedelta(seconds=seg_start - self._first)
        name = segment_name(self.path, when)
        n = 1
        while name.exists() or name in self.segments:
            name = name.with_name(f"{segment_name(self.path, when).stem}-{n}{self.path.suffix}")
            n += 1
        self._writer = VideoWriter(name, self._info(), time_offset=seg_start, **self._options)
        self.pix_fmt, self.codec = self._writer.pix_fmt, self._writer.codec
        self._name = name
        pending, self._pending = self._pending, []
        for item in pending:
            self.mux(item)

    def _roll(self) -> None:
        if self._writer is not None:
            self.segments.append(self._writer.close())
            self._writer = None

    def write(self, image: np.ndarray, pts: int, time_base) -> None:
        t = float(pts * time_base)
        if self._writer is not None and t >= self._end - 1e-6:
            self._roll()
        if self._writer is None:
            self._open(t)
        self._writer.write(image, pts, time_base)
        self._frames += 1

    def mux(self, item: PassthroughPacket) -> None:
        # Audio runs ahead of the (batched) video: hold what belongs to the next segment.
        if self._writer is None or (item.time is not None and item.time >= self._end - 1e-6):
            self._pending.append(item)
            return
        self._writer.mux(item)

    @property
    def frames_written(self) -> int:
        return self._frames

    def close(self) -> Path:
        if self._writer is None:
            if not self.segments:
                raise OutputError(f"no video frames were written to {self.path}")
            return self.segments[-1]
        for item in self._pending:  # the tail of the audio, after the last frame
            self._writer.mux(item)
        self._pending = []
        self._roll()
        return self.segments[-1]

    def abort(self) -> None:
        """Drop the segment being written; finished segments stay."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
