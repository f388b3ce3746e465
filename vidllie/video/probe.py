"""What an input is, learned while the reader opens it: the checks and one-line errors of opening
a path or URL, the passthrough streams, the colour of the decoded frames (matrix, range, HDR),
the frame rate and VFR flag measured from the first timestamps, the duration and the start
timecode. Plain functions of PyAV objects; :class:`~vidllie.video.reader.VideoReader` calls them
and puts the answers in its :class:`~vidllie.video.info.VideoInfo`.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.video.reformatter import ColorRange, Colorspace

from ..errors import InputError
from .info import StreamInfo, one_line, warn

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_MP4_SUFFIXES = {".mp4", ".m4v", ".mov", ".3gp", ".m4a"}

# AVColorSpace -> swscale matrix. 2 (unspecified) is decided by frame height.
_MATRIX = {
    1: (Colorspace.ITU709, "bt709"),
    4: (Colorspace.FCC, "fcc"),
    5: (Colorspace.ITU601, "bt601"),
    6: (Colorspace.ITU601, "bt601"),
    7: (Colorspace.SMPTE240M, "smpte240m"),
    9: (Colorspace.BT2020, "bt2020"),
    10: (Colorspace.BT2020, "bt2020"),
}
_HDR_TRC = {16: "PQ", 18: "HLG"}  # AVCOL_TRC_SMPTE2084, AVCOL_TRC_ARIB_STD_B67


def is_url(source: str) -> bool:
    """True for ``scheme://...`` sources other than ``file://``.

    Example:
        >>> is_url("rtsp://cam/stream"), is_url("night.mp4"), is_url("file:///tmp/a.mp4")
        (True, False, False)
    """
    return bool(_URL.match(source)) and not source.startswith("file://")


def check_local(path: Path) -> None:
    """Refuse a local input that cannot be a video before FFmpeg sees it (one line each)."""
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        raise InputError(f"input is a directory, not a video file: {path}")
    if not os.access(path, os.R_OK):
        raise InputError(f"input is not readable (permission denied): {path}")
    if path.stat().st_size == 0:
        raise InputError(f"input is empty (0 bytes): {path}")


def mp4_incomplete(path: Path) -> bool:
    """True for an MP4/MOV (``ftyp`` box first) whose ``moov`` index is missing or runs past the
    end of the file: a recording cut short or never finalised (the index is written last).

    Example:
        >>> mp4_incomplete(Path("night.mkv"))  # not an MP4 (or not there): False
        False
    """
    try:
        total = path.stat().st_size
        with open(path, "rb") as fh:
            pos = 0
            while pos + 8 <= total:
                fh.seek(pos)
                head = fh.read(16)
                size, kind = struct.unpack(">I4s", head[:8])
                if pos == 0 and kind != b"ftyp":
                    return False
                if size == 1 and len(head) == 16:  # 64-bit box size
                    size = struct.unpack(">Q", head[8:16])[0]
                elif size == 0:  # the box runs to the end of the file
                    size = total - pos
                if kind == b"moov":
                    return pos + size > total
                if size < 8:
                    return True  # a damaged box header: the index cannot be reached
                pos += size
            return pos > 0  # an ftyp and no moov
    except OSError:
        return False


def _incomplete_mp4_error(source: str) -> InputError:
    return InputError(
        f"cannot read {source}: the MP4 is incomplete (its 'moov' index is missing or truncated: "
        "the recording was cut short or never finalised); re-copy it, or record to .mkv/.ts "
        "which survive a cut")


def _local_mp4(source: str) -> bool:
    return not is_url(source) and Path(source).suffix.lower() in _MP4_SUFFIXES


def open_error(source: str, exc: BaseException) -> InputError:
    """Turn an FFmpeg open failure into one clear line."""
    if _local_mp4(source) and mp4_incomplete(Path(source)):
        return _incomplete_mp4_error(source)
    if isinstance(exc, av.error.InvalidDataError):
        return InputError(f"cannot read {source}: not a video file FFmpeg can read "
                          f"({one_line(exc)})")
    return InputError(f"cannot open {source}: {one_line(exc)}")


def video_stream(container: av.container.InputContainer, source: str,
                 index: int | None = None) -> av.video.VideoStream:
    """The video stream to enhance: stream ``index`` of the file (as FFmpeg numbers them, e.g. a
    dual-channel dashcam's rear camera), or the first video stream that is not cover art;
    InputError when there is none or when this FFmpeg build cannot decode it."""
    videos = [s for s in container.streams.video
              if not s.disposition & av.stream.Disposition.attached_pic]
    if not videos:
        kinds = ", ".join(f"{s.type} ({s.codec_context.name if s.codec_context else '?'})"
                          for s in container.streams) or "nothing"
        raise InputError(f"no video stream in {source} (it has: {kinds})")
    if index is not None:
        chosen = [s for s in videos if s.index == index]
        if not chosen:
            have = ", ".join(f"#{s.index}" for s in videos)
            raise InputError(f"stream #{index} of {source} is not a video stream (its video streams: {have})")
        videos = chosen
    vs = videos[0]
    if vs.codec_context is None and _local_mp4(source) and mp4_incomplete(Path(source)):
        raise _incomplete_mp4_error(source)  # the cut left a track without its codec description
    if vs.codec_context is None:
        raise InputError(f"unsupported video codec in {source}: this FFmpeg build has "
                         "no decoder for it; convert it first (e.g. to H.264)")
    return vs


def passthrough_streams(container: av.container.InputContainer, reader) -> dict[int, StreamInfo]:
    """The audio and subtitle streams a writer can copy, by input stream index."""
    out: dict[int, StreamInfo] = {}
    for s in list(container.streams.audio) + list(container.streams.subtitles):
        ctx = s.codec_context
        name = ctx.codec.canonical_name if ctx is not None else "unknown"
        out[s.index] = StreamInfo(
            index=s.index, kind=s.type, codec=name,
            time_base=Fraction(s.time_base) if s.time_base else Fraction(1, 1000),
            sample_rate=getattr(ctx, "sample_rate", None) if s.type == "audio" else None,
            channels=getattr(ctx, "channels", None) if s.type == "audio" else None,
            language=s.metadata.get("language"), template=s, reader=reader)
    return out


def streams_left_out(container: av.container.InputContainer, video: av.video.VideoStream,
                     passthrough: dict[int, StreamInfo]) -> list[str]:
    """What of the input will not be in the output: streams other than the enhanced video stream,
    the copied ones and cover art (e.g. a second camera's video, a GPS or telemetry data track).
    One description each, such as ``"#1 video (h264 48x24)"`` (a stream without a decoder, as a
    data track usually is: ``"#2 data (no decoder)"``)."""
    out = []
    for s in container.streams:
        if s.index == video.index or s.index in passthrough:
            continue
        if s.type == "video" and s.disposition & av.stream.Disposition.attached_pic:
            continue
        ctx = s.codec_context
        name = ctx.name if ctx is not None else "no decoder"
        size = f" {ctx.width}x{ctx.height}" if s.type == "video" and ctx is not None else ""
        out.append(f"#{s.index} {s.type} ({name}{size})")
    return out


def check_hdr(source: str, trc: int, allow_hdr: bool | str) -> str | None:
    """"PQ" | "HLG" | None for a transfer characteristic. HDR is refused unless ``allow_hdr``:
    True reads the code values as-is (with a warning), "convert" says the caller converts them
    (:mod:`vidllie.pipeline.hdr` does), so no warning."""
    hdr = _HDR_TRC.get(trc)
    if hdr and not allow_hdr:
        raise InputError(f"{source} is HDR ({hdr} transfer): this reader was asked for SDR "
                         "video only (pass allow_hdr=True to read the code values as-is, or "
                         "enhance it with vidllie, which converts HDR to SDR)")
    if hdr and allow_hdr != "convert":
        warn(f"{source} is HDR ({hdr}); processing code values as-is, no tone mapping")
    return hdr


@dataclass(frozen=True)
class SourceColour:
    """How the decoded frames become RGB: decided once, from the first frame."""

    deep: bool  # > 8 bits per component -> uint16 images
    rgb: bool  # stored as RGB/palette/grey: no matrix, no range conversion
    space: int  # AVColorSpace as tagged (2 = unspecified)
    matrix: Colorspace  # swscale matrix used
    matrix_name: str  # its name for VideoInfo.matrix ("rgb" for RGB sources)
    range: int  # AVColorRange used: 1 limited (MPEG), 2 full (JPEG)

    @property
    def src_range(self) -> ColorRange:
        return ColorRange.JPEG if self.range == 2 else ColorRange.MPEG


def source_colour(first: av.VideoFrame, cc: av.video.VideoCodecContext) -> SourceColour:
    """The colour of the decoded frames: the tags on the first frame win over the stream's (they
    are what was decoded); untagged HD is BT.709, untagged SD BT.601."""
    rgb = first.format.is_rgb or first.format.name in ("pal8", "gray", "gray16le")
    space = first.colorspace if first.colorspace != 2 else cc.colorspace
    if space in _MATRIX:
        matrix, name = _MATRIX[space]
    elif first.height >= 720:
        matrix, name = Colorspace.ITU709, "bt709"  # untagged HD: BT.709
    else:
        matrix, name = Colorspace.ITU601, "bt601"  # untagged SD: BT.601
    if rgb:
        name = "rgb"
    rng = first.color_range or cc.color_range
    if not rng:
        rng = 2 if first.format.name.startswith("yuvj") else 1
    return SourceColour(deep=first.format.components[0].bits > 8, rgb=rgb, space=space,
                        matrix=matrix, matrix_name=name, range=rng)


def guess_fps(vs: av.video.VideoStream) -> float:
    """The stream's header rate (average, guessed or base), 25 when it gives none."""
    rate = vs.average_rate or vs.guessed_rate or vs.base_rate
    return float(rate) if rate else 25.0


def measure_rate(vs: av.video.VideoStream, probe_pts: list[int], first_pts: int,
                 time_base: Fraction) -> tuple[Fraction | None, bool]:
    """Average fps and VFR flag from the timestamps of the first video packets."""
    pts = sorted(set(p for p in probe_pts if p >= first_pts))
    steps = [b - a for a, b in zip(pts, pts[1:]) if b > a]
    fps = Fraction(vs.average_rate) if vs.average_rate else None
    if not fps and vs.guessed_rate:
        fps = Fraction(vs.guessed_rate)
    if not fps and steps:
        fps = 1 / (Fraction(sum(steps), len(steps)) * time_base)
    vfr = False
    if len(steps) >= 2:
        lo, hi = min(steps), max(steps)
        # CFR stored in a coarse time base alternates by one tick (29.97 fps in 1/1000: 33/34).
        vfr = (hi - lo) > max(1, 0.02 * hi)
    if vfr:  # a VFR header rate is often nominal (MKV default duration): use the measured one
        fps = 1 / (Fraction(pts[-1] - pts[0], len(pts) - 1) * time_base)
    return (fps.limit_denominator(100000) if fps else None), vfr


def stream_duration(container: av.container.InputContainer, vs: av.video.VideoStream,
                    time_base: Fraction, stream_start: float) -> float | None:
    """Seconds of the video stream (the container's duration from the stream's start when the
    stream gives none), None when unknown."""
    if vs.duration:
        return float(vs.duration * time_base)
    tagged = _tag_seconds(vs.metadata.get("DURATION"))  # Matroska's per-stream duration
    if tagged:
        return tagged
    if container.duration:  # of the longest stream: often the audio, a frame or so longer
        return container.duration / 1e6 - max(0.0, stream_start - (
            (container.start_time or 0) / 1e6))
    return None


def _tag_seconds(text: str | None) -> float | None:
    """'00:00:01.600000000' -> 1.6; None for a missing or malformed tag."""
    try:
        h, m, sec = (text or "").split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return None


def timecode(container: av.container.InputContainer, vs: av.video.VideoStream) -> str | None:
    """The start timecode: a MOV/MP4 tmcd track, or a tag on the video stream or container."""
    for tags in [*(s.metadata for s in container.streams.data), vs.metadata, container.metadata]:
        tc = tags.get("timecode") or tags.get("TIMECODE")  # MKV tags are upper case
        if tc:
            return str(tc)
    return None
