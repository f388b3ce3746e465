"""The ranges and probabilities of the synthetic low-light degradation (:class:`DegradeConfig`,
refused when inconsistent or unknown) and the seeded draws made from such ranges (uniform,
log-uniform, coin flips). Shared by :mod:`vidllie.train.degrade` (the chain) and
:mod:`vidllie.train.night_light` (light layouts); import ``DegradeConfig`` from ``degrade``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class DegradeConfig:
    """Ranges of the degradation. ``(lo, hi)`` pairs are sampled uniformly, log-uniformly where
    noted. Probabilities are per sample (per clip for videos)."""

    exposure: tuple[float, float] = (1 / 80, 1 / 3)  # log-uniform
    cast_prob: float = 0.7
    cast_strength: tuple[float, float] = (0.1, 0.7)
    # Share of the casts that are the illuminant's complement (its log gains negated: sodium's is
    # a deep blue). Street light is mostly warm, so warm-only casts teach a model that a grey-looking
    # frame is a bluish scene under warm light: flat greys come out blue (docs/benchmarks.md).
    # 0.5 makes the cast prior symmetric about grey. 0 draws nothing (earlier configs' draws are unchanged).
    cast_mirror_prob: float = 0.0
    photons: tuple[float, float] = (400.0, 8000.0)  # log-uniform, photo-electrons at full scale
    read_noise: tuple[float, float] = (2e-4, 2e-3)  # log-uniform, linear full-scale units
    defocus_prob: float = 0.1
    defocus_sigma: tuple[float, float] = (0.4, 1.2)
    motion_prob: float = 0.1
    motion_kernel: tuple[int, int] = (3, 7)  # odd kernel sizes
    chroma_bias_prob: float = 0.5
    chroma_bias: tuple[float, float] = (0.5, 3.0)  # 8-bit codes of magenta at black
    # Share of the chroma biases with a random hue (the magenta offset turned about the grey axis)
    # instead of magenta: a one-sided shadow prior teaches a model to push dark regions green
    # (docs/benchmarks.md, the dashcam's cast).
    # 0 draws nothing (the default config's draws are unchanged).
    chroma_bias_hue_prob: float = 0.0
    h264_prob: float = 0.6
    crf: tuple[int, int] = (23, 37)
    # night light (see the module docstring); probability 0 = off, nothing else is drawn
    light_prob: float = 0.0
    light_level: tuple[float, float] = (0.15, 1.5)  # log-uniform, luma of the brightest point (linear)
    light_ratio: tuple[float, float] = (30.0, 300.0)  # log-uniform, brightest / darkest luma of the map
    light_sources: tuple[int, int] = (1, 4)  # number of pools/cones/windows
    light_radius: tuple[float, float] = (0.06, 0.35)  # log-uniform, fraction of the long image side
    light_falloff: tuple[float, float] = (1.0, 3.0)  # profile exp(-d**p): 1 soft tail ... 3 hard edge
    ambient_kelvin: tuple[float, float] = (6500.0, 12000.0)  # moonlight / sky glow: neutral ... bluish
    # Green-magenta tint of the ambient: log gain of its green channel, uniform (> 0 greener).
    # A black body is magenta of grey in the shadows (mean CIELAB a* +1.5 over 3000-12000 K at a
    # dim level), a one-sided prior; a range centred near +0.1 makes the mean shadow tint neutral.
    # (0, 0) draws nothing (the default config's draws are unchanged).
    ambient_tint: tuple[float, float] = (0.0, 0.0)
    core_prob: float = 0.5  # per source: a visible emitter that clips
    core_radius: tuple[float, float] = (0.004, 0.02)  # log-uniform, fraction of the long side (>= 1 px)
    glow: tuple[float, float] = (0.05, 0.5)  # log-uniform, linear glow level at the core's edge
    glow_radius: tuple[float, float] = (2.0, 8.0)  # glow decay length in core radii
    mono_prob: float = 0.0  # monochrome (IR-like) samples: input and target grey
    # Share of the scenes whose colours are turned by a random hue angle (CIELAB a*b* rotated, L*
    # kept) before anything else, in input and target alike. Photo collections have a colour prior
    # (dark-to-mid tones yellow-green, bright ones sky blue); where noise hides the chroma a model
    # falls back on it and tints neutral night shadows. Turned scenes make that prior symmetric.
    # 0 draws nothing (earlier configs' draws are unchanged).
    scene_hue_prob: float = 0.0

    def __post_init__(self) -> None:
        for name in ("exposure", "cast_strength", "photons", "read_noise", "defocus_sigma",
                     "motion_kernel", "chroma_bias", "crf", "light_level", "light_ratio", "light_sources",
                     "light_radius", "light_falloff", "ambient_kelvin", "ambient_tint", "core_radius", "glow", "glow_radius"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"degradation {name}: low end {lo} above high end {hi}")
            setattr(self, name, (lo, hi))
        if not 0 < self.exposure[0] <= self.exposure[1] <= 1:
            raise ValueError(f"exposure factors must be in (0, 1], got {self.exposure}")
        if self.light_ratio[0] < 1:
            raise ValueError(f"light_ratio must be >= 1, got {self.light_ratio}")
        if self.light_sources[0] < 1 or int(self.light_sources[0]) != self.light_sources[0]:
            raise ValueError(f"light_sources must be whole numbers >= 1, got {self.light_sources}")
        if not (1000 <= self.ambient_kelvin[0] and self.ambient_kelvin[1] <= 25000):
            raise ValueError(f"ambient_kelvin must be in 1000 ... 25000 K, got {self.ambient_kelvin}")
        if not (-1.0 <= self.ambient_tint[0] and self.ambient_tint[1] <= 1.0):
            raise ValueError(f"ambient_tint must be in -1 ... 1 (log green gain), got {self.ambient_tint}")
        for name in ("light_level", "light_radius", "light_falloff", "core_radius", "glow", "glow_radius"):
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"degradation {name} must be positive, got {getattr(self, name)}")
        for name in ("cast_prob", "cast_mirror_prob", "scene_hue_prob", "defocus_prob", "motion_prob", "chroma_bias_prob", "chroma_bias_hue_prob", "h264_prob",
                     "light_prob", "core_prob", "mono_prob"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability, got {p}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DegradeConfig:
        data = dict(data or {})
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown degradation keys: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    """``n`` draws, uniform in [lo, hi), float64."""
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def log_uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    """``n`` draws, log-uniform in [lo, hi) (lo > 0), float64."""
    return torch.exp(uniform(n, math.log(lo), math.log(hi), g))


def coin(n: int, p: float, g: torch.Generator) -> torch.Tensor:
    """``n`` coin flips, True with probability ``p`` (one draw each, also for p = 0 or 1).

    Example:
        >>> coin(4, 0.0, torch.Generator().manual_seed(0)).tolist()
        [False, False, False, False]
    """
    return torch.rand(n, generator=g, dtype=torch.float64) < p
