"""The reader's lowest layer: packets out of the demuxer and frames out of the video decoder.

:class:`Decoder` gives the demuxed packets of the video stream and the passthrough streams one by
one (flush packets skipped, hidden frames kept, timestamps repaired as they pass: see
:class:`~vidllie.video.repair.TimestampRepair`) and decodes video packets into frames, with
AVI's decode-order times turned into presentation times. A read error ends the input (``cut``
says why), a packet that cannot be decoded is counted (``errors``) and skipped; the reader decides
what to warn about at the end.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

import av

from .info import one_line
from .repair import TimestampRepair, undiscard


class Decoder:
    """Demux ``streams`` (the video stream first) of ``container``; decode the video stream's
    packets. ``times`` is the input's :class:`~vidllie.video.repair.TimestampRepair`."""

    def __init__(self, container, vs: av.video.VideoStream, streams: Iterable, time_base: Fraction) -> None:
        self._vs = vs
        self._demux = container.demux([vs, *streams])
        self.times = TimestampRepair(vs, time_base)
        # AVI stores no presentation times (see decode()).
        self._dts_times = "avi" in container.format.name.split(",")
        self.eof = False
        self.cut: str | None = None  # why reading stopped early (a read error), or None
        self.corrupt = 0  # packets the demuxer flagged corrupt (kept)
        self.errors = 0  # video packets that could not be decoded
        self.error_message: str | None = None  # the last decode error, one line
        self.flushed = False  # the decoder was drained (decode(None)) by the last call

    def next_packet(self):
        """Next demuxed packet, or None at the end. A read error ends the stream (``cut``)."""
        if self.eof:
            return None
        while True:
            try:
                pkt = next(self._demux)
            except StopIteration:
                self.eof = True
                return None
            except (av.error.FFmpegError, av.ArgumentError, OSError) as exc:
                self.eof = True
                self.cut = one_line(exc)
                return None
            if pkt.size == 0:  # flush packet; a real keyframe may have dts None, keep those
                continue
            if pkt.is_corrupt:
                self.corrupt += 1
            if pkt.is_discard and pkt.stream_index == self._vs.index:
                pkt = undiscard(pkt)
            self.times.packet(pkt)
            return pkt

    def decode(self, pkt) -> list:
        """The frames a video packet completes (``None`` drains the decoder at the end)."""
        self.flushed = pkt is None
        try:
            frames = self._vs.codec_context.decode(pkt)
            if self._dts_times:
                # AVI stores no presentation times: its packet times count in decode order, so a
                # B-frame file's decoded pts run 1, 3, 4, 2, ... The decode timestamp each frame
                # carries is its slot in display order: evenly spaced, in sync with the audio
                # (what FFmpeg's own command line shows for AVI). The frames drained at the end
                # carry none: they follow on, one frame period apart.
                for f in frames:
                    f.pts = f.dts
            return frames
        except (av.error.FFmpegError, av.ArgumentError) as exc:
            if pkt is None:
                return []
            self.errors += 1
            self.error_message = one_line(exc)
            return []

    def close(self) -> None:
        """Finish the demuxer and drain the decoder (before the container is closed)."""
        if self._demux is not None:
            # Finish the demux generator before the container: left to the garbage collector
            # after the container is closed, it can hang the interpreter at exit.
            self._demux.close()
            self._demux = None
        if not self.flushed:
            # Drain the frame-threaded decoder: freeing it with frames in flight can deadlock
            # FFmpeg's worker threads (seen at interpreter exit after reading only .info).
            self.flushed = True
            try:
                for _ in self._vs.codec_context.decode(None):
                    pass
            except (av.error.FFmpegError, ValueError):
                pass
