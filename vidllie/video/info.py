"""Plain data passed between the reader, the writer and the pipeline, and the two message helpers
all of video/ uses: :func:`warn` (a :class:`VideoWarning`) and :func:`one_line` (an error as one line)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np


class VideoWarning(UserWarning):
    """Something the user should know but that does not stop the job (cut stream, audio re-encode)."""


def warn(message: str) -> None:
    """Emit a one-line :class:`VideoWarning` (Python ``warnings``: the CLI/tests can catch it)."""
    warnings.warn(message, VideoWarning, stacklevel=3)


# What PyAV raises for FFmpeg failures (bad data, refused settings, unknown names).
FFMPEG_ERRORS = (av.error.FFmpegError, av.ArgumentError)


def one_line(exc: BaseException) -> str:
    """FFmpeg errors as 'reason (component: last log line)', anything else as its first line."""
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        log = getattr(exc, "log", None)
        text = exc.strerror
        if log and len(log) == 3 and log[2]:
            text += f" ({log[1]}: {str(log[2]).strip()})"
        return text.splitlines()[0]
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@dataclass(frozen=True)
class StreamInfo:
    """A stream the writer can copy unchanged (audio, subtitles)."""

    index: int  # input stream index (PassthroughPacket.stream_index)
    kind: str  # "audio" | "subtitle"
    codec: str
    time_base: Fraction
    sample_rate: int | None = None
    channels: int | None = None
    language: str | None = None
    # The input av.Stream, used as the writer's template; valid only while the reader is open.
    template: Any = field(default=None, repr=False, compare=False)
    reader: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class VideoInfo:
    """What a writer and a user need to know about the input's video stream."""

    source: str
    width: int
    height: int
    fps: Fraction | None  # average frame rate (None when the container gives none and no timestamps)
    vfr: bool  # variable frame rate (from the first ~120 frame timestamps)
    time_base: Fraction  # of the video stream; Frame.pts counts in it
    frame_count: int | None  # exact count from the container, None when unknown or trimmed
    duration: float | None  # seconds (of the trimmed window when start/end are given)
    start_time: float  # seconds of the first frame that will be yielded
    rotation: int  # display-matrix angle, degrees counter-clockwise (pixels are not rotated)
    codec: str
    pix_fmt: str
    bit_depth: int  # 8 -> Frame.image uint8, >8 -> uint16
    colorspace: int  # AVColorSpace as tagged (2 = unspecified)
    color_primaries: int
    color_trc: int
    color_range: int  # 0 unspecified, 1 limited (MPEG), 2 full (JPEG)
    matrix: str  # matrix actually used to convert to RGB ("bt709", "bt601", ...)
    hdr: str | None  # "PQ" | "HLG" | None
    container: str
    passthrough: tuple[StreamInfo, ...] = ()
    timecode: str | None = None  # SMPTE start timecode (MOV tmcd track / tag), e.g. "01:00:00:00"

    @property
    def audio(self) -> tuple[StreamInfo, ...]:
        return tuple(s for s in self.passthrough if s.kind == "audio")

    @property
    def estimated_frames(self) -> int | None:
        """Exact count when known, else duration x fps (for progress bars only)."""
        if self.frame_count is not None:
            return self.frame_count
        if self.duration and self.fps:
            return max(1, round(self.duration * float(self.fps)))
        return None


@dataclass(frozen=True)
class Frame:
    """One decoded frame: RGB, full range, pixels as stored (rotation is metadata)."""

    image: np.ndarray  # (H, W, 3) uint8, or uint16 (0..65535) for >8-bit sources
    pts: int  # in time_base units, as in the input
    time_base: Fraction
    time: float  # pts * time_base, seconds
    index: int  # 0-based position among the frames this reader yields


@dataclass(frozen=True)
class PassthroughPacket:
    """A compressed packet of a copyable stream (audio, subtitles), to be muxed unchanged."""

    packet: av.Packet
    stream_index: int  # input stream index, matches StreamInfo.index
    kind: str
    time: float | None  # pts (or dts) in seconds, None when the packet has neither
