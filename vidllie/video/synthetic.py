"""Synthetic night clips for benchmarks (``vidllie bench --synthetic WxH``).

The benchmark must exercise the real decode path, so a synthetic source is an actual encoded file:
a dark static scene with a moving headlight, sensor-like noise and an AAC sine track, written
with PyAV. Content matters for honest numbers: the noise makes the encoder and decoder work as on
real footage, and the moving light keeps the DINO cache from hitting on every frame.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vidllie.errors import OutputError


def night_frame(index: int, width: int, height: int, rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """One (H, W, 3) uint8 frame: ``base`` scene + a moving headlight + noise."""
    yy, xx = np.ogrid[:height, :width]
    cx = (0.1 + 0.8 * ((index * 0.013) % 1.0)) * width
    cy = 0.6 * height
    r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / (0.05 * min(width, height)) ** 2
    light = 120.0 * np.exp(-r2)[..., None] * np.array([1.0, 0.9, 0.7])
    noise = rng.normal(0.0, 3.0, size=(height, width, 1))
    return np.clip(base + light + noise, 0, 255).astype(np.uint8)


def _base_scene(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A dark street-like scene (mean luma about 10/255) with a few lit blocks."""
    ramp = np.linspace(4.0, 16.0, height)[:, None, None] * np.ones((1, width, 3))
    scene = ramp * np.array([1.0, 0.95, 1.1])
    for _ in range(12):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        w, h = rng.integers(width // 20 + 1, width // 6 + 2), rng.integers(height // 20 + 1, height // 6 + 2)
        scene[y0 : y0 + h, x0 : x0 + w] += rng.uniform(4, 30) * rng.uniform(0.7, 1.0, size=3)
    return scene


def write_synthetic_clip(
    path: str | os.PathLike,
    width: int,
    height: int,
    frames: int,
    *,
    fps: int = 30,
    audio: bool = True,
    seed: int = 0,
    crf: int = 20,
) -> Path:
    """Write an H.264 (+ AAC) night-like clip of ``frames`` frames; returns the path.

    Example:
        >>> write_synthetic_clip("/tmp/night_720p.mp4", 1280, 720, 60)  # doctest: +SKIP
    """
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise OutputError(f"synthetic size must be even and at least 16x16, got {width}x{height}")
    path = Path(path)
    rng = np.random.default_rng(seed)
    base = _base_scene(width, height, rng)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"crf": str(crf), "preset": "veryfast"}
        a_stream = None
        if audio:
            a_stream = out.add_stream("aac", rate=48000)
            a_stream.layout = "stereo"
        samples_per_frame = 48000 // fps
        a_pts = 0
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(night_frame(i, width, height, rng, base), format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for pkt in vs.encode(frame):
                out.mux(pkt)
            if a_stream is not None:
                t = (a_pts + np.arange(samples_per_frame)) / 48000.0
                tone = (0.2 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
                af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
                af.sample_rate, af.pts = 48000, a_pts
                a_pts += samples_per_frame
                for pkt in a_stream.encode(af):
                    out.mux(pkt)
        for pkt in vs.encode(None):
            out.mux(pkt)
        if a_stream is not None:
            for pkt in a_stream.encode(None):
                out.mux(pkt)
    return path
