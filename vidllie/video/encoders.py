"""What goes into an output container: the video encoder (default per container, refused ones),
the pixel format (4:4:4 for odd sizes), the encoder options (crf, x264-style presets mapped for
VP9/AV1, no B-frames where the container keeps one time per frame), whether the container takes
an input's audio/subtitles by stream copy, and the AAC/Opus re-encode of refused audio.
:class:`~vidllie.video.writer.VideoWriter` uses these choices.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av

from ..errors import OutputError
from .info import FFMPEG_ERRORS, StreamInfo, one_line, warn

_X26X = {"libx264", "libx265"}
_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 6: "5.1", 8: "7.1"}
# Containers that take only a few video codecs: encoders to pick from, in order of preference
# (the first one this FFmpeg build has is the default for that container).
_ONLY_ENCODERS = {"webm": ("libvpx-vp9", "libsvtav1", "libvpx")}
# Containers that store one timestamp per frame (no B-frame reordering): encode without B-frames,
# else players (and FFmpeg) read the frames back with scrambled times (0.04, 0.16, 0.12, ...).
_NO_REORDER = {"avi"}
# x264-style speed presets for encoders that name speed differently.
_VPX_SPEED = {"ultrafast": 8, "superfast": 7, "veryfast": 6, "faster": 5, "fast": 4, "medium": 3,
              "slow": 2, "slower": 1, "veryslow": 0, "placebo": 0}
_SVT_SPEED = {"ultrafast": 12, "superfast": 11, "veryfast": 10, "faster": 9, "fast": 8,
              "medium": 7, "slow": 5, "slower": 4, "veryslow": 3, "placebo": 2}


def default_encoder(container_format: str) -> str:
    """The video encoder used when none is given: libx264, or one the container takes (WebM)."""
    for name in _ONLY_ENCODERS.get(container_format.split(",")[0], ("libx264",)):
        if name in av.codecs_available:
            return name
    return "libx264"


def choose_encoder(codec: str | None, fmt: str, kind: str) -> str:
    """``codec`` (None: :func:`default_encoder`) checked against container ``fmt``; OutputError
    for an unknown encoder or one the container cannot hold (``kind`` names the output)."""
    if codec is None:
        codec = default_encoder(fmt)
    try:
        canonical = av.Codec(codec, "w").canonical_name
    except (*FFMPEG_ERRORS, ValueError):
        raise OutputError(f"unknown video encoder '{codec}' (try libx264 or libx265)") from None
    allowed = [c for c in _ONLY_ENCODERS.get(fmt, ()) if c in av.codecs_available]
    if allowed and canonical not in {av.Codec(c, "w").canonical_name for c in allowed}:
        raise OutputError(f"{codec} ({canonical}) cannot go in {kind}: use "
                          f"--codec {' or '.join(allowed)} (or leave --codec unset), or write "
                          ".mp4/.mkv")
    return codec


# x264/x265 preset names (VP9/AV1 map the same names), and the crf range each encoder takes
# (x264/x265 clamp a larger value silently).
_X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                 "slower", "veryslow", "placebo")
_CRF_RANGE = {"libx264": (0, 51), "libx265": (0, 51), "libvpx-vp9": (0, 63), "libvpx": (4, 63),
              "libsvtav1": (1, 63), "libaom-av1": (0, 63)}


def check_encoder_settings(codec: str, crf: int | None, preset: str | None,
                           pix_fmt: str | None, bit_depth: int = 8) -> None:
    """One-line OutputError naming the option and its valid values when ``preset``, ``crf`` or
    ``pix_fmt`` cannot work with ``codec`` (checked before FFmpeg sees them: its own errors
    name no option).

    >>> check_encoder_settings("libx264", 99, "medium", None)
    Traceback (most recent call last):
    ...
    vidllie.errors.OutputError: --crf 99 is out of range for libx264: use 0 to 51 (lower = better)
    """
    takes_preset = codec in _X26X or codec.startswith("libvpx") or codec == "libsvtav1"
    if preset is not None and takes_preset and preset not in _X26X_PRESETS:
        raise OutputError(f"--preset {preset!r} is not a preset for {codec}: use "
                          f"{', '.join(_X26X_PRESETS)}")
    if crf is not None and codec in _CRF_RANGE:
        low, high = _CRF_RANGE[codec]
        if codec == "libx264" and bit_depth > 8:
            low = -6 * (bit_depth - 8)  # x264's crf scale extends below 0 at high bit depth
        if not low <= crf <= high:
            raise OutputError(f"--crf {crf} is out of range for {codec}: use {low} to {high} "
                              "(lower = better)")
    if pix_fmt is not None:
        formats = [f.name for f in av.Codec(codec, "w").video_formats or ()]
        if formats and pix_fmt not in formats:
            raise OutputError(f"--pix-fmt {pix_fmt!r} cannot be written by {codec}: use "
                              f"{', '.join(formats)}")


def _subsampled(pix_fmt: str) -> tuple[bool, bool]:
    """(horizontal, vertical) chroma subsampling of a pixel format."""
    fmt = av.VideoFormat(pix_fmt, 16, 16)
    if len(fmt.components) < 3 or fmt.is_rgb:
        return False, False
    c = fmt.components[1]
    return c.width < 16, c.height < 16


def choose_pix_fmt(codec: str, pix_fmt: str | None, width: int, height: int) -> str:
    """The output pixel format: ``pix_fmt``, or yuv420p (rgb24 for rawvideo), yuv444p with a
    warning when 4:2:0 cannot hold an odd size; OutputError for a subsampled ``pix_fmt`` that
    cannot hold it.

    Example:
        >>> choose_pix_fmt("libx264", None, 640, 360), choose_pix_fmt("rawvideo", None, 64, 48)
        ('yuv420p', 'rgb24')
    """
    odd = width % 2 or height % 2
    if pix_fmt is None:
        pix_fmt = "rgb24" if codec == "rawvideo" else "yuv420p"
        h, v = _subsampled(pix_fmt)
        if (h and width % 2) or (v and height % 2):
            # 4:2:0 cannot hold an odd size; keep every pixel rather than crop or pad.
            pix_fmt = "yuv444p"
            warn(f"odd frame size {width}x{height}: writing {pix_fmt} "
                 "(4:2:0 needs even sizes); some players may not play 4:4:4")
    elif odd:
        h, v = _subsampled(pix_fmt)
        if (h and width % 2) or (v and height % 2):
            raise OutputError(f"{pix_fmt} needs an even frame size, the input is "
                              f"{width}x{height}; use yuv444p or leave pix_fmt unset")
    return pix_fmt


def set_encoder_options(vs: av.video.VideoStream, codec: str, fmt: str, crf: int | None,
                        preset: str | None, options: dict) -> None:
    """Encoder options of ``vs``: ``crf`` where the encoder has one, ``preset`` (x264 names,
    mapped for VP9/AV1), no B-frames in containers without reordering, then ``options``."""
    opts = {}
    private = {o.name for o in vs.codec_context.supported_options.private}
    if crf is not None and "crf" in private:  # x264/x265/vpx/svtav1/aom; ignored elsewhere
        opts["crf"] = str(crf)
        if codec.startswith("libvpx"):
            opts["b"] = "0"  # constant quality needs no bitrate target in libvpx
    if preset is not None and codec in _X26X:  # other encoders name presets differently
        opts["preset"] = preset
    elif preset in _VPX_SPEED and codec.startswith("libvpx"):
        opts.update({"deadline": "good", "cpu-used": str(min(5, _VPX_SPEED[preset])),
                     "row-mt": "1"})
    elif preset in _SVT_SPEED and codec == "libsvtav1":
        opts["preset"] = str(_SVT_SPEED[preset])
    if codec == "libx265":
        opts["x265-params"] = "log-level=error"
    if fmt in _NO_REORDER:
        vs.codec_context.max_b_frames = 0  # libx264 and most FFmpeg encoders honour this
        if codec == "libx265":
            opts["x265-params"] += ":bframes=0"
    opts.update({str(k): str(v) for k, v in options.items()})
    vs.options = opts


def copy_refusal(fmt: str, s: StreamInfo) -> str | None:
    """Why ``fmt`` cannot take ``s`` by stream copy, or None if it can.

    Dry run into memory: header + trailer (catches e.g. Opus in .mov), and for PCM one packet
    too, since MP4 refuses stereo PCM only when the trailer is written after data.
    """
    try:
        dry = av.open(io.BytesIO(), mode="w", format=fmt.split(",")[0])
    except (*FFMPEG_ERRORS, ValueError) as exc:
        return one_line(exc)
    try:
        ost = dry.add_stream_from_template(s.template)
        dry.start_encoding()
        if s.codec.startswith("pcm_"):
            pkt = av.Packet(bytes(4096))
            pkt.pts = pkt.dts = 0
            pkt.time_base = ost.time_base
            pkt.stream = ost
            dry.mux(pkt)
        dry.close()
        return None
    except (*FFMPEG_ERRORS, ValueError) as exc:
        try:
            dry.close()
        except Exception:  # noqa: BLE001
            pass
        return one_line(exc)


def audio_fallback(out: av.container.OutputContainer) -> str | None:
    """Encoder for refused audio: AAC where the container takes it, else Opus (WebM)."""
    codecs = out.supported_codecs
    if "aac" in codecs:
        return "aac"
    if "opus" in codecs:
        return "libopus" if "libopus" in av.codecs_available else "opus"
    return None


class AudioReencoder:
    """Decode a passthrough audio stream and re-encode it to AAC, or Opus where the container
    takes no AAC (fallback for refused codecs)."""

    def __init__(self, out: av.container.OutputContainer, s: StreamInfo,
                 codec: str = "aac") -> None:
        self._dec = s.template.codec_context  # the reader never decodes audio; safe to use here
        if self._dec is None:
            raise OutputError(f"cannot re-encode {s.codec} audio: no decoder in this FFmpeg build")
        rate = s.sample_rate or 48000
        channels = self._dec.channels or 2
        layout = self._dec.layout
        if channels in _LAYOUTS:  # unordered "2 channels" (PCM) is refused by the AAC encoder
            layout = av.AudioLayout(_LAYOUTS[channels])
        frame_size, fmt = 1024, "fltp"
        if codec != "aac":  # Opus: 48 kHz, 20 ms frames, at most stereo without a mapping
            rate, frame_size = 48000, 960
            fmt = "flt" if codec == "libopus" else "fltp"
            if channels > 2:
                layout = av.AudioLayout("stereo")
        self.stream = out.add_stream(codec, rate=rate)
        self.stream.layout = layout
        self.stream.time_base = Fraction(1, rate)
        self._resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate,
                                            frame_size=frame_size)
        self._tb = Fraction(1, rate)

    def packets(self, pkt):
        frames = self._dec.decode(pkt) if pkt is not None else self._dec.decode(None)
        out = []
        for f in frames:
            for g in self._resampler.resample(f):
                out.extend(self.stream.encode(g))
        if pkt is None:
            for g in self._resampler.resample(None):
                out.extend(self.stream.encode(g))
            out.extend(self.stream.encode(None))
        return out
