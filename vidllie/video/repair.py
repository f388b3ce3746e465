"""Repairs the reader makes to awkward input as it goes, so that one output can hold
it: timestamps that jump back (joined segments) continue where they were, repeated or backward
frame times become the previous one plus a frame period, frames of another size (a mid-stream
resolution change) are scaled to the first size, and frames an MP4 edit list hides are kept.
Each repair counts what it did; the reader warns about the counts at the end of the input (a
resolution change is warned about when it happens).
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import ColorRange, Interpolation

from .info import warn
from .probe import SourceColour, guess_fps

# A video dts going back by more than this is a discontinuity (concatenated segments, a camera
# restart): the stream is shifted to continue where it was. Smaller steps back are broken
# timestamps, handled per frame.
JUMP_BACK = 0.1
# Accurate colour (checked on FFmpeg 8.1): rgb24 needs FULL_CHR_H_INT, else swscale's fast
# yuv->rgb path is off by ~3 per channel ((250,90,40) -> (246,88,38)); rgb48le must NOT use it,
# it scrambles green/blue there ((250,90,40) -> (249,0,97)).
_INTERP_8 = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
_INTERP_16 = Interpolation.BILINEAR | Interpolation.ACCURATE_RND


class TimestampRepair:
    """Continuous, strictly increasing timestamps for one input.

    :meth:`packet` shifts a stream whose dts jumps back (per stream, on every demuxed packet);
    :meth:`frame_pts` keeps decoded frame times strictly increasing. ``jumps`` counts the
    video discontinuities, ``synthesized`` the frame times made up.
    """

    def __init__(self, vs: av.video.VideoStream, time_base: Fraction) -> None:
        self._vs, self._tb = vs, time_base
        self.shift: dict[int, int] = {}  # per stream: ticks added after a discontinuity
        self.last_dts: dict[int, tuple[int, int]] = {}  # per stream: (dts, duration) seen last
        self.last_pts: int | None = None  # of the last frame given out
        self.jumps = 0
        self.synthesized = 0

    def packet(self, pkt: av.Packet) -> None:
        """Shift a stream whose dts jumps back (discontinuity) so it continues where it was.

        Audio/subtitles: any step back (a muxer refuses non-increasing dts). Video: a step back
        of more than ``JUMP_BACK`` s (smaller ones are repaired per frame in :meth:`frame_pts`).
        """
        idx = pkt.stream_index
        shift = self.shift.get(idx, 0)
        if shift:
            if pkt.pts is not None:
                pkt.pts += shift
            if pkt.dts is not None:
                pkt.dts += shift
        if pkt.dts is None or not pkt.time_base:
            return
        last = self.last_dts.get(idx)
        if last is not None:
            back = last[0] - pkt.dts
            video = idx == self._vs.index
            limit = round(JUMP_BACK / pkt.time_base) if video else -1
            if back > limit:
                step = last[1] or (round(1 / (guess_fps(self._vs) * pkt.time_base)) if video else 1)
                extra = back + step
                self.shift[idx] = shift + extra
                self.jumps += video
                if pkt.pts is not None:
                    pkt.pts += extra
                pkt.dts += extra
        self.last_dts[idx] = (pkt.dts, pkt.duration or 0)

    def missing_pts(self) -> int:
        """A pts for a decoded frame that has none: one frame period after the last one."""
        if self.last_pts is None:
            return 0
        return self.last_pts + round(1 / (guess_fps(self._vs) * self._tb))

    def frame_pts(self, pts: int) -> int:
        """The pts a frame is given out with: its own, or (repeated/backward, e.g. DVR exports)
        the previous one plus one frame period."""
        if self.last_pts is not None and pts <= self.last_pts:
            pts = self.last_pts + max(1, round(1 / (guess_fps(self._vs) * self._tb)))
            self.synthesized += 1
        self.last_pts = pts
        return pts


class RgbConverter:
    """Decoded frames -> (H, W, 3) RGB full range (uint8, or uint16 for deep sources), every one
    at ``size`` (width, height); ``rescaled`` counts the frames that had another size."""

    def __init__(self, source: str, size: tuple[int, int], colour: SourceColour,
                 time_base: Fraction) -> None:
        self._source, self.size, self._colour, self._tb = source, size, colour, time_base
        self.rescaled = 0

    def __call__(self, f: av.VideoFrame) -> np.ndarray:
        size = {}
        if (f.width, f.height) != self.size:
            # A mid-stream resolution change (camera switch, concatenated segments): one output
            # keeps one size, so the frame is scaled to the first size (aspect as the input).
            size = {"width": self.size[0], "height": self.size[1]}
            if not self.rescaled:
                warn(f"{self._source}: resolution changed from {self.size[0]}x{self.size[1]} "
                     f"to {f.width}x{f.height} at {float(f.pts * self._tb):.3f} s; frames are "
                     f"scaled to {self.size[0]}x{self.size[1]} (one output keeps one size)")
            self.rescaled += 1
        c = self._colour
        return f.to_ndarray(
            **size,
            format="rgb48le" if c.deep else "rgb24",
            src_colorspace=None if c.rgb else c.matrix,
            src_color_range=None if c.rgb else c.src_range,
            dst_color_range=ColorRange.JPEG,
            interpolation=_INTERP_16 if c.deep else _INTERP_8)  # (H, W, 3)


def undiscard(pkt: av.Packet) -> av.Packet:
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
