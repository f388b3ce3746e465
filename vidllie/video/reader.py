"""The video reader (PyAV): the demux/decode loop that gives frames one by one as RGB arrays, in
demux order with the passthrough (audio, subtitle) packets, over an exact [start, end) window.
What the input is comes from :mod:`~vidllie.video.probe`; packets and decoded frames from
:mod:`~vidllie.video.decode`; the repairs of awkward input (timestamps, resolution changes, hidden
frames) from :mod:`~vidllie.video.repair`.
"""

from __future__ import annotations

import atexit
import os
import weakref
from collections import deque
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterator

import av

from ..errors import InputError
from .decode import Decoder
from .info import Frame, PassthroughPacket, VideoInfo, one_line, warn
from .pipes import borrow_input, check_pipe_input, pipe_mp4_error
from .probe import (check_hdr, check_local, guess_fps, is_url, measure_rate, open_error,
                    passthrough_streams, source_colour, stream_duration, streams_left_out, timecode,
                    video_stream)
from .repair import RgbConverter

# VFR probe: look at up to this many video packets (or seconds) after the first frame.
_PROBE_PACKETS = 120
_PROBE_SECONDS = 4.0
_PROBE_SECONDS_LIVE = 1.0
_PROBE_BYTES = 32 << 20


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
    (then code values are passed through untouched, with a warning: no tone mapping) or
    ``allow_hdr="convert"`` (the caller converts them, no warning: ``info.hdr`` says which).
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
    ``video_stream``: the stream to decode, by FFmpeg's stream number (default: the first video
    stream that is not cover art); streams neither decoded nor passed through are named in a
    warning.
    """

    def __init__(self, source: str | os.PathLike | BinaryIO, *, start: float | None = None,
                 end: float | None = None, threads: str | int = "AUTO",
                 options: dict[str, str] | None = None, allow_hdr: bool | str = False,
                 passthrough: bool = True, max_frames: int | None = None,
                 size: tuple[int, int] | None = None, format: str | None = None,
                 video_stream: int | None = None) -> None:
        self._pipe = borrow_input(source)
        self._video_index = video_stream
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
            check_local(Path(self.source))
        try:
            self._container = av.open(self._pipe if self._pipe is not None else self.source,
                                      mode="r", format=format, options=opts)
        except (av.error.FFmpegError, av.ArgumentError, OSError) as exc:
            raise open_error(self.source, exc) from None
        _OPEN_READERS.add(self)
        try:
            self._setup(start, end, threads, allow_hdr, passthrough, url)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ set-up
    def _setup(self, start, end, threads, allow_hdr, passthrough, url) -> None:
        c = self._container
        vs = self._vs = video_stream(c, self.source, self._video_index)
        cc = vs.codec_context
        cc.thread_type = "AUTO"
        cc.thread_count = 0 if str(threads).upper() == "AUTO" else int(threads)
        self._tb = Fraction(vs.time_base) if vs.time_base else Fraction(1, 90000)
        self._pass = passthrough_streams(c, self) if passthrough else {}
        if passthrough:
            left = streams_left_out(c, vs, self._pass)
            if left:  # never silently: a second camera or a GPS track is worth knowing about
                warn(f"{self.source}: not carried into the output: {', '.join(left)} "
                     f"(vidllie enhances video stream #{vs.index}, chosen with --video-stream N, "
                     "and copies audio and subtitles)")

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
                    raise InputError(f"cannot seek in {self.source}: {one_line(exc)}") from None
                # Unseekable file: decode from the start and drop (slow but exact).
                warn(f"seek failed in {self.source} ({one_line(exc)}); decoding from the start")

        self._events: deque = deque()
        self._decoder = Decoder(c, vs, [s.template for s in self._pass.values()], self._tb)
        self._dropped_before = 0
        self._index = 0
        self._video_done = False
        self._pass_done: set[int] = set()
        self._last_time: float | None = None
        first = self._preroll()
        # Every frame comes out at the first size (or the one asked for).
        size = tuple(self._want_size) if self._want_size else (first.width, first.height)

        trc = cc.color_trc if cc.color_trc != 2 else first.color_trc
        hdr = check_hdr(self.source, trc, allow_hdr)
        colour = source_colour(first, cc)
        self._rgb = RgbConverter(self.source, size, colour, self._tb)

        fps, vfr = measure_rate(vs, self._probe_pts, self._first_pts, self._tb)
        frame_count = vs.frames if (vs.frames and not self._trimmed) else None
        if frame_count is not None and self._max_frames is not None:
            frame_count = min(frame_count, self._max_frames)
        duration = stream_duration(c, vs, self._tb, stream_start)
        if self._trimmed and duration is not None:
            lo = start or 0.0
            hi = min(end, duration) if end is not None else duration
            duration = max(0.0, hi - lo)
        self.info = VideoInfo(
            source=self.source, width=size[0], height=size[1], fps=fps, vfr=vfr,
            time_base=self._tb, frame_count=frame_count, duration=duration,
            start_time=self._win_start if self._win_start is not None else self._first_time,
            rotation=int(round(first.rotation or 0)) % 360, codec=cc.codec.canonical_name,
            pix_fmt=first.format.name, bit_depth=first.format.components[0].bits,
            colorspace=int(colour.space),
            color_primaries=int(cc.color_primaries or first.color_primaries),
            color_trc=int(trc), color_range=int(colour.range), matrix=colour.matrix_name,
            hdr=hdr, container=c.format.name, passthrough=tuple(self._pass.values()),
            timecode=timecode(c, vs))

    # ------------------------------------------------------------------ demux / decode
    def _in_window(self, frame) -> str:
        """'keep' | 'before' | 'after' for a decoded frame (gives pts-less frames a pts)."""
        if frame.pts is None:
            frame.pts = self._decoder.times.missing_pts()
        t = float(frame.pts * self._tb)
        if self._win_start is not None and t < self._win_start - 1e-6:
            return "before"
        if self._win_end is not None and t >= self._win_end - 1e-6:
            return "after"
        return "keep"

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
            pkt = self._decoder.next_packet()
            if pkt is None:
                for f in self._decoder.decode(None):
                    if self._in_window(f) == "keep":
                        self._events.append(("frame", f))
                        first = first or f
                break
            if pkt.stream_index == vidx:
                if pkt.pts is not None:
                    self._probe_pts.append(pkt.pts)
                for f in self._decoder.decode(pkt):
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
            decoder = self._decoder
            detail = f" ({decoder.error_message})" if decoder.errors else ""
            if decoder.cut:
                detail = f" ({decoder.cut})"
            if (self._pipe is not None and not self._pipe.seekable()
                    and "mp4" in self._container.format.name.split(",")):
                raise pipe_mp4_error(self._pipe)
            raise InputError(f"cannot decode any video frame from {self.source}{detail}")
        self._first_pts, self._first_time = first.pts, float(first.pts * self._tb)
        seen, size = 0, 0
        while seen < _PROBE_PACKETS and size < _PROBE_BYTES:
            pkt = self._decoder.next_packet()
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
        image = self._rgb(f)
        pts = self._decoder.times.frame_pts(f.pts)
        out = Frame(image=image, pts=int(pts), time_base=self._tb, time=float(pts * self._tb),
                    index=self._index)
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
                    self._win_end = frame.time + 1.0 / guess_fps(self._vs)
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
                item = self._decoder.next_packet()
                if item is None:
                    break
                kind = "vpkt" if item.stream_index == vidx else "pass"
            if kind == "frame":
                yield from self._frames_from([item])
            elif kind == "vpkt":
                if not self._video_done:
                    yield from self._frames_from(self._decoder.decode(item))
            elif item.stream_index in self._pass:
                keep, t = self._pass_keep(item)
                if keep:
                    info = self._pass[item.stream_index]
                    yield PassthroughPacket(item, item.stream_index, info.kind, t)
                elif t is not None and past_end_limit is not None and t > past_end_limit:
                    break  # sparse streams never reach `end`; do not read the whole file
        if not self._video_done:
            yield from self._frames_from(self._decoder.decode(None))
        self._report_end()

    def __iter__(self) -> Iterator[Frame]:
        return (x for x in self.stream() if isinstance(x, Frame))

    def _report_end(self) -> None:
        """Warn (never fail) when the input stopped early: cut stream, corrupt packets."""
        decoder, times = self._decoder, self._decoder.times
        if times.synthesized:
            warn(f"{self.source}: {times.synthesized} frame(s) had repeated or backward "
                 f"timestamps; their times were synthesized from the frame rate "
                 f"({guess_fps(self._vs):g} fps)")
        if times.jumps:
            warn(f"{self.source}: the timestamps jump back {times.jumps} time(s) (joined "
                 "segments or a restarted source); the later parts follow on without a gap")
        if decoder.errors:
            warn(f"{self.source}: {decoder.errors} video packet(s) could not be decoded "
                 f"({decoder.error_message}); their frames are missing from the output")
        last = self._last_time
        if decoder.corrupt:
            warn(f"{self.source}: {decoder.corrupt} packet(s) flagged corrupt by the demuxer "
                 "(damaged or cut data); kept, but the picture/sound there may be damaged")
        if decoder.cut:
            warn(f"{self.source}: input ends abruptly after {self._index} frames at "
                 f"{last:.3f} s ({decoder.cut}); processed up to the cut")
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
        got = self._index + decoder.errors
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
    def frames_decoded(self) -> int:
        """Frames decoded so far: those yielded plus those dropped before ``start`` (after the
        seek to the keyframe before it)."""
        return self._index + self._dropped_before

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._container is not None and not self._closed:
            self._closed = True
            if hasattr(self, "_events"):
                self._events.clear()
            decoder = getattr(self, "_decoder", None)
            if decoder is not None:  # demuxer and decoder finished before the container
                decoder.close()
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
