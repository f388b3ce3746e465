"""Tiny test clips generated with PyAV (reusable by every test module).

``make_clip(path, ...)`` writes a small clip and returns its path. The container follows the suffix
(.mp4, .mkv, .mov, .ts, .avi). Clips are small on purpose: tests stay fast on 2 shared CPU cores.

Frame content comes from ``frame_fn(index) -> image``: (H, W, 3) RGB, ``uint8`` (0..255) or
``uint16`` (0..65535). Ready-made ones: :func:`moving_square` (default), :func:`flat`,
:func:`still_noise`.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc

FrameFn = Callable[[int], np.ndarray]

AUDIO_RATE = 48000
# Per-frame durations (ms) cycled through for VFR clips: mean ~33 ms, clearly non-constant.
VFR_PATTERN_MS = (33, 50, 17, 40, 25, 45)

# colour name -> (matrix for the RGB->YUV conversion, primaries, transfer)
_COLOURS = {
    "bt709": (Colorspace.ITU709, ColorPrimaries.BT709, ColorTrc.BT709),
    "bt601": (Colorspace.ITU601, ColorPrimaries.SMPTE170M, ColorTrc.SMPTE170M),
    # HDR: frames are the HLG/PQ signal as RGB (uint16), BT.2020 NCL matrix (use 10-bit HEVC).
    "hlg": (Colorspace.BT2020, ColorPrimaries.BT2020, ColorTrc.ARIB_STD_B67),
    "pq": (Colorspace.BT2020, ColorPrimaries.BT2020, ColorTrc.SMPTE2084),
}


def moving_square(width: int, height: int, size: int = 16) -> FrameFn:
    """Grey gradient with a white square moving right 2 px per frame (frames differ)."""
    base = np.zeros((height, width, 3), np.uint8)
    base[...] = np.linspace(40, 200, width, dtype=np.uint8)[None, :, None]

    def fn(i: int) -> np.ndarray:
        img = base.copy()
        x = (2 * i) % max(1, width - size)
        y = (height - size) // 2
        img[y:y + size, x:x + size] = 255
        return img

    return fn


def flat(rgb: tuple[int, int, int], width: int, height: int) -> FrameFn:
    """Every frame one flat colour (for colour-accuracy checks)."""
    img = np.empty((height, width, 3), np.uint8)
    img[...] = np.asarray(rgb, np.uint8)
    return lambda i: img


def still_noise(width: int, height: int, sigma: float = 8.0, seed: int = 0) -> FrameFn:
    """A fixed gradient with fresh Gaussian noise per frame (a static scene + sensor noise)."""
    base = moving_square(width, height)(0).astype(np.float32)

    def fn(i: int) -> np.ndarray:
        rng = np.random.default_rng(seed + i)
        return np.clip(base + rng.normal(0, sigma, base.shape), 0, 255).astype(np.uint8)

    return fn


def frame_times(frames: int, fps: float, vfr: bool) -> tuple[list[int], Fraction]:
    """Presentation timestamps and their time base for a clip (VFR: 1/1000 s with uneven steps)."""
    if vfr:
        pts, t = [], 0
        for i in range(frames):
            pts.append(t)
            t += VFR_PATTERN_MS[i % len(VFR_PATTERN_MS)]
        return pts, Fraction(1, 1000)
    rate = Fraction(fps).limit_denominator(1001)
    return list(range(frames)), 1 / rate


def make_clip(
    path: str | Path,
    *,
    width: int = 160,
    height: int = 96,
    frames: int = 30,
    fps: float = 30,
    vfr: bool = False,
    rotation: int = 0,
    pix_fmt: str = "yuv420p",
    codec: str = "libx264",
    bframes: int = 0,
    audio_streams: int = 1,
    audio_codec: str = "aac",
    audio_channels: int = 2,
    colour: str = "bt709",
    tag_colour: bool = True,
    color_range: str = "tv",
    crf: int = 18,
    keyint: int | None = None,
    color_trc: int | None = None,
    frame_fn: FrameFn | None = None,
) -> Path:
    """Write a small test clip and return its path.

    - ``vfr``: uneven frame durations (``VFR_PATTERN_MS``) in a 1/1000 s time base.
    - ``rotation``: display-matrix angle (counter-clockwise degrees); pixels stay as drawn.
    - ``bframes``: B-frames for libx264/libx265 (0 = none).
    - ``audio_streams``: that many sine streams (440 Hz, 660 Hz, ...), ``audio_channels`` each,
      covering the video duration; ``audio_codec`` e.g. "aac", "mp3", "pcm_s16le", "libopus".
    - odd ``width``/``height`` need a non-subsampled ``pix_fmt`` (e.g. "yuv444p") for libx264.
    - ``keyint``: keyframe interval in frames (None = encoder default, i.e. one keyframe here).
    - ``color_trc``: override the transfer tag (e.g. 16 = PQ, 18 = HLG, to fake HDR input).
    - ``colour``: matrix used for RGB->YUV ("bt709", "bt601", or HDR "hlg"/"pq": BT.2020 tags
      and transfer, for ``codec="libx265", pix_fmt="yuv420p10le"``); ``tag_colour=False`` leaves
      the stream untagged (like many phone/dashcam files); ``color_range`` "tv" or "pc".
    """
    path = Path(path)
    frame_fn = frame_fn or moving_square(width, height)
    matrix, primaries, trc = _COLOURS[colour]
    rng = ColorRange.MPEG if color_range == "tv" else ColorRange.JPEG
    pts_list, time_base = frame_times(frames, fps, vfr)

    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        v.width, v.height, v.pix_fmt = width, height, pix_fmt
        v.time_base = v.codec_context.time_base = time_base
        opts = {"preset": "ultrafast", "crf": str(crf)} if codec in ("libx264", "libx265") else {}
        if codec == "libx264":
            opts["bf"] = str(bframes)
        if keyint:
            opts["g"] = str(keyint)
            if codec == "libx264":
                opts["keyint_min"] = str(keyint)
        elif codec == "libx265":
            opts["x265-params"] = f"bframes={bframes}:log-level=error"
        v.options = opts
        if tag_colour:
            cc = v.codec_context
            cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = (
                matrix, primaries, trc, rng)
        if color_trc is not None:
            v.codec_context.color_trc = color_trc
        if rotation:
            v.set_display_rotation(rotation)

        astreams = []
        for k in range(audio_streams):
            a = out.add_stream(audio_codec, rate=AUDIO_RATE)
            a.layout = "stereo" if audio_channels == 2 else "mono"
            astreams.append((a, 440.0 * (1.5 ** k), 0))

        duration = (pts_list[-1] * time_base + (time_base if not vfr else Fraction(
            VFR_PATTERN_MS[(frames - 1) % len(VFR_PATTERN_MS)], 1000)))
        total_samples = int(duration * AUDIO_RATE)
        chunk = 1024
        sample_pos = [0] * audio_streams

        def audio_until(t: float) -> None:
            # Interleave: emit audio up to time t so the muxer never buffers much.
            for k, (a, freq, _) in enumerate(astreams):
                while sample_pos[k] < min(total_samples, int(t * AUDIO_RATE)):
                    n = min(chunk, total_samples - sample_pos[k])
                    ts = (sample_pos[k] + np.arange(n)) / AUDIO_RATE
                    wave = (0.3 * np.sin(2 * np.pi * freq * ts)).astype(np.float32)
                    data = np.repeat(wave[None, :], audio_channels, axis=0)  # (C, n) planar
                    af = av.AudioFrame.from_ndarray(data, format="fltp", layout=a.layout.name)
                    af.sample_rate = AUDIO_RATE
                    af.pts = sample_pos[k]
                    af.time_base = Fraction(1, AUDIO_RATE)
                    for p in a.encode(af):
                        out.mux(p)
                    sample_pos[k] += n

        for i, pts in enumerate(pts_list):
            img = frame_fn(i)
            src_fmt = "rgb48le" if img.dtype == np.uint16 else "rgb24"
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format=src_fmt)
            vf = vf.reformat(format=pix_fmt, dst_colorspace=matrix, dst_color_range=rng)
            vf.pts, vf.time_base = pts, time_base
            for p in v.encode(vf):
                out.mux(p)
            audio_until(float(pts * time_base) + 0.1)
        for p in v.encode(None):
            out.mux(p)
        audio_until(float(duration) + 1)
        for a, _, _ in astreams:
            for p in a.encode(None):
                out.mux(p)
    return path


def make_audio_only(path: str | Path, seconds: float = 0.5) -> Path:
    """A file with an AAC stream and no video stream."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        a = out.add_stream("aac", rate=AUDIO_RATE)
        a.layout = "stereo"
        n = int(seconds * AUDIO_RATE)
        for s in range(0, n, 1024):
            m = min(1024, n - s)
            data = np.zeros((2, m), np.float32)
            af = av.AudioFrame.from_ndarray(data, format="fltp", layout="stereo")
            af.sample_rate, af.pts, af.time_base = AUDIO_RATE, s, Fraction(1, AUDIO_RATE)
            for p in a.encode(af):
                out.mux(p)
        for p in a.encode(None):
            out.mux(p)
    return path


def with_subtitles(src: str | Path, dst: str | Path,
                   cues: list[tuple[float, float, str]]) -> Path:
    """Copy ``src`` into ``dst`` (.mkv) adding a SubRip stream with ``cues`` (start, end, text)."""
    dst = Path(dst)
    srt = dst.with_suffix(".srt")

    def ts(t: float) -> str:
        ms = round(t * 1000)
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    srt.write_text("\n".join(f"{i + 1}\n{ts(a)} --> {ts(b)}\n{text}\n"
                             for i, (a, b, text) in enumerate(cues)))
    with av.open(str(src)) as inp, av.open(str(srt)) as sub, av.open(str(dst), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        sub_out = out.add_stream_from_template(sub.streams[0])
        for p in inp.demux():
            if p.size:
                p.stream = streams[p.stream_index]
                out.mux(p)
        for p in sub.demux():
            if p.size:
                p.stream = sub_out
                out.mux(p)
    srt.unlink()
    return dst


# ---------------------------------------------------------------- probes (plain PyAV, no vidllie)
def with_dolby_vision_84(src: str | Path, dst: str | Path) -> Path:
    """Copy an HEVC HLG MP4 written by :func:`make_clip` (its moov follows the mdat) adding a
    Dolby Vision configuration box (dvcC: profile 8, level 1, RPU and base layer present,
    compatibility id 4 = HLG), as an iPhone's Dolby Vision 8.4 file carries; FFmpeg reports it as
    "DOVI configuration record". The HEVC stream is the HLG base layer, unchanged."""
    data = bytearray(Path(src).read_bytes())
    fields = (8 << 9) | (1 << 3) | (1 << 2) | 1  # profile 8, level 1, rpu 1, el 0, bl 1
    body = bytes([1, 0]) + fields.to_bytes(2, "big") + bytes([4 << 4]) + bytes(19)
    box = (8 + len(body)).to_bytes(4, "big") + b"dvcC" + body

    def find(start: int, end: int, parents: list[int]):
        pos = start
        while pos < end:
            size, kind = int.from_bytes(data[pos:pos + 4], "big"), bytes(data[pos + 4:pos + 8])
            if kind in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
                found = find(pos + 8, pos + size, parents + [pos])
                if found:
                    return found
            elif kind == b"stsd":
                entry = pos + 16  # full-box header and entry count
                assert bytes(data[entry + 4:entry + 8]) in (b"hev1", b"hvc1")
                return parents + [pos, entry], entry + int.from_bytes(data[entry:entry + 4], "big")
            pos += size
        return None

    parents, at = find(0, len(data), [])
    assert data.find(b"mdat") < parents[0], "moov must follow mdat (chunk offsets unchanged)"
    data[at:at] = box
    for p in parents:
        data[p:p + 4] = (int.from_bytes(data[p:p + 4], "big") + len(box)).to_bytes(4, "big")
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def rgb_frames(path: str | Path) -> np.ndarray:
    """Every video frame of ``path`` decoded to (N, H, W, 3) uint8 RGB."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def audio_packets(path: str | Path) -> list[list[bytes]]:
    """Payload of every audio packet, per audio stream in order."""
    with av.open(str(path)) as c:
        streams = list(c.streams.audio)
        out: dict[int, list[bytes]] = {s.index: [] for s in streams}
        if streams:
            for p in c.demux(*streams):
                if p.size:
                    out[p.stream_index].append(bytes(p))
        return [out[s.index] for s in streams]


def video_times(path: str | Path) -> list[float]:
    """Presentation time of every decoded frame, seconds."""
    with av.open(str(path)) as c:
        return [float(f.pts * f.time_base) for f in c.decode(video=0)]


def video_packet_times(path: str | Path) -> list[float]:
    """Presentation times of every video packet (no decoding, edit-list-hidden ones included)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return sorted(float(p.pts * p.time_base) for p in c.demux(v) if p.size)


def make_two_camera_clip(path: Path) -> Path:
    """One file, two video streams (a dual-channel dashcam): 6 frames each, the front camera
    64x48 at grey level 30 + i, the rear one 48x24 at 90 + i."""
    with av.open(str(path), "w") as c:
        streams = []
        for w, h in ((64, 48), (48, 24)):
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            streams.append(s)
        for i in range(6):
            for level, s in zip((30, 90), streams):
                img = np.full((s.height, s.width, 3), level + i, np.uint8)
                for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(packet)
        for s in streams:
            for packet in s.encode():
                c.mux(packet)
    return path
