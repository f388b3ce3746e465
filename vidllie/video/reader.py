"""Streaming video reader (PyAV): frames one by one as RGB arrays, plus passthrough packets."""

from __future__ import annotations

import atexit
import os
import re
import weakref
from collections import deque
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterator

import av
from av.video.reformatter import ColorRange, Colorspace, Interpolation

from ..errors import InputError
from .info import Frame, PassthroughPacket, StreamInfo, VideoInfo, warn
from .pipes import borrow_input, check_pipe_input, pipe_mp4_error

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
# Accurate colour (checked on FFmpeg 8.1): rgb24 needs FULL_CHR_H_INT, else swscale's fast
# yuv->rgb path is off by ~3 per channel ((250,90,40) -> (246,88,38)); rgb48le must NOT use it,
# it scrambles green/blue there ((250,90,40) -> (249,0,97)).
_INTERP_8 = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
_INTERP_16 = Interpolation.BILINEAR | Interpolation.ACCURATE_RND

# VFR probe: look at up to this many video packets (or seconds) after the first frame.
_PROBE_PACKETS = 120
_PROBE_SECONDS = 4.0
_PROBE_SECONDS_LIVE = 1.0
_PROBE_BYTES = 32 << 20
# A video dts going back by more than this is a discontinuity (concatenated segments, a camera
# restart): the stream is shifted to continue where it was. Smaller steps back are broken
# timestamps, handled per frame.
_JUMP_BACK = 0.1


def is_url(source: str) -> bool:
    return bool(_URL.match(source)) and not source.startswith("file://")


def _one_line(exc: BaseException) -> str:
    """FFmpeg errors as 'reason (component: last log line)', anything else as its first line."""
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        log = getattr(exc, "log", None)
        text = exc.strerror
        if log and len(log) == 3 and log[2]:
            text += f" ({log[1]}: {str(log[2]).strip()})"
        return text.splitlines()[0]
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _check_local(path: Path) -> None:
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        raise InputError(f"input is a directory, not a video file: {path}")
    if not os.access(path, os.R_OK):
        raise InputError(f"input is not readable (permission denied): {path}")
    if path.stat().st_size == 0:
        raise InputError(f"input is empty (0 bytes): {path}")


def _open_error(source: str, exc: BaseException) -> InputError:
    """Turn an FFmpeg open failure into one clear line."""
    path = Path(source)
    if not is_url(source) and path.suffix.lower() in _MP4_SUFFIXES:
        with open(path, "rb") as fh:
            head = fh.read(64)
        if b"ftyp" in head[:12]:
            # An MP4 whose index (moov atom, written last) is missing: cut short / never finalised.
            return InputError(
                f"cannot read {source}: the MP4 is incomplete (no 'moov' index: the file was cut "
                "short or never finalised); re-copy it, or record to .mkv/.ts which survive a cut")
    if isinstance(exc, av.error.InvalidDataError):
        return InputError(f"cannot read {source}: not a video file FFmpeg can read "
                          f"({_one_line(exc)})")
    return InputError(f"cannot open {source}: {_one_line(exc)}")


def _is_cover_art(stream: av.stream.Stream) -> bool:
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


# Readers still open at interpreter exit are closed by an atexit hook, while PyAV is intact: a
# frame-threaded decoder freed later, during teardown, can deadlock FFmpeg's worker threads.
_OPEN_READERS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_open_readers() -> None:
    for reader in list(_OPEN_READERS):
        reader.close()


class VideoReader:
    """Decode a video file, URL, standard input (``"-"``) or file object frame by frame.

    ``start``/``end`` (seconds, from the start of the video stream) trim to [start, end): seek to
    the keyframe before ``start``, decode and drop earlier frames, stop at the first frame
    >= ``end``; passthrough packets are kept when their time is in the same window.
    ``threads``: "AUTO" (frame + slice threads, FFmpeg picks the count) or an int.
    ``options``: FFmpeg demuxer options (URLs get ``rtsp_transport=tcp`` and a 10 s ``timeout``
    in microseconds unless given). HDR (PQ/HLG) input raises InputError unless ``allow_hdr=True``
    (then code values are passed through untouched, with a warning: no tone mapping).
    ``max_frames`` stops after that many frames (benchmarks, previews); passthrough packets stop
    at the same time.
    Every frame comes out at one size: the first frame's, or ``size`` (width, height) when given
    (a reconnected live stream keeps the size of the first connection); frames of another size
    (a mid-stream resolution change) are scaled to it, with a warning.
    Video timestamps that jump back (joined segments) are shifted to follow on; repeated or
    backward frame times are replaced by the previous one plus a frame period, with a warning.
    ``format``: the demuxer, when it cannot be guessed (e.g. "rawvideo", with ``options`` from
    :func:`~vidllie.video.pipes.raw_video_options`). Standard input and file objects are read as
    a stream (no seeking unless the object is seekable and at its start; ``start`` then decodes
    and drops); the object is never closed here.
    """

    def __init__(self, source: str | os.PathLike | BinaryIO, *, start: float | None = None,
                 end: float | None = None, threads: str | int = "AUTO",
                 options: dict[str, str] | None = None, allow_hdr: bool = False,
                 passthrough: bool = True, max_frames: int | None = None,
                 size: tuple[int, int] | None = None, format: str | None = None) -> None:
        self._pipe = borrow_input(source)
        self.source = self._pipe.name if self._pipe is not None else os.fspath(source)
        self._want_size = size
        if max_frames is not None and max_frames < 1:
            raise InputError(f"max_frames must be >= 1 (got {max_frames})")
        self._max_frames = max_frames
        self._container = None
        self._consumed = False
        self._closed = False
        if start is not None and start < 0:
            raise InputError(f"start must be >= 0 seconds (got {start})")
        if end is not None and (end <= 0 or (start is not None and end <= start)):
            raise InputError(f"end must be after start (start={start}, end={end})")
        opts = {str(k): str(v) for k, v in (options or {}).items()}
        url = self._pipe is None and is_url(self.source)
        if self._pipe is not None:
            check_pipe_input(self._pipe)
        elif url:
            if self.source.lower().startswith(("rtsp://", "rtsps://")):
                opts.setdefault("rtsp_transport", "tcp")
            opts.setdefault("timeout", "10000000")  # microseconds ("stimeout" is ignored by FFmpeg 8)
        else:
            _check_local(Path(self.source))
        try:
            self._container = av.open(self._pipe if self._pipe is not None else self.source,
                                      mode="r", format=format, options=opts)
        except (av.error.FFmpegError, av.ArgumentError, OSError) as exc:
            raise _open_error(self.source, exc) from None
        _OPEN_READERS.add(self)
        try:
            self._setup(start, end, threads, allow_hdr, passthrough, url)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ set-up
    def _setup(self, start, end, threads, allow_hdr, passthrough, url) -> None:
        c = self._container
        videos = [s for s in c.streams.video if not _is_cover_art(s)]
        if not videos:
            kinds = ", ".join(f"{s.type} ({s.codec_context.name if s.codec_context else '?'})"
                              for s in c.streams) or "nothing"
            raise InputError(f"no video stream in {self.source} (it has: {kinds})")
        vs = videos[0]
        if vs.codec_context is None:
            raise InputError(f"unsupported video codec in {self.source}: this FFmpeg build has "
                             "no decoder for it; convert it first (e.g. to H.264)")
        self._vs = vs
        cc = vs.codec_context
        cc.thread_type = "AUTO"
        cc.thread_count = 0 if str(threads).upper() == "AUTO" else int(threads)
        self._tb = Fraction(vs.time_base) if vs.time_base else Fraction(1, 90000)

        self._pass: dict[int, StreamInfo] = {}
        if passthrough:
            for s in list(c.streams.audio) + list(c.streams.subtitles):
                ctx = s.codec_context
                name = ctx.codec.canonical_name if ctx is not None else "unknown"
                self._pass[s.index] = StreamInfo(
                    index=s.index, kind=s.type, codec=name,
                    time_base=Fraction(s.time_base) if s.time_base else Fraction(1, 1000),
                    sample_rate=getattr(ctx, "sample_rate", None) if s.type == "audio" else None,
                    channels=getattr(ctx, "channels", None) if s.type == "audio" else None,
                    language=s.metadata.get("language"), template=s, reader=self)

        stream_start = float(vs.start_time * self._tb) if vs.start_time is not None else 0.0
        self._trimmed = start is not None or end is not None
        # A trimmed window never reaches before the presentation start (edit-list-hidden frames).
        self._win_start = stream_start + (start or 0.0) if self._trimmed else None
        self._win_end = stream_start + end if end is not None else None
        if self._win_start and not (self._pipe is not None and not self._pipe.seekable()):
            try:
                c.seek(int(self._win_start / self._tb), stream=vs, backward=True)
            except (av.error.FFmpegError, av.ArgumentError) as exc:
                if url:
                    raise InputError(f"cannot seek in {self.source}: {_one_line(exc)}") from None
                # Unseekable file: decode from the start and drop (slow but exact).
                warn(f"seek failed in {self.source} ({_one_line(exc)}); decoding from the start")

        self._events: deque = deque()
        self._demux = c.demux([vs, *[s.template for s in self._pass.values()]])
        self._eof = False
        self._cut: str | None = None
        self._decode_errors = 0
        self._corrupt = 0
        self._dropped_before = 0
        self._index = 0
        self._last_pts: int | None = None
        self._video_done = False
        self._pass_done: set[int] = set()
        self._last_time: float | None = None
        self._shift: dict[int, int] = {}  # per stream: ticks added after a discontinuity
        self._last_dts: dict[int, tuple[int, int]] = {}  # per stream: (dts, duration) seen last
        self._jumps = 0
        self._synthesized = 0
        self._rescaled = 0
        first = self._preroll()
        # Every frame comes out at the first size (or the one asked for).
        self._size = tuple(self._want_size) if self._want_size else (first.width, first.height)

        trc = cc.color_trc if cc.color_trc != 2 else first.color_trc
        hdr = _HDR_TRC.get(trc)
        if hdr and not allow_hdr:
            raise InputError(f"{self.source} is HDR ({hdr} transfer): vidllie enhances SDR video "
                             "only; tone-map it to SDR BT.709 first (or pass allow_hdr=True to "
                             "process the code values as-is)")
        if hdr:
            warn(f"{self.source} is HDR ({hdr}); processing code values as-is, no tone mapping")

        # Colour: the tags on the first frame win over the stream's (they are what was decoded).
        self._deep = first.format.components[0].bits > 8  # -> uint16 images
        self._rgb_src = first.format.is_rgb or first.format.name in ("pal8", "gray", "gray16le")
        space = first.colorspace if first.colorspace != 2 else cc.colorspace
        if space in _MATRIX:
            self._matrix, matrix_name = _MATRIX[space]
        elif first.height >= 720:
            self._matrix, matrix_name = Colorspace.ITU709, "bt709"  # untagged HD: BT.709
        else:
            self._matrix, matrix_name = Colorspace.ITU601, "bt601"  # untagged SD: BT.601
        if self._rgb_src:
            matrix_name = "rgb"
        rng = first.color_range or cc.color_range
        if not rng:
            rng = 2 if first.format.name.startswith("yuvj") else 1
        self._src_range = ColorRange.JPEG if rng == 2 else ColorRange.MPEG

        fps, vfr = self._rate(vs)
        frame_count = vs.frames if (vs.frames and not self._trimmed) else None
        if frame_count is not None and self._max_frames is not None:
            frame_count = min(frame_count, self._max_frames)
        duration = self._duration(vs, stream_start)
        if self._trimmed and duration is not None:
            lo = start or 0.0
            hi = min(end, duration) if end is not None else duration
            duration = max(0.0, hi - lo)
        self.info = VideoInfo(
            source=self.source, width=self._size[0], height=self._size[1], fps=fps, vfr=vfr,
            time_base=self._tb, frame_count=frame_count, duration=duration,
            start_time=self._win_start if self._win_start is not None else self._first_time,
            rotation=int(round(first.rotation or 0)) % 360, codec=cc.codec.canonical_name,
            pix_fmt=first.format.name, bit_depth=first.format.components[0].bits,
            colorspace=int(space), color_primaries=int(cc.color_primaries or first.color_primaries),
            color_trc=int(trc), color_range=int(rng), matrix=matrix_name,
            hdr=hdr, container=c.format.name, passthrough=tuple(self._pass.values()),
            timecode=_timecode(c, vs))

    def _duration(self, vs, stream_start: float) -> float | None:
        if vs.duration:
            return float(vs.duration * self._tb)
        if self._container.duration:
            return self._container.duration / 1e6 - max(0.0, stream_start - (
                (self._container.start_time or 0) / 1e6))
        return None

    def _rate(self, vs) -> tuple[Fraction | None, bool]:
        """Average fps and VFR flag from the timestamps of the first video packets."""
        pts = sorted(set(p for p in self._probe_pts if p >= self._first_pts))
        steps = [b - a for a, b in zip(pts, pts[1:]) if b > a]
        fps = Fraction(vs.average_rate) if vs.average_rate else None
        if not fps and vs.guessed_rate:
            fps = Fraction(vs.guessed_rate)
        if not fps and steps:
            fps = 1 / (Fraction(sum(steps), len(steps)) * self._tb)
        vfr = False
        if len(steps) >= 2:
            lo, hi = min(steps), max(steps)
            # CFR stored in a coarse time base alternates by one tick (29.97 fps in 1/1000: 33/34).
            vfr = (hi - lo) > max(1, 0.02 * hi)
        if vfr:  # a VFR header rate is often nominal (MKV default duration): use the measured one
            fps = 1 / (Fraction(pts[-1] - pts[0], len(pts) - 1) * self._tb)
        return (fps.limit_denominator(100000) if fps else None), vfr

    # ------------------------------------------------------------------ demux / decode
    def _next_packet(self):
        """Next demuxed packet, or None at the end. A read error ends the stream with a warning."""
        if self._eof:
            return None
        while True:
            try:
                pkt = next(self._demux)
            except StopIteration:
                self._eof = True
                return None
            except (av.error.FFmpegError, av.ArgumentError, OSError) as exc:
                self._eof = True
                self._cut = _one_line(exc)
                return None
            if pkt.size == 0:  # flush packet; a real keyframe may have dts None, keep those
                continue
            if pkt.is_corrupt:
                self._corrupt += 1
            if pkt.is_discard and pkt.stream_index == self._vs.index:
                pkt = _undiscard(pkt)
            self._continue_timestamps(pkt)
            return pkt

    def _continue_timestamps(self, pkt) -> None:
        """Shift a stream whose dts jumps back (discontinuity) so it continues where it was.

        Audio/subtitles: any step back (a muxer refuses non-increasing dts). Video: a step back
        of more than ``_JUMP_BACK`` s (smaller ones are repaired per frame in ``_frame``).
        """
        idx = pkt.stream_index
        shift = self._shift.get(idx, 0)
        if shift:
            if pkt.pts is not None:
                pkt.pts += shift
            if pkt.dts is not None:
                pkt.dts += shift
        if pkt.dts is None or not pkt.time_base:
            return
        last = self._last_dts.get(idx)
        if last is not None:
            back = last[0] - pkt.dts
            video = idx == self._vs.index
            limit = round(_JUMP_BACK / pkt.time_base) if video else -1
            if back > limit:
                step = last[1] or (round(1 / (self._guess_fps() * pkt.time_base)) if video else 1)
                extra = back + step
                self._shift[idx] = shift + extra
                self._jumps += video
                if pkt.pts is not None:
                    pkt.pts += extra
                pkt.dts += extra
        self._last_dts[idx] = (pkt.dts, pkt.duration or 0)

    def _decode(self, pkt) -> list:
        self._flushed = pkt is None
        try:
            return self._vs.codec_context.decode(pkt)
        except (av.error.FFmpegError, av.ArgumentError) as exc:
            if pkt is None:
                return []
            self._decode_errors += 1
            self._decode_error_msg = _one_line(exc)
            return []

    def _in_window(self, frame) -> str:
        """'keep' | 'before' | 'after' for a decoded frame (gives pts-less frames a pts)."""
        if frame.pts is None:
            step = round(1 / (self._guess_fps() * self._tb)) if self._last_pts is not None else 0
            frame.pts = (self._last_pts + step) if self._last_pts is not None else 0
        t = float(frame.pts * self._tb)
        if self._win_start is not None and t < self._win_start - 1e-6:
            return "before"
        if self._win_end is not None and t >= self._win_end - 1e-6:
            return "after"
        return "keep"

    def _guess_fps(self) -> float:
        vs = self._vs
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate
        return float(rate) if rate else 25.0

    def _pass_keep(self, pkt) -> tuple[bool, float | None]:
        ts = pkt.pts if pkt.pts is not None else pkt.dts
        t = float(ts * pkt.time_base) if (ts is not None and pkt.time_base) else None
        if t is None:
            return (not self._trimmed or self._index > 0), None
        if self._win_start is not None and t < self._win_start - 1e-6:
            return False, t
        if self._win_end is not None and t >= self._win_end - 1e-6:
            self._pass_done.add(pkt.stream_index)
            return False, t
        return True, t

    def _preroll(self):
        """Demux until the first frame of the window is decoded, then buffer ~120 more video
        packets (not decoded) to measure the frame rate. Nothing is lost: everything read is
        queued in demux order for stream()."""
        first = None
        vidx = self._vs.index
        self._probe_pts: list[int] = []
        while first is None:
            pkt = self._next_packet()
            if pkt is None:
                for f in self._decode(None):
                    if self._in_window(f) == "keep":
                        self._events.append(("frame", f))
                        first = first or f
                break
            if pkt.stream_index == vidx:
                if pkt.pts is not None:
                    self._probe_pts.append(pkt.pts)
                for f in self._decode(pkt):
                    where = self._in_window(f)
                    if where == "before":
                        self._dropped_before += 1
                    elif where == "keep":
                        self._events.append(("frame", f))
                        first = first or f
                    else:
                        self._video_done = True
            elif pkt.stream_index in self._pass:
                self._events.append(("pass", pkt))
        if first is None:
            if self._trimmed and (self._dropped_before or self._video_done):
                raise InputError(f"no video frames in the requested window of {self.source}")
            detail = f" ({self._decode_error_msg})" if self._decode_errors else ""
            if self._cut:
                detail = f" ({self._cut})"
            if (self._pipe is not None and not self._pipe.seekable()
                    and "mp4" in self._container.format.name.split(",")):
                raise pipe_mp4_error(self._pipe)
            raise InputError(f"cannot decode any video frame from {self.source}{detail}")
        self._first_pts, self._first_time = first.pts, float(first.pts * self._tb)
        seen, size = 0, 0
        while seen < _PROBE_PACKETS and size < _PROBE_BYTES:
            pkt = self._next_packet()
            if pkt is None:
                break
            if pkt.stream_index == vidx:
                self._events.append(("vpkt", pkt))
                if pkt.pts is not None:
                    self._probe_pts.append(pkt.pts)
                seen += 1
                size += pkt.size
                # A live stream delivers in real time: probe 1 s there, not the first frame late.
                probe_s = _PROBE_SECONDS_LIVE if is_url(self.source) else _PROBE_SECONDS
                if pkt.pts is not None and float(pkt.pts * self._tb) > self._first_time + probe_s:
                    break
            elif pkt.stream_index in self._pass:
                self._events.append(("pass", pkt))
        return first

    def _frame(self, f) -> Frame:
        size = {}
        if (f.width, f.height) != self._size:
            # A mid-stream resolution change (camera switch, concatenated segments): one output
            # keeps one size, so the frame is scaled to the first size (aspect as the input).
            size = {"width": self._size[0], "height": self._size[1]}
            if not self._rescaled:
                warn(f"{self.source}: resolution changed from {self._size[0]}x{self._size[1]} "
                     f"to {f.width}x{f.height} at {float(f.pts * self._tb):.3f} s; frames are "
                     f"scaled to {self._size[0]}x{self._size[1]} (one output keeps one size)")
            self._rescaled += 1
        image = f.to_ndarray(
            **size,
            format="rgb48le" if self._deep else "rgb24",
            src_colorspace=None if self._rgb_src else self._matrix,
            src_color_range=None if self._rgb_src else self._src_range,
            dst_color_range=ColorRange.JPEG,
            interpolation=_INTERP_16 if self._deep else _INTERP_8)  # (H, W, 3)
        if self._last_pts is not None and f.pts <= self._last_pts:
            # Broken/duplicate timestamps (DVR exports): keep the frame one frame period later.
            f.pts = self._last_pts + max(1, round(1 / (self._guess_fps() * self._tb)))
            self._synthesized += 1
        self._last_pts = f.pts
        out = Frame(image=image, pts=int(f.pts), time_base=self._tb,
                    time=float(f.pts * self._tb), index=self._index)
        self._index += 1
        self._last_time = out.time
        return out

    def _frames_from(self, decoded) -> Iterator[Frame]:
        for f in decoded:
            if self._video_done:
                return
            where = self._in_window(f)
            if where == "keep":
                frame = self._frame(f)
                if self._max_frames is not None and self._index >= self._max_frames:
                    # Last frame wanted: end the window one frame later so passthrough stops too.
                    self._video_done = True
                    self._trimmed = True
                    self._win_end = frame.time + 1.0 / self._guess_fps()
                yield frame
            elif where == "after":
                self._video_done = True
            else:
                self._dropped_before += 1

    def _all_pass_done(self) -> bool:
        audio = [i for i, s in self._pass.items() if s.kind == "audio"]
        return all(i in self._pass_done for i in audio)

    def stream(self) -> Iterator[Frame | PassthroughPacket]:
        """Frames and passthrough packets in demux order (a single pass)."""
        if self._consumed:
            raise RuntimeError("a VideoReader can be iterated only once")
        self._consumed = True
        vidx = self._vs.index
        past_end_limit = (self._win_end + 10.0) if self._win_end is not None else None
        while True:
            if self._events:
                kind, item = self._events.popleft()
            else:
                if self._video_done and (self._all_pass_done() or not self._pass):
                    break
                item = self._next_packet()
                if item is None:
                    break
                kind = "vpkt" if item.stream_index == vidx else "pass"
            if kind == "frame":
                yield from self._frames_from([item])
            elif kind == "vpkt":
                if not self._video_done:
                    yield from self._frames_from(self._decode(item))
            elif item.stream_index in self._pass:
                keep, t = self._pass_keep(item)
                if keep:
                    info = self._pass[item.stream_index]
                    yield PassthroughPacket(item, item.stream_index, info.kind, t)
                elif t is not None and past_end_limit is not None and t > past_end_limit:
                    break  # sparse streams never reach `end`; do not read the whole file
        if not self._video_done:
            yield from self._frames_from(self._decode(None))
        self._report_end()

    def __iter__(self) -> Iterator[Frame]:
        return (x for x in self.stream() if isinstance(x, Frame))

    def _report_end(self) -> None:
        """Warn (never fail) when the input stopped early: cut stream, corrupt packets."""
        if self._synthesized:
            warn(f"{self.source}: {self._synthesized} frame(s) had repeated or backward "
                 f"timestamps; their times were synthesized from the frame rate "
                 f"({self._guess_fps():g} fps)")
        if self._jumps:
            warn(f"{self.source}: the timestamps jump back {self._jumps} time(s) (joined "
                 "segments or a restarted source); the later parts follow on without a gap")
        if self._decode_errors:
            warn(f"{self.source}: {self._decode_errors} video packet(s) could not be decoded "
                 f"({self._decode_error_msg}); their frames are missing from the output")
        last = self._last_time
        if self._corrupt:
            warn(f"{self.source}: {self._corrupt} packet(s) flagged corrupt by the demuxer "
                 "(damaged or cut data); kept, but the picture/sound there may be damaged")
        if self._cut:
            warn(f"{self.source}: input ends abruptly after {self._index} frames at "
                 f"{last:.3f} s ({self._cut}); processed up to the cut")
            return
        if (self._trimmed and self._win_end is not None or last is None or is_url(self.source)
                or self._pipe is not None):
            return
        info = self.info
        if info.container == "mpegts":
            size = os.path.getsize(self.source)
            if size % 188 and size % 192:  # TS/M2TS files are whole 188/192-byte packets
                warn(f"{self.source}: the transport stream ends mid-packet after {self._index} "
                     f"frames at {last:.3f} s: it looks cut; processed up to the cut")
                return
        expected_end = None
        if info.duration:
            expected_end = info.start_time + info.duration
        frame_dur = 1 / float(info.fps) if info.fps else 0.04
        short_time = expected_end is not None and last + frame_dur < expected_end - max(
            0.5, 3 * frame_dur)
        # Frames lost to decode errors are already reported: they do not make the file "cut".
        got = self._index + self._decode_errors
        short_count = (info.frame_count is not None and got < info.frame_count
                       and not self._trimmed)
        if short_time or (short_count and got < info.frame_count - 1):
            said = (f"{info.frame_count} frames" if short_count else f"{expected_end:.3f} s")
            warn(f"{self.source}: input ends early after {self._index} frames at {last:.3f} s "
                 f"(the container says {said}): it looks cut; processed up to the cut")

    @property
    def frames_read(self) -> int:
        return self._index

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._container is not None and not self._closed:
            self._closed = True
            if hasattr(self, "_events"):
                self._events.clear()
            demux = getattr(self, "_demux", None)
            if demux is not None:
                # Finish the demux generator before the container: left to the garbage collector
                # after the container is closed, it can hang the interpreter at exit.
                demux.close()
                self._demux = None
            vs = getattr(self, "_vs", None)
            if vs is not None and not getattr(self, "_flushed", False):
                # Drain the frame-threaded decoder: freeing it with frames in flight can deadlock
                # FFmpeg's worker threads (seen at interpreter exit after reading only .info).
                try:
                    for _ in vs.codec_context.decode(None):
                        pass
                except (av.error.FFmpegError, ValueError):
                    pass
            try:
                self._container.close()
            except (av.error.FFmpegError, OSError):
                pass

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass



def _timecode(c, vs) -> str | None:
    """The start timecode: a MOV/MP4 tmcd track, or a tag on the video stream or container."""
    for tags in [*(s.metadata for s in c.streams.data), vs.metadata, c.metadata]:
        tc = tags.get("timecode") or tags.get("TIMECODE")  # MKV tags are upper case
        if tc:
            return str(tc)
    return None


def _undiscard(pkt: av.Packet) -> av.Packet:
    """Copy of a video packet without FFmpeg's discard flag.

    An MP4 edit list that starts after the first frame makes the demuxer flag the frames before
    it "discard" and the decoder silently drops them (night_dashcam.mp4: 39 of 1118). We keep
    them: they come out with negative times, and the MP4 writer re-creates an equivalent edit
    list, so players show the same thing and no frame is lost. (Audio is stream-copied with
    its own negative-time packets, untouched.)
    """
    new = av.Packet(bytes(pkt))
    new.pts, new.dts, new.time_base = pkt.pts, pkt.dts, pkt.time_base
    new.is_keyframe, new.is_corrupt = pkt.is_keyframe, pkt.is_corrupt
    new.stream = pkt.stream
    return new
