"""Real-clip picture measures: per-frame statistics of enhanced clips, the night test clips made
from ../shared with the project's own degradation, and the pass/fail bars of an enhanced clip.

Used by ``scripts/realclip_report.py`` (the per-clip table) and ``scripts/train_fast.py
realclip``. Everything here works on uint8 RGB clips as (T, 3, H, W) tensors::

    clip = night_clip("lamp", shared)          # (T, 3, H, W) uint8, seeded
    bars = clip_bars(clip, output, kind="lamp")  # {figure: (value, limit, passed)}
"""

from __future__ import annotations

from pathlib import Path

import kornia
import numpy as np
import torch
import torch.nn.functional as F

from vidllie.ops.color import luma
from vidllie.train.degrade import DegradeConfig, degrade, sample_degradation

# Pixels whose 7x7 input neighbourhood is at most this (8-bit codes) count as "nearly black".
NEAR_BLACK = 3


def frame_stats(frames: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-frame picture measures of (T, 3, H, W) uint8 RGB: mean luma, mean of the darker half of
    the pixels, share of pixels at luma >= 250 (/255, BT.709), and mean CIELAB a*, b* (cast)."""
    parts = []
    for chunk in frames.split(32):  # float copies of a whole clip would not fit in memory
        x = chunk.float() / 255
        y = luma(x).flatten(1) * 255  # (T, H*W)
        dark = y.sort(dim=1).values[:, : y.shape[1] // 2]
        lab = kornia.color.rgb_to_lab(x)
        parts.append({"luma": y.mean(1), "darker_half": dark.mean(1), "blown": (y >= 250).float().mean(1),
                      "a": lab[:, 1].mean((1, 2)), "b": lab[:, 2].mean((1, 2))})
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def near_black_mask(frames: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) uint8 -> (T, 1, H, W) bool: every pixel of the 7x7 neighbourhood has luma <= 3."""
    parts = []
    for chunk in frames.split(32):
        y = luma(chunk.float())
        parts.append(F.max_pool2d(y, 7, 1, 3) <= NEAR_BLACK + 0.5)
    return torch.cat(parts)


def _luma_steps(stats: dict[str, torch.Tensor]) -> torch.Tensor:
    return stats["luma"].diff().abs() if len(stats["luma"]) > 1 else torch.zeros(1)


def clip_bars(src: torch.Tensor, out: torch.Tensor, kind: str = "") -> dict[str, tuple[float, str, bool]]:
    """The pass/fail bars of one enhanced clip: ``src`` and ``out`` (T, 3, H, W) uint8. Returns
    ``{name: (value, limit as text, passed)}``. ``kind`` "lamp" adds the lamp-lit bars, "grey" the
    grey-camera bar; the near-black bar is reported where >= 5 % of the input is nearly black."""
    a, b = frame_stats(src), frame_stats(out)
    da, db = a["luma"].diff(), b["luma"].diff()
    bars: dict[str, tuple[float, str, bool]] = {}
    pop_limit = float(da.abs().max()) + 1
    bars["pop"] = (float(db.abs().max()), f"<= {pop_limit:.2f}", float(db.abs().max()) <= pop_limit)
    flick_limit = 1.5 * float(da.std()) + 0.03
    bars["flicker"] = (float(db.std()), f"<= {flick_limit:.3f}", float(db.std()) <= flick_limit)
    mean = float(b["luma"].mean())
    bars["mean_luma"] = (mean, "30..130", 30 <= mean <= 130)
    mask = near_black_mask(src)
    share = float(mask.float().mean())
    if share >= 0.05:
        ys = torch.cat([luma(c.float())[m] for c, m in zip(out.split(32), mask.split(32))])
        bars["near_black_share"] = (share, "(info)", True)
        bars["near_black_mean"] = (float(ys.mean()), "<= 45", float(ys.mean()) <= 45)
        bars["near_black_std"] = (float(ys.std()), "<= 10", float(ys.std()) <= 10)
    if kind == "lamp":
        dark = float(b["darker_half"].mean())
        blown = float(b["blown"].mean()) * 100
        bars["darker_half"] = (dark, ">= 25", dark >= 25)
        bars["blown_pct"] = (blown, "<= 1.5", blown <= 1.5)
    if kind == "grey":
        x = out.float()
        tint = float(((x[:, 0] - x[:, 1]).abs() + (x[:, 1] - x[:, 2]).abs()).mean())
        bars["grey_tint"] = (tint, "<= 1", tint <= 1)
    bars["input_mean_luma"] = (float(a["luma"].mean()), "(info)", True)
    return bars


# The night test clips: (source, kind, degradation). Sources are read from ../shared at run time.
# "still": a fixed camera at a moderate night exposure (a scene that is already visible: no veil);
# "lamp": DAVIS real motion lit by lamp pools; "grey": DAVIS real motion from an IR-like camera.
CLIPS = {
    "still": ("media/day_traffic_msmpeg4_mp3.avi", "still",
              dict(exposure=(1 / 14, 1 / 10), cast_prob=1.0, cast_strength=(0.2, 0.4), photons=(1500.0, 3000.0),
                   read_noise=(5e-4, 1e-3), chroma_bias_prob=1.0, crf=(20, 23))),
    "lamp": ("frames/davis2016_urban_480p/car-roundabout", "lamp",
             dict(light_prob=1.0, photons=(1500.0, 3000.0), read_noise=(5e-4, 1e-3), crf=(20, 23))),
    "grey": ("frames/davis2016_urban_480p/scooter-black", "grey",
             dict(light_prob=1.0, mono_prob=1.0, photons=(1500.0, 3000.0), read_noise=(5e-4, 1e-3), crf=(20, 23))),
}


def read_clip(path: Path, frames: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """The first ``frames`` frames of a video file or a folder of images as (T, 3, H, W) uint8,
    area-resized to ``size`` (H, W) when given."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".jpg", ".png"))[:frames]
        images = [kornia.io.load_image(str(p), kornia.io.ImageLoadType.RGB8) for p in files]
        clip = torch.stack(images)
    else:
        from vidllie.video import VideoReader

        with VideoReader(path, max_frames=frames, passthrough=False) as reader:
            clip = torch.from_numpy(np.stack([f.image for f in reader])).permute(0, 3, 1, 2)
    if size is not None and tuple(clip.shape[-2:]) != tuple(size):
        clip = F.interpolate(clip.float(), size=size, mode="area").round().clamp(0, 255).to(torch.uint8)
    return clip


def night_clip(name: str, shared: Path, frames: int = 72, size: tuple[int, int] = (270, 480),
               seed: int = 26) -> tuple[torch.Tensor, str]:
    """One of :data:`CLIPS` made night: one seeded degradation parameter set for the clip, noise
    drawn per frame and an H.264 pass over the clip (as ``scripts/make_static_night.py``).
    Returns ``(clip (T, 3, H, W) uint8, kind)``."""
    rel, kind, settings = CLIPS[name]
    clean = read_clip(shared / rel, frames, size).float() / 255
    config = DegradeConfig(**{"defocus_prob": 0.0, "motion_prob": 0.0, "h264_prob": 1.0, **settings})
    g = torch.Generator().manual_seed(seed)
    params = sample_degradation(1, g, config)
    low = degrade(clean[None], params, g)[0]
    return (low * 255).round().clamp(0, 255).to(torch.uint8), kind
