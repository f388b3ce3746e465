"""A real H.264 encode/decode round trip in memory (PyAV), for compression augmentation.

It talks to PyAV directly rather than through ``vidllie.video``: it needs nothing the streaming
reader/writer adds (no audio, no timestamps, no files).
"""

from __future__ import annotations

import io

import av
import numpy as np


def h264_roundtrip(frames: np.ndarray, crf: int = 32, *, preset: str = "veryfast", fps: int = 25) -> np.ndarray:
    """Encode (T, H, W, 3) uint8 RGB frames with libx264 (yuv420p, TV range) and decode them back.

    Frames are one clip (P-frames refer to earlier frames); a single image is T = 1. Odd sizes are
    edge-padded to even for 4:2:0 and cropped back. Single-threaded x264, so the result is
    deterministic for a given input.

    Example:
        >>> out = h264_roundtrip(np.zeros((2, 32, 48, 3), np.uint8), crf=35)
        >>> out.shape, out.dtype
        ((2, 32, 48, 3), dtype('uint8'))
    """
    frames = np.asarray(frames)
    if frames.ndim == 3:
        return h264_roundtrip(frames[None], crf, preset=preset, fps=fps)[0]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    if not 0 <= int(crf) <= 51:
        raise ValueError(f"crf must be in 0..51, got {crf}")
    t, h, w, _ = frames.shape
    ph, pw = h + (h % 2), w + (w % 2)
    if (ph, pw) != (h, w):
        frames = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": preset, "threads": "1"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buf.seek(0)
    with av.open(buf) as inp:
        decoded = [f.to_ndarray(format="rgb24") for f in inp.decode(video=0)]
    if len(decoded) != t:
        raise RuntimeError(f"H.264 round trip returned {len(decoded)} frames for {t}")
    return np.stack(decoded)[:, :h, :w]

