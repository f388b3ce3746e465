"""Cheap frame similarity: gamma-corrected luma thumbnails and scene-cut detection.

Night frames live in the bottom few percent of the range, so differences are measured after a
low-light gamma (as DINO sees them) on small thumbnails (averaging removes most sensor noise)::

    thumbs = luma_thumbnails(frames)            # (B, 1, h, w), long side 64
    cuts = SceneCutDetector(threshold=0.1)(thumbs)
"""

from __future__ import annotations

import kornia
import torch
import torch.nn.functional as F

from vidllie.ops import luma


def luma_thumbnails(frames: torch.Tensor, size: int = 64, gamma: float = 0.4) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 1, h, w) gamma-corrected luma, long side ``size``.

    Example:
        >>> luma_thumbnails(torch.rand(2, 3, 360, 640)).shape
        torch.Size([2, 1, 36, 64])
    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be (B, 3, H, W), got {tuple(frames.shape)}")
    h, w = frames.shape[-2:]
    scale = size / max(h, w)
    thumb_hw = (max(1, round(h * scale)), max(1, round(w * scale)))
    y = luma(frames.float())
    if (h, w) != thumb_hw:
        # Area averaging: every pixel counts once (best noise suppression), and on a 4K frame it
        # costs a fraction of an anti-aliased resize, whose blur kernel grows with the factor.
        y = F.adaptive_avg_pool2d(y, thumb_hw)
    # Gamma after the averaging, so the gamma's steep slope near black does not amplify noise.
    return kornia.enhance.adjust_gamma(y.clamp(0.0, 1.0), gamma)


def luma_cells(frames: torch.Tensor, cell: int = 16, gamma: float = 0.4) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 1, ceil(H / cell), ceil(W / cell)) gamma-corrected mean luma of
    each ``cell`` x ``cell`` block (the last row/column of cells may be partial): a thumbnail on an
    exact pixel grid, for per-region change detection (:mod:`vidllie.pipeline.reuse`).

    Example:
        >>> luma_cells(torch.rand(2, 3, 360, 640)).shape
        torch.Size([2, 1, 23, 40])
    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be (B, 3, H, W), got {tuple(frames.shape)}")
    y = luma(frames.float())
    # ceil_mode averages a partial last cell over its real pixels only.
    y = F.avg_pool2d(y, cell, cell, ceil_mode=True)
    return kornia.enhance.adjust_gamma(y.clamp(0.0, 1.0), gamma)


def thumbnail_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of thumbnails: (N, 1, h, w) x (N, 1, h, w) -> (N,)."""
    return (a - b).abs().flatten(1).mean(dim=1)


def pairwise_distance(thumbs: torch.Tensor) -> torch.Tensor:
    """(N, 1, h, w) -> (N, N) mean absolute difference between every pair of thumbnails."""
    flat = thumbs.flatten(1)
    return (flat[:, None, :] - flat[None, :, :]).abs().mean(dim=-1)


class SceneCutDetector:
    """Flags frame i as a cut when its thumbnail differs from frame i-1's by more than ``threshold``.

    Stateful across batches (it remembers the last thumbnail); ``cuts`` counts the cuts seen.
    """

    def __init__(self, threshold: float = 0.1) -> None:
        self.threshold = threshold
        self.previous: torch.Tensor | None = None
        self.cuts = 0

    def reset(self) -> None:
        self.previous = None

    def __call__(self, thumbs: torch.Tensor) -> list[bool]:
        prev = self.previous
        if prev is not None and prev.shape[1:] != thumbs.shape[1:]:
            prev = None  # frame size changed: nothing to compare with
        if prev is None:
            prev = thumbs[:1]  # the first frame of a stream is not a cut (there is no state yet)
        before = torch.cat([prev, thumbs[:-1]])
        flags = (thumbnail_distance(thumbs, before) > self.threshold).tolist()
        self.previous = thumbs[-1:].clone()
        self.cuts += sum(flags)
        return flags
