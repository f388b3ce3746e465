"""The video writer (PyAV): RGB frames encoded BT.709 with their exact timestamps, passthrough
packets muxed unchanged, into a hidden temp file renamed on success (or a stream, see
:mod:`~vidllie.video.pipes`). Encoder, pixel format and audio choices come from
:mod:`~vidllie.video.encoders`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import weakref
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc, Interpolation

from ..errors import OutputError
from .encoders import (AudioReencoder, audio_fallback, check_encoder_settings, choose_encoder,
                       choose_pix_fmt,
                       copy_refusal, default_encoder, set_encoder_options)
from .info import FFMPEG_ERRORS, PassthroughPacket, VideoInfo, one_line, warn
from .pipes import (BorrowedFile, borrow_output, open_output, open_special_output, special_output_kind,
                    write_error)
from .probe import is_url

__all__ = ["VideoWriter", "default_encoder"]

_INTERP = Interpolation.BILINEAR | Interpolation.ACCURATE_RND


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def temp_files_of(path: Path) -> list[tuple[Path, int]]:
    """The hidden temp files of writers of ``path`` (``.<stem>.<pid>-<hex>.part<suffix>`` beside
    it), with the pid of the process that made each."""
    pattern = re.compile(rf"\.{re.escape(path.stem)}\.(\d+)-[0-9a-f]{{8}}\.part"
                         rf"{re.escape(path.suffix)}")
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    return [(path.parent / n, int(m.group(1))) for n in names if (m := pattern.fullmatch(n))]


def remove_stale_temp_files(path: Path) -> list[Path]:
    """Delete the temp files that writers of ``path`` left when they were killed (kill -9,
    power cut): those whose process is gone. A live run's temp file is never touched."""
    removed = []
    for tmp, pid in temp_files_of(path):
        if pid != os.getpid() and not _process_alive(pid):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


class VideoWriter:
    """Encode RGB frames and mux passthrough packets into ``path`` (atomically).

    The file is written to a hidden temp name in the same folder and renamed in ``close()``;
    ``abort()`` (and any exception or KeyboardInterrupt inside ``with``) deletes it.
    Timestamps: the video stream uses the input time base and each frame's pts is kept
    (VFR stays VFR); ``time_offset`` seconds are subtracted from every stream (trimmed output).
    Colour: explicit RGB -> BT.709 limited-range conversion, and BT.709 tags; ``hdr="HLG"``:
    the images are HLG BT.2020 RGB, converted with the BT.2020 (non-constant luminance) matrix,
    tagged BT.2020 / arib-std-b67, default codec libx265 at yuv420p10le (10 bits at least).
    Audio: stream copy; if the container refuses the codec, re-encode to AAC with a warning.
    ``crf`` applies to encoders with a "crf" option, ``preset`` to libx264/libx265; ``options``
    passes any other encoder option (e.g. {"tune": "film"}).
    ``codec`` None picks libx264, or VP9/AV1 for WebM (:func:`default_encoder`); AVI output is
    encoded without B-frames (AVI has no per-frame presentation times).
    Without ``overwrite`` the final rename never replaces a file that appeared at ``path``
    during the run: the finished result is then kept beside it and an OutputError says where.
    Create the writer while the reader is open (its streams are the audio templates).
    ``path`` may also be ``"-"`` (standard output) or a writable file object: then ``format``
    names the container (default Matroska; MP4/MOV cannot stream), there is no temp file or
    rename, and a failure leaves the stream cut where it failed, without trailer (see
    :mod:`vidllie.video.pipes`). ``format`` also overrides the suffix of a path.
    ``format="rawvideo"`` writes bare frames (codec rawvideo, ``pix_fmt`` default rgb24, no
    timestamps, no audio: it is left out with a warning).
    """

    def __init__(self, path: str | os.PathLike | BinaryIO, info: VideoInfo, *,
                 codec: str | None = None,
                 crf: int | None = 18, preset: str | None = "medium", pix_fmt: str | None = None,
                 audio: bool = True, time_offset: float = 0.0, overwrite: bool = False,
                 options: dict[str, str] | None = None, format: str | None = None,
                 hdr: str | None = None) -> None:
        if hdr not in (None, "HLG"):
            raise ValueError(f"hdr must be None or 'HLG', got {hdr!r}")
        self.hdr = hdr
        self._pipe = borrow_output(path)
        # An existing FIFO or device is written into as a stream, never renamed over.
        self._owned = None
        if self._pipe is None and special_output_kind(path):
            self._owned = open_special_output(path, format)
            self._pipe = BorrowedFile(self._owned, os.fspath(path))
        self.path = Path(self._pipe.name if self._pipe is not None else os.fspath(path))
        self.info = info
        self._container = None
        self._closed = False
        self._frames = 0
        self._last_pts: int | None = None
        self._tmp = self._finalizer = None
        self._overwrite = overwrite
        self._offset_requested = bool(time_offset)
        if self._pipe is not None:
            try:
                self._container = open_output(self._pipe, format)
            except BaseException:
                self._close_owned()
                raise
        else:
            self._open_file(overwrite, format)
        if self._container.format.name == "rawvideo":
            codec, audio = "rawvideo", self._raw_audio(audio)
        try:
            self._setup_video(codec, crf, preset, pix_fmt, options or {})
            self._setup_passthrough(audio)
            try:  # open encoders + write the header now: bad settings fail before any decoding
                self._container.start_encoding()
            except (*FFMPEG_ERRORS, OSError) as exc:
                raise write_error(self._pipe, f"cannot start writing {self.path} with {self.codec}/"
                                  f"{self.pix_fmt}", one_line(exc)) from None
        except BaseException:
            self.abort()
            raise
        self._offset = time_offset

    def _raw_audio(self, audio: bool) -> bool:
        if audio and self.info.audio:
            warn(f"raw video output carries no audio: {len(self.info.audio)} audio stream(s) "
                 "left out (write matroska or nut to keep it)")
        return False

    def _open_file(self, overwrite: bool, format: str | None) -> None:
        """Create the hidden temp file beside ``self.path`` and open the container on it."""
        self._check_target(overwrite)
        remove_stale_temp_files(self.path)
        # The pid in the name tells a later run whether the writer of a temp file is still alive.
        self._tmp = str(self.path.parent / f".{self.path.stem}.{os.getpid()}-"
                        f"{secrets.token_hex(4)}.part{self.path.suffix}")
        # If the writer is dropped without close()/abort() (crash), never leave the temp file.
        try:  # create the temp file ourselves: a clear error for read-only folders (even as root)
            with open(self._tmp, "xb"):
                pass
        except OSError as exc:
            raise OutputError(f"output folder is not writable: {self.path.parent} "
                              f"({exc.strerror})") from None
        self._finalizer = weakref.finalize(self, _remove, self._tmp)
        try:
            self._container = av.open(self._tmp, mode="w", format=format)
        except ValueError as exc:  # no muxer for this suffix
            self._finalizer()
            raise OutputError(f"cannot write {self.path}: unknown container format for suffix "
                              f"'{self.path.suffix}' ({exc}); use .mp4, .mkv or .mov") from None
        except (*FFMPEG_ERRORS, OSError) as exc:
            self._finalizer()
            raise OutputError(f"cannot create {self.path}: {one_line(exc)}") from None

    # ------------------------------------------------------------------ checks / set-up
    @property
    def _kind(self) -> str:
        """What the output is, for messages: its suffix, or its container for a stream."""
        return self.path.suffix or (self._container.format.name.split(",")[0]
                                    if self._container is not None else "the output")

    def _check_target(self, overwrite: bool) -> None:
        p = self.path
        src = self.info.source
        if not is_url(src) and _same_file(p, Path(src)):
            raise OutputError(f"output path is the input file ({p}); give another name with -o")
        if p.is_dir():
            raise OutputError(f"output path is a directory: {p}")
        parent = p.parent
        if not parent.is_dir():
            raise OutputError(f"output folder does not exist: {parent}")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"output folder is not writable: {parent}")
        if p.exists() and not overwrite:
            raise OutputError(f"output exists: {p} (pass overwrite=True, or -y to vidllie enhance)")

    def _setup_video(self, codec, crf, preset, pix_fmt, options) -> None:
        info, out = self.info, self._container
        fmt = out.format.name.split(",")[0]
        if self.hdr and codec is None:
            codec = "libx265"
        if self.hdr and pix_fmt is None:
            pix_fmt = "yuv420p10le" if not (info.width % 2 or info.height % 2) else "yuv444p10le"
        codec = self.codec = choose_encoder(codec, fmt, self._kind)
        depth = av.VideoFormat(pix_fmt).components[0].bits if pix_fmt in av.video.format.names else 8
        check_encoder_settings(codec, crf, preset, pix_fmt, depth)
        pix_fmt = self.pix_fmt = choose_pix_fmt(codec, pix_fmt, info.width, info.height)
        if self.hdr and av.VideoFormat(pix_fmt).components[0].bits < 10:
            raise OutputError(f"HLG output needs 10 bits or more; pix_fmt {pix_fmt} has "
                              f"{av.VideoFormat(pix_fmt).components[0].bits}")
        try:
            vs = out.add_stream(codec, rate=info.fps or Fraction(25))
        except (*FFMPEG_ERRORS, ValueError) as exc:
            raise OutputError(f"cannot use encoder '{codec}' in {self._kind}: "
                              f"{one_line(exc)}") from None
        vs.width, vs.height = info.width, info.height
        try:
            vs.pix_fmt = pix_fmt
        except (*FFMPEG_ERRORS, ValueError) as exc:
            raise OutputError(f"pixel format '{pix_fmt}': {one_line(exc)}") from None
        # Exact per-frame times: the output counts in the input's time base.
        vs.time_base = vs.codec_context.time_base = info.time_base
        set_encoder_options(vs, codec, fmt, crf, preset, options)
        cc = vs.codec_context
        self._matrix = Colorspace.BT2020 if self.hdr else Colorspace.ITU709  # BT2020: NCL (9)
        cc.colorspace = self._matrix
        cc.color_primaries = ColorPrimaries.BT2020 if self.hdr else ColorPrimaries.BT709
        cc.color_trc = ColorTrc.ARIB_STD_B67 if self.hdr else ColorTrc.BT709
        cc.color_range = ColorRange.MPEG
        if info.rotation:
            vs.set_display_rotation(info.rotation)
        timecode = getattr(info, "timecode", None)
        if timecode and self._offset_requested:
            warn(f"the input's timecode {timecode} is not copied: the output is trimmed, so it "
                 "would be wrong")
        elif timecode:
            vs.metadata["timecode"] = timecode  # MOV/MP4 get a tmcd track, MKV a tag
        self._vs = vs
        self._ten_bit = av.VideoFormat(pix_fmt).components[0].bits > 8

    def _setup_passthrough(self, audio: bool) -> None:
        """Output streams for the input's audio/subtitles: copy when the container takes the
        codec, else AAC re-encode (audio, with a warning) or drop (subtitles, with a warning)."""
        self._map: dict[int, av.stream.Stream] = {}
        self._reencode: dict[int, AudioReencoder] = {}
        if not audio:
            return
        fmt = self._container.format.name
        for s in self.info.passthrough:
            if s.reader is not None and s.reader.closed:
                raise OutputError("create the VideoWriter while its VideoReader is open "
                                  "(audio streams are copied from it)")
            refusal = copy_refusal(fmt, s)
            if refusal is None:
                self._map[s.index] = self._container.add_stream_from_template(s.template)
            elif s.kind == "audio":
                target = audio_fallback(self._container)
                if target is None:
                    raise OutputError(f"{self._kind} cannot hold the input's {s.codec} audio "
                                      "nor AAC/Opus; write .mkv (keeps it unchanged) or pass "
                                      "audio=False")
                label = "AAC" if target == "aac" else "Opus"
                warn(f"{self._kind} cannot hold {s.codec} audio ({refusal}): re-encoding "
                     f"stream #{s.index} to {label}; write .mkv to keep the original audio "
                     "unchanged")
                self._reencode[s.index] = AudioReencoder(self._container, s, target)
                self._map[s.index] = self._reencode[s.index].stream
            else:
                warn(f"{self._kind} cannot hold {s.codec} subtitles ({refusal}): "
                     f"stream #{s.index} is left out; write .mkv to keep it")

    # ------------------------------------------------------------------ writing
    def write(self, image: np.ndarray, pts: int | None = None,
              time_base: Fraction | None = None) -> None:
        """Encode one RGB image (H, W, 3) uint8 or uint16, full range, at ``pts``.

        ``pts`` counts in ``time_base`` (default: the input's); None = next frame at info.fps.
        """
        if self._closed:
            raise OutputError("write() after close()/abort()")
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != (self.info.height,
                                                                        self.info.width):
            raise ValueError(f"expected ({self.info.height}, {self.info.width}, 3) image, "
                             f"got {image.shape}")
        tb = self._vs.codec_context.time_base
        if pts is None:
            step = (1 / (self.info.fps or 25)) / tb
            pts = (self._last_pts + round(step)) if self._last_pts is not None else 0
            out_pts = pts
        else:
            src_tb = Fraction(time_base) if time_base else self.info.time_base
            out_pts = round(pts * src_tb / tb) if src_tb != tb else int(pts)
            out_pts -= round(Fraction(self._offset).limit_denominator(10**9) / tb)
        if self._last_pts is not None and out_pts <= self._last_pts:
            out_pts = self._last_pts + 1  # encoders need strictly increasing pts
        if image.dtype == np.uint8:
            src = "rgb24"
        elif image.dtype == np.uint16:
            src = "rgb48le"
        else:
            raise ValueError(f"image dtype must be uint8 or uint16, got {image.dtype}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=src)
        frame = frame.reformat(format=self.pix_fmt, src_color_range=ColorRange.JPEG,
                               dst_colorspace=self._matrix, dst_color_range=ColorRange.MPEG,
                               interpolation=_INTERP)
        frame.pts, frame.time_base = out_pts, tb
        try:
            for p in self._vs.encode(frame):
                self._container.mux(p)
        except (*FFMPEG_ERRORS, OSError) as exc:
            raise write_error(self._pipe, f"cannot write {self.path}", one_line(exc)) from None
        self._last_pts = out_pts
        self._frames += 1

    def mux(self, item: PassthroughPacket) -> None:
        """Mux a passthrough packet unchanged (timestamps shifted by time_offset)."""
        if self._closed:
            raise OutputError("mux() after close()/abort()")
        ost = self._map.get(item.stream_index)
        if ost is None:
            return  # audio=False, or a refused subtitle stream (warned at set-up)
        pkt = item.packet
        if self._offset:
            shift = round(Fraction(self._offset).limit_denominator(10**9) / pkt.time_base)
            if pkt.pts is not None:
                pkt.pts -= shift
            if pkt.dts is not None:
                pkt.dts -= shift
        try:
            if item.stream_index in self._reencode:
                for p in self._reencode[item.stream_index].packets(pkt):
                    self._container.mux(p)
            else:
                pkt.stream = ost
                self._container.mux(pkt)
        except (*FFMPEG_ERRORS, OSError) as exc:
            raise write_error(self._pipe, f"cannot write audio to {self.path}",
                              one_line(exc)) from None

    @property
    def frames_written(self) -> int:
        return self._frames

    def close(self) -> Path:
        """Flush, finalise and rename the temp file to the final name; returns the path."""
        if self._closed:
            return self.path
        try:
            if self._frames == 0:
                raise OutputError(f"no video frames were written to {self.path}")
            try:
                for p in self._vs.encode(None):
                    self._container.mux(p)
                for r in self._reencode.values():
                    for p in r.packets(None):
                        self._container.mux(p)
                self._container.close()
            except (*FFMPEG_ERRORS, OSError) as exc:
                raise write_error(self._pipe, f"cannot finish {self.path}", one_line(exc)) from None
            self._closed = True
            if self._pipe is not None:
                self._close_owned()
                return self.path  # a stream: nothing to rename
            try:
                if self._overwrite:
                    os.replace(self._tmp, self.path)
                else:
                    self._rename_no_replace()
            except OSError as exc:
                raise OutputError(f"cannot rename the finished file to {self.path}: "
                                  f"{exc.strerror}") from None
            self._finalizer.detach()
            return self.path
        except BaseException:
            self.abort()
            raise

    def _rename_no_replace(self) -> None:
        """Move the finished temp file to the final name unless a file appeared there meanwhile.

        A hard link fails atomically when the name exists (no check-then-rename race); on file
        systems without hard links, fall back to check + rename. The finished result is never
        thrown away: it is kept under a visible sibling name and the error names it.
        """
        try:
            os.link(self._tmp, self.path)
        except FileExistsError:
            pass
        except OSError:  # no hard links here (FAT, some network/overlay file systems)
            if not self.path.exists():
                os.replace(self._tmp, self.path)
                return
        else:
            os.unlink(self._tmp)
            return
        kept = self.path.with_name(f"{self.path.stem}.{secrets.token_hex(3)}{self.path.suffix}")
        os.replace(self._tmp, kept)
        self._finalizer.detach()
        raise OutputError(f"{self.path} appeared during the run and was not replaced (no "
                          f"overwrite); the finished result is kept as {kept}")

    def abort(self) -> None:
        """Stop and delete the temp file; nothing appears under the final name. (A stream stops
        where it is: no trailer, no more bytes.)"""
        self._closed = True
        if self._pipe is not None:
            self._pipe.abandon()
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - half-written output, we delete it anyway
                pass
            self._container = None
        self._close_owned()
        if self._finalizer is not None:
            self._finalizer()

    def _close_owned(self) -> None:
        """Close the FIFO/device this writer opened itself (a caller's file object stays open)."""
        if self._owned is not None:
            try:
                self._owned.close()
            except OSError:  # its reader went away: the stream already ended
                pass
            self._owned = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
