"""Guidance layers: how frozen DINO maps steer the Restormer (they are not fused into it).

This module owns :class:`GuidanceLayers` (``model.guidance``, configured by ``config.guidance``)
and its parts. One forward pass (B frames, DINO maps from :class:`vidllie.models.dino.DinoBackbone`)::

    L maps (B, C_dino, h, w) --DinoFusion--> (B, D, h, w)          input-adaptive mix of layers
    at each injection level (B, C, H_l, W_l):
        modulation:      delta = proj_out(feat * spatial_attn * channel_attn)
        cross_attention: delta = proj_out(attn(q=feat, k/v=DINO tokens))
        feat <- feat + keep * delta                                 keep = guidance-dropout mask

``proj_out`` is zero-initialised, so a freshly built guided network computes exactly the plain
Restormer; guidance grows in as it is trained. DINO patches are mapped onto each level's pixels
with the exact resize/pad geometry of the DINO preprocessing, bilinearly resampled and blurred by
about half a patch so the 16-px patch grid leaves no block artefacts in the output.

Nothing here holds DINO weights: the backbone stays out of ``GuidedRestormer.state_dict()``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from vidllie.models.configuration import ModelConfig
from vidllie.models.dino import dino_grid
from vidllie.models.restormer import LEVEL_CHANNELS, LEVEL_STRIDE, ChannelLayerNorm, LevelHook

# Where guidance is injected for each ``guidance.levels`` value. ``multiscale`` mirrors the
# encoder levels 2/3 in the decoder; full-resolution level 1 is left alone (cost, and fine detail
# there is the pixels' business, not semantics').
INJECTION_LEVELS: dict[str, tuple[str, ...]] = {
    "none": (),
    "latent": ("latent",),
    "multiscale": ("enc2", "enc3", "latent", "dec3", "dec2"),
}
NUM_FOURIER_FREQS = 6  # positional code of the cross-attention: sin/cos at 6 octaves, y and x


def injection_levels(config: ModelConfig) -> tuple[str, ...]:
    return INJECTION_LEVELS[config.guidance.levels] if config.guided else ()


def _zero_init(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


class DinoFusion(nn.Module):
    """Multi-layer DINO fusion with input-adaptive weights (after DINO-IR's pixel-semantic fusion).

    Shallow layers carry pixel-level structure, deep ones degradation-robust semantics; which mix
    is best depends on the content, so a per-patch softmax over layers is predicted from the
    projected features themselves.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        n, c, d = len(config.dino.layers), config.dino.hidden_size, config.guidance.dim
        self.proj = nn.ModuleList(nn.Conv2d(c, d, 1) for _ in range(n))
        self.layer_weights = nn.Sequential(nn.Conv2d(n * d, d, 1), nn.GELU(), nn.Conv2d(d, n, 1))
        # One 3x3 mix of neighbouring patches: context beyond a single 16-px patch.
        self.mix = nn.Sequential(nn.Conv2d(d, d, 3, padding=1), nn.GELU())

    def forward(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        feats = [proj(m) for proj, m in zip(self.proj, maps)]  # L x (B, D, h, w)
        weights = self.layer_weights(torch.cat(feats, dim=1)).softmax(dim=1)  # (B, L, h, w)
        fused = (torch.stack(feats, dim=1) * weights.unsqueeze(2)).sum(dim=1)  # (B, D, h, w)
        return self.mix(fused)


class GuideGeometry:
    """Maps DINO patches onto the pixels of a Restormer level, exactly.

    DINO saw the frame resized to ``valid_rows x valid_cols`` patches (fractional) and padded
    bottom/right to ``rows x cols``; a level with stride ``s`` (frame pixels per feature pixel) has
    its pixel centres at ``offset + (j + 0.5) * s`` frame pixels (``offset`` = top-left corner of
    a tile, 0 for whole frames). Both are expressed as fractions of the frame, so the padding of
    either side never shifts or stretches the guidance.
    """

    def __init__(
        self, rows: int, cols: int, frame_size: tuple[int, int] | None, short_side: int, patch_size: int,
        unshuffle: int, offset: tuple[int, int] = (0, 0),
    ) -> None:
        self.rows, self.cols, self.unshuffle = rows, cols, unshuffle
        self.frame_size, self.offset = frame_size, offset
        self.valid = (float(rows), float(cols))
        if frame_size is not None:
            grid = dino_grid(frame_size[0], frame_size[1], short_side, patch_size)
            # Maps made at another DINO resolution than the config's: assume they cover the frame.
            if grid[:2] == (rows, cols):
                self.valid = grid[2:]

    def _extent(self, h: int, w: int, stride: int) -> tuple[float, float]:
        if self.frame_size is None:
            return float(h * stride), float(w * stride)
        return float(self.frame_size[0]), float(self.frame_size[1])

    def level_fractions(
        self, h: int, w: int, name: str, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel centres of an (h, w) level as fractions of the frame: (h,), (w,)."""
        stride = LEVEL_STRIDE[name] * self.unshuffle
        fh, fw = self._extent(h, w, stride)
        ys = (self.offset[0] + (torch.arange(h, device=device, dtype=torch.float64) + 0.5) * stride) / fh
        xs = (self.offset[1] + (torch.arange(w, device=device, dtype=torch.float64) + 0.5) * stride) / fw
        return ys, xs

    def token_fractions(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch centres of the DINO map as fractions of the frame: (rows,), (cols,)."""
        ys = (torch.arange(self.rows, device=device, dtype=torch.float64) + 0.5) / self.valid[0]
        xs = (torch.arange(self.cols, device=device, dtype=torch.float64) + 0.5) / self.valid[1]
        return ys, xs

    def patch_in_level_pixels(self, h: int, w: int, name: str) -> float:
        stride = LEVEL_STRIDE[name] * self.unshuffle
        fh, fw = self._extent(h, w, stride)
        return min(fh / self.valid[0], fw / self.valid[1]) / stride

    def to_level(self, guide: torch.Tensor, h: int, w: int, name: str) -> torch.Tensor:
        """(B, D, rows, cols) -> (B, D, h, w): bilinear resampling + blur over ~half a patch."""
        ys, xs = self.level_fractions(h, w, name, guide.device)
        # grid_sample (align_corners=False) puts token i's centre at 2 * (i + 0.5) / cols - 1.
        gy = 2.0 * ys * self.valid[0] / self.rows - 1.0
        gx = 2.0 * xs * self.valid[1] / self.cols - 1.0
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)  # (h, w, 2) as (x, y)
        grid = grid.float().unsqueeze(0).expand(guide.shape[0], -1, -1, -1)
        # float32 sampling: bf16/fp16 grid coordinates would be off by a fraction of a patch.
        out = F.grid_sample(
            guide.float(), grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        out = out.to(guide.dtype)
        # Bilinear interpolation is continuous but has creases along the patch-centre lines; a
        # Gaussian of sigma ~ half a patch removes them (a no-op where a patch is ~ one pixel).
        sigma = 0.5 * self.patch_in_level_pixels(h, w, name)
        if sigma >= 0.75:
            k = min(2 * math.ceil(2 * sigma) + 1, 31)
            out = kornia.filters.gaussian_blur2d(out, (k, k), (sigma, sigma), border_type="replicate")
        return out  # (B, D, h, w)


class ModulationGuidance(nn.Module):
    """Spatial attention (where) x channel attention (which features) from DINO, residual."""

    def __init__(self, config: ModelConfig, channels: int) -> None:
        super().__init__()
        d = config.guidance.dim
        self.guide_proj = nn.Sequential(nn.Conv2d(d, d, 1), nn.GELU())  # per-level view of DINO
        # Spatial map from the DINO guide plus the features' own channel mean/max (CBAM-style):
        # semantics say where, the features say what is there now.
        self.spatial = nn.Conv2d(d + 2, 1, 3, padding=1)
        hidden = max(8, channels // 4)
        self.channel = nn.Sequential(
            nn.Linear(d + channels, hidden), nn.GELU(), nn.Linear(hidden, channels)
        )
        self.proj_out = _zero_init(nn.Conv2d(channels, channels, 1))

    def forward(
        self, feat: torch.Tensor, fused: torch.Tensor, geometry: GuideGeometry, name: str
    ) -> torch.Tensor:
        b, c, h, w = feat.shape
        guide = self.guide_proj(fused)  # (B, D, rows, cols), cheap at DINO resolution
        guide_up = geometry.to_level(guide, h, w, name)  # (B, D, H_l, W_l)
        stats = torch.cat([feat.mean(dim=1, keepdim=True), feat.amax(dim=1, keepdim=True)], dim=1)
        spatial = self.spatial(torch.cat([guide_up, stats.to(guide_up.dtype)], dim=1))
        spatial = torch.sigmoid(spatial)  # (B, 1, H_l, W_l)
        pooled = torch.cat([guide.mean(dim=(2, 3)), feat.mean(dim=(2, 3)).to(guide.dtype)], dim=1)
        channel = torch.sigmoid(self.channel(pooled)).view(b, c, 1, 1)  # (B, C, 1, 1)
        return self.proj_out(feat * spatial * channel)  # (B, C, H_l, W_l), zero at init


def _fourier(ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """(h,), (w,) frame fractions -> (h*w, 4F) sin/cos code of the 2-D position."""
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    freqs = math.pi * 2.0 ** torch.arange(NUM_FOURIER_FREQS, device=ys.device, dtype=ys.dtype)
    angles = torch.stack([y.flatten(), x.flatten()], dim=-1)[..., None] * freqs  # (h*w, 2, F)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (h*w, 4F)


class CrossAttentionGuidance(nn.Module):
    """Restormer features (queries) attend to DINO tokens (keys/values), residual.

    Both sides get the same Fourier code of their position in the frame, so attention can learn
    to look at the tokens under each pixel as well as at semantically similar ones elsewhere.
    """

    def __init__(self, config: ModelConfig, channels: int) -> None:
        super().__init__()
        d = config.guidance.dim
        self.num_heads = max(1, d // 32)
        if d % self.num_heads:
            raise ValueError(f"guidance dim {d} not divisible by {self.num_heads} heads")
        self.norm = ChannelLayerNorm(channels)
        self.q = nn.Conv2d(channels, d, 1)
        self.kv = nn.Conv2d(d, 2 * d, 1)
        self.pos = nn.Linear(4 * NUM_FOURIER_FREQS, d)
        self.proj_out = _zero_init(nn.Conv2d(d, channels, 1))

    def forward(
        self, feat: torch.Tensor, fused: torch.Tensor, geometry: GuideGeometry, name: str
    ) -> torch.Tensor:
        b, _, h, w = feat.shape
        heads, d = self.num_heads, fused.shape[1]
        pos_dtype = self.pos.weight.dtype
        q_code = _fourier(*geometry.level_fractions(h, w, name, feat.device))  # (h*w, 4F)
        k_code = _fourier(*geometry.token_fractions(feat.device))  # (rows*cols, 4F)
        q_pos, k_pos = self.pos(q_code.to(pos_dtype)), self.pos(k_code.to(pos_dtype))  # (n, D)
        q = self.q(self.norm(feat)).flatten(2).transpose(1, 2) + q_pos  # (B, h*w, D)
        k, v = self.kv(fused).flatten(2).transpose(1, 2).chunk(2, dim=-1)  # (B, N, D) each
        k = k + k_pos

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, t.shape[1], heads, d // heads).transpose(1, 2)  # (B, heads, n, D/h)

        q, k, v = (split(t) for t in (q, k.to(q.dtype), v.to(q.dtype)))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, h*w, D/heads)
        out = out.transpose(2, 3).reshape(b, d, h, w)
        return self.proj_out(out)  # (B, C, H_l, W_l), zero at init


class GuidanceLayers(nn.Module):
    """All guidance layers of a model; ``hook(dino_maps)`` gives ``Restormer``'s ``level_hook``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.levels = injection_levels(config)
        cross = config.guidance.mode == "cross_attention"
        block = CrossAttentionGuidance if cross else ModulationGuidance
        self.fusion = DinoFusion(config)
        self.blocks = nn.ModuleDict(
            {name: block(config, config.restormer.dim * LEVEL_CHANNELS[name]) for name in self.levels}
        )

    def hook(
        self, maps: Sequence[torch.Tensor], frame_size: tuple[int, int] | None = None,
        offset: tuple[int, int] = (0, 0),
    ) -> LevelHook:
        """Level hook for one batch.

        ``frame_size`` (H, W) of the whole unpadded frame the maps were computed on aligns DINO
        patches with pixels exactly; without it the maps are assumed to cover the padded input.
        For a tile of that frame, ``offset`` is the tile's top-left corner in frame pixels.
        """
        if len(maps) != len(self.config.dino.layers):
            layers = self.config.dino.layers
            raise ValueError(f"expected {len(layers)} DINO maps (layers {layers}), got {len(maps)}")
        dtype = self.fusion.proj[0].weight.dtype
        fused = self.fusion([m.to(dtype) for m in maps])  # (B, D, rows, cols)
        rows, cols = fused.shape[-2:]
        geometry = GuideGeometry(
            rows, cols, None if frame_size is None else (int(frame_size[0]), int(frame_size[1])),
            self.config.dino.short_side, self.config.dino.patch_size, self.config.restormer.pixel_unshuffle,
            (int(offset[0]), int(offset[1])),
        )
        keep = None
        if self.training and self.config.guidance.dropout > 0:
            # Per-sample guidance dropout: a dropped sample computes exactly the plain Restormer,
            # which is what `dino_maps=None` (`--dino none`) runs at inference.
            drop = self.config.guidance.dropout
            keep = torch.rand(fused.shape[0], 1, 1, 1, device=fused.device) >= drop

        def level_hook(name: str, feat: torch.Tensor) -> torch.Tensor:
            if name not in self.blocks:
                return feat
            if feat.shape[0] != fused.shape[0]:
                raise ValueError(
                    f"guidance maps are for {fused.shape[0]} frames, the batch has {feat.shape[0]}"
                )
            delta = self.blocks[name](feat, fused, geometry, name)
            if keep is not None:
                delta = delta * keep.to(delta.dtype)
            return feat + delta

        return level_hook


__all__ = [
    "INJECTION_LEVELS",
    "CrossAttentionGuidance",
    "DinoFusion",
    "GuidanceLayers",
    "GuideGeometry",
    "ModulationGuidance",
    "injection_levels",
]
