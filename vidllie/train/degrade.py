"""Physically motivated low-light degradation: normal-light sRGB -> what a night camera stores.

Pure tensor functions; every random draw comes from an explicit ``torch.Generator``. The chain
(per sample, in this order):

1. sRGB -> linear light (kornia).
2. Illuminant cast in linear light: per-channel gains towards a street-light spectrum (sodium
   ~2000 K, warm LED ~3000 K, cool LED ~5000 K), luma-normalised so it does not change exposure.
3. Exposure scaled down by a log-uniform factor (default 1/80 ... 1/3).
4. Optional optical blur (Gaussian defocus or linear motion), in linear light before the noise.
5. Sensor noise in linear light: Poisson shot noise with ``photons`` photo-electrons at full scale
   (log-uniform 400 ... 8000) + Gaussian read noise (sigma log-uniform 2e-4 ... 2e-3 of full scale).
6. Back to sRGB, optional magenta/purple chroma bias in the shadows (what dark H.264 footage shows),
   8-bit quantisation.
7. Optional real H.264 encode/decode (libx264, CRF 23 ... 37, 4:2:0, TV range): blocking in the dark.

Clips ``(B, T, 3, H, W)`` share one parameter set per clip; the noise is drawn per frame and the
H.264 pass encodes the clip as one stream (P-frames).

Night light (off by default: ``light_prob = mono_prob = 0`` leave every draw and every tensor as
before). With probability ``light_prob`` a sample is lit like a real night scene instead of by
steps 2-3: a spatially varying illumination map in linear light multiplies the scene,

    I(x) = ambient * (c_amb + (ratio - 1) * S(x)),   luma(S) in [0, 1] with min 0 and max 1,

a dim bluish ambient (sky glow, moonlight, ``ambient_kelvin``) plus 1-4 light pools: street
lamps (elliptical pools, sodium ~2000 K, warm LED 2700-3000 K, cool LED 4000-5000 K), headlight
cones (3200-6000 K) and lit windows (soft rectangles, 2700-4000 K), of random size, shape and
falloff. The brightest point of the map has luma ``light_level`` (above 1 the pool clips in the
sensor) and the darkest ``light_level / light_ratio``: a pool/shadow ratio of 30-300x, so no single
gain suits the frame. Sources may show a visible emitter: a flat core far above full scale (it
clips to white in every channel, after the shot noise, like a real sensor) with a coloured
exponential glow/bloom around it. One layout per sample (per clip for videos, all frames).
With probability ``mono_prob`` a sample is monochrome like an IR camera at night: the scene is
turned into grey (BT.709 luma), the light is neutral, no cast or chroma bias, and the stored
frames are exactly R = G = B (also after the H.264 pass).

The target (what :func:`degrade_pair` returns as the second tensor) is the normal-light photo:
the model has to undo the spatially varying illumination - lift the shadows by ~ratio while
leaving the pools where they are - not to reproduce the night look. Two exceptions, where the
photo alone would ask the impossible or the wrong thing: (1) visible emitters are part of the
scene, so the target has the same flat white core (the model must keep cores white and small,
never hallucinate content behind them) and the same glow at the same absolute linear level as in
the input (so lens glow is not amplified with the shadows: pools and glows must not spread or
blow out); (2) monochrome samples have a grey target (luma of the photo, R = G = B): colour that
the camera never recorded is not invented. Without night light the target is ``x`` itself.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(2, 3, 32, 32)
    >>> params = sample_degradation(2, g)
    >>> low = degrade(x, params, g)
    >>> low.shape, bool(low.mean() < x.mean())
    (torch.Size([2, 3, 32, 32]), True)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import kornia
import numpy as np
import torch

from vidllie.ops.color import BT709_LUMA, linear_to_srgb, luma, quantize, srgb_to_linear
from vidllie.ops.grey import to_grey
from vidllie.train.codec import h264_roundtrip

# Linear-light RGB of street-light illuminants relative to daylight white (approximate black-body /
# phosphor ratios; luma-normalised when applied).
ILLUMINANTS: dict[str, tuple[float, float, float]] = {
    "sodium": (1.0, 0.62, 0.22),
    "warm_led": (1.0, 0.80, 0.58),
    "cool_led": (0.88, 0.96, 1.0),
}


@dataclass
class DegradeConfig:
    """Ranges of the degradation. ``(lo, hi)`` pairs are sampled uniformly, log-uniformly where
    noted. Probabilities are per sample (per clip for videos)."""

    exposure: tuple[float, float] = (1 / 80, 1 / 3)  # log-uniform
    cast_prob: float = 0.7
    cast_strength: tuple[float, float] = (0.1, 0.7)
    photons: tuple[float, float] = (400.0, 8000.0)  # log-uniform, photo-electrons at full scale
    read_noise: tuple[float, float] = (2e-4, 2e-3)  # log-uniform, linear full-scale units
    defocus_prob: float = 0.1
    defocus_sigma: tuple[float, float] = (0.4, 1.2)
    motion_prob: float = 0.1
    motion_kernel: tuple[int, int] = (3, 7)  # odd kernel sizes
    chroma_bias_prob: float = 0.5
    chroma_bias: tuple[float, float] = (0.5, 3.0)  # 8-bit codes of magenta at black
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
    core_prob: float = 0.5  # per source: a visible emitter that clips
    core_radius: tuple[float, float] = (0.004, 0.02)  # log-uniform, fraction of the long side (>= 1 px)
    glow: tuple[float, float] = (0.05, 0.5)  # log-uniform, linear glow level at the core's edge
    glow_radius: tuple[float, float] = (2.0, 8.0)  # glow decay length in core radii
    mono_prob: float = 0.0  # monochrome (IR-like) samples: input and target grey

    def __post_init__(self) -> None:
        for name in ("exposure", "cast_strength", "photons", "read_noise", "defocus_sigma",
                     "motion_kernel", "chroma_bias", "crf", "light_level", "light_ratio", "light_sources",
                     "light_radius", "light_falloff", "ambient_kelvin", "core_radius", "glow", "glow_radius"):
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
        for name in ("light_level", "light_radius", "light_falloff", "core_radius", "glow", "glow_radius"):
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"degradation {name} must be positive, got {getattr(self, name)}")
        for name in ("cast_prob", "defocus_prob", "motion_prob", "chroma_bias_prob", "h264_prob",
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


@dataclass
class DegradeParams:
    """One parameter set per sample (or per clip). All tensors have leading dimension B."""

    exposure: torch.Tensor  # (B,)
    gains: torch.Tensor  # (B, 3) linear-light channel gains (1 = no cast)
    photons: torch.Tensor  # (B,)
    read_noise: torch.Tensor  # (B,)
    defocus_sigma: torch.Tensor  # (B,) 0 = none
    motion_kernel: torch.Tensor  # (B,) int, 0 = none
    motion_angle: torch.Tensor  # (B,) degrees
    chroma_bias: torch.Tensor  # (B,) 8-bit codes, 0 = none
    crf: torch.Tensor  # (B,) int, -1 = no H.264 pass
    light: LightLayout | None = None  # night light / monochrome; None = off (default config)

    def __len__(self) -> int:
        return int(self.exposure.shape[0])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name).tolist() for f in dataclasses.fields(self) if f.name != "light"}
        if self.light is not None:
            out["light"] = self.light.to_dict()
        return out


# Light sources: (Kelvin range, shape). Shapes: 0 = pool (street lamp, ellipse on the ground),
# 1 = cone (headlight beam from an origin), 2 = window (lit window / shop front, soft rectangle).
LIGHT_SOURCES: dict[str, tuple[tuple[float, float], int]] = {
    "sodium": ((1800.0, 2200.0), 0),
    "warm_led": ((2700.0, 3000.0), 0),
    "cool_led": ((4000.0, 5000.0), 0),
    "headlight": ((3200.0, 6000.0), 1),
    "window": ((2700.0, 4000.0), 2),
}
CORE_LEVEL = 8.0  # linear level of a visible emitter core: far above full scale, so it clips white


@dataclass
class LightLayout:
    """One night-light layout per sample (per clip). Leading dimension B; per-source tensors are
    (B, S) with S = the config's most sources; unused slots have ``weight`` 0. Positions and sizes
    are fractions of the image (x of the width, y of the height, sizes of the long side), so one
    layout fits any crop size."""

    lit: torch.Tensor  # (B,) bool: spatially varying light instead of global exposure + cast
    mono: torch.Tensor  # (B,) bool: monochrome (IR-like) sample
    level: torch.Tensor  # (B,) luma of the brightest point of the map
    ratio: torch.Tensor  # (B,) brightest / darkest luma of the map
    ambient_rgb: torch.Tensor  # (B, 3) ambient colour, luma 1
    kind: torch.Tensor  # (B, S) int index into LIGHT_SOURCES
    kelvin: torch.Tensor  # (B, S)
    rgb: torch.Tensor  # (B, S, 3) source colour, luma 1
    weight: torch.Tensor  # (B, S) relative strength, 0 = no source
    x: torch.Tensor  # (B, S) centre (pool/window) or origin (cone)
    y: torch.Tensor  # (B, S)
    radius: torch.Tensor  # (B, S) pool radius / cone length / window half-width
    aspect: torch.Tensor  # (B, S) minor / major axis (pool), half-height / half-width (window)
    angle: torch.Tensor  # (B, S) radians: pool orientation, cone direction
    spread: torch.Tensor  # (B, S) cone half-angle (radians)
    falloff: torch.Tensor  # (B, S) profile exponent
    core: torch.Tensor  # (B, S) bool: visible emitter
    core_x: torch.Tensor  # (B, S)
    core_y: torch.Tensor  # (B, S)
    core_radius: torch.Tensor  # (B, S)
    glow: torch.Tensor  # (B, S) linear glow level at the core's edge
    glow_radius: torch.Tensor  # (B, S) glow decay length, fraction of the long side

    def to_dict(self) -> dict[str, list]:
        return {f.name: getattr(self, f.name).tolist() for f in dataclasses.fields(self)}


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def _log_uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return torch.exp(_uniform(n, math.log(lo), math.log(hi), g))


def _coin(n: int, p: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g, dtype=torch.float64) < p


def sample_degradation(batch: int, generator: torch.Generator, config: DegradeConfig | None = None) -> DegradeParams:
    """Draw ``batch`` parameter sets from ``config`` (a fixed number of draws per call, so one
    seed gives one sequence regardless of which options fire).

    Example:
        >>> p = sample_degradation(4, torch.Generator().manual_seed(1))
        >>> p.exposure.shape, bool((p.exposure <= 1 / 3).all())
        (torch.Size([4]), True)
    """
    c = config or DegradeConfig()
    g = generator
    n = int(batch)
    exposure = _log_uniform(n, *c.exposure, g)
    names = list(ILLUMINANTS)
    kind = torch.randint(0, len(names), (n,), generator=g)
    strength = _uniform(n, *c.cast_strength, g) * _coin(n, c.cast_prob, g)
    target = torch.tensor([ILLUMINANTS[k] for k in names], dtype=torch.float64)[kind]
    gains = 1.0 + strength[:, None] * (target - 1.0)
    gains = gains / (gains * torch.tensor(BT709_LUMA, dtype=torch.float64)).sum(1, keepdim=True)
    photons = _log_uniform(n, *c.photons, g)
    read = _log_uniform(n, *c.read_noise, g)
    defocus = _uniform(n, *c.defocus_sigma, g) * _coin(n, c.defocus_prob, g)
    klo, khi = c.motion_kernel
    ksize = (torch.randint(klo // 2, khi // 2 + 1, (n,), generator=g) * 2 + 1) * _coin(n, c.motion_prob, g)
    angle = _uniform(n, 0.0, 180.0, g)
    bias = _uniform(n, *c.chroma_bias, g) * _coin(n, c.chroma_bias_prob, g)
    crf = torch.randint(int(c.crf[0]), int(c.crf[1]) + 1, (n,), generator=g)
    crf = torch.where(_coin(n, c.h264_prob, g), crf, torch.full_like(crf, -1))
    # night light is drawn after everything else and only when enabled: the default config makes
    # exactly the draws it always made
    light = sample_light_layout(n, g, c) if c.light_prob > 0 or c.mono_prob > 0 else None
    return DegradeParams(
        exposure=exposure.float(), gains=gains.float(), photons=photons.float(), read_noise=read.float(),
        defocus_sigma=defocus.float(), motion_kernel=ksize.long(), motion_angle=angle.float(),
        chroma_bias=bias.float(), crf=crf.long(), light=light,
    )


def kelvin_to_rgb(kelvin: torch.Tensor) -> torch.Tensor:
    """Linear sRGB colour of a black body at ``kelvin`` (1667 ... 25000 K), luma-normalised:
    (...,) -> (..., 3). Planckian locus in CIE xy (Kim et al. 2002 cubic fit), XYZ -> linear sRGB
    (kornia); 6500 K is close to (1, 1, 1).

    Example:
        >>> rgb = kelvin_to_rgb(torch.tensor([2000.0, 6500.0, 10000.0]))
        >>> bool(rgb[0, 0] > rgb[0, 2]), bool(rgb[2, 2] > rgb[2, 0])  # sodium orange, sky blue
        (True, True)
    """
    t = kelvin.double().clamp(1667.0, 25000.0)
    x = torch.where(t <= 4000.0,
                    -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910,
                    -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390)
    y = torch.where(t <= 2222.0, -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683,
                    torch.where(t <= 4000.0, -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867,
                                3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483))
    xyz = torch.stack([x / y, torch.ones_like(x), (1.0 - x - y) / y], dim=-1)
    rgb = kornia.color.xyz_to_rgb(xyz.reshape(-1, 3, 1, 1).float()).reshape(xyz.shape).clamp(min=0.02)
    return rgb / (rgb * rgb.new_tensor(BT709_LUMA)).sum(-1, keepdim=True)


def sample_light_layout(batch: int, generator: torch.Generator, config: DegradeConfig | None = None) -> LightLayout:
    """Draw ``batch`` night-light layouts (a fixed number of draws for a given config).

    Example:
        >>> cfg = DegradeConfig(light_prob=1.0)
        >>> lay = sample_light_layout(2, torch.Generator().manual_seed(0), cfg)
        >>> lay.weight.shape, bool(lay.lit.all()), bool((lay.ratio >= 30).all())
        (torch.Size([2, 4]), True, True)
    """
    c = config or DegradeConfig()
    g = generator
    n, s = int(batch), int(c.light_sources[1])
    lit = _coin(n, c.light_prob, g)
    mono = _coin(n, c.mono_prob, g)
    level = _log_uniform(n, *c.light_level, g)
    ratio = _log_uniform(n, *c.light_ratio, g)
    ambient_rgb = kelvin_to_rgb(_uniform(n, *c.ambient_kelvin, g))
    count = torch.randint(int(c.light_sources[0]), s + 1, (n,), generator=g)
    names = list(LIGHT_SOURCES)
    kind = torch.randint(0, len(names), (n, s), generator=g)
    k_lo = torch.tensor([LIGHT_SOURCES[k][0][0] for k in names], dtype=torch.float64)[kind]
    k_hi = torch.tensor([LIGHT_SOURCES[k][0][1] for k in names], dtype=torch.float64)[kind]
    kelvin = k_lo + (k_hi - k_lo) * torch.rand(n, s, generator=g, dtype=torch.float64)
    shape = torch.tensor([LIGHT_SOURCES[k][1] for k in names])[kind]
    # the first source is the brightest; the others 0.1 ... 1 of it
    weight = torch.exp(_uniform(n * s, math.log(0.1), 0.0, g).view(n, s))
    weight[:, 0] = 1.0
    weight = weight * (torch.arange(s)[None, :] < count[:, None])
    x = _uniform(n * s, 0.05, 0.95, g).view(n, s)
    y = _uniform(n * s, 0.1, 0.95, g).view(n, s)
    radius = _log_uniform(n * s, *c.light_radius, g).view(n, s)
    aspect = _uniform(n * s, 0.35, 1.0, g).view(n, s)
    angle = _uniform(n * s, 0.0, math.pi, g).view(n, s)
    spread = _uniform(n * s, math.radians(10.0), math.radians(35.0), g).view(n, s)
    falloff = _uniform(n * s, *c.light_falloff, g).view(n, s)
    # cones point into the frame from an origin near the bottom or a side edge (a car's headlights)
    cone = shape == 1
    y = torch.where(cone, _uniform(n * s, 0.55, 1.0, g).view(n, s), y)
    angle = torch.where(cone, torch.atan2(0.45 - y, 0.5 - x) + _uniform(n * s, -0.4, 0.4, g).view(n, s), angle)
    radius = torch.where(cone, radius * 2.0, radius)
    # a visible emitter: a lamp head above its pool, a headlight at the cone's origin; windows none
    core = (_coin(n * s, c.core_prob, g).view(n, s) & (shape != 2) & (weight > 0))
    lift = _uniform(n * s, 0.0, 1.2, g).view(n, s)
    core_x = x
    core_y = torch.where(cone, y, (y - lift * radius * aspect).clamp(0.0, 1.0))
    core_radius = _log_uniform(n * s, *c.core_radius, g).view(n, s)
    glow = _log_uniform(n * s, *c.glow, g).view(n, s)
    glow_radius = core_radius * _uniform(n * s, *c.glow_radius, g).view(n, s)
    f = lambda v: v.float()
    return LightLayout(
        lit=lit, mono=mono, level=f(level), ratio=f(ratio), ambient_rgb=f(ambient_rgb), kind=kind,
        kelvin=f(kelvin), rgb=f(kelvin_to_rgb(kelvin)), weight=f(weight), x=f(x), y=f(y), radius=f(radius),
        aspect=f(aspect), angle=f(angle), spread=f(spread), falloff=f(falloff), core=core, core_x=f(core_x),
        core_y=f(core_y), core_radius=f(core_radius), glow=f(glow), glow_radius=f(glow_radius),
    )


def _grid(layout: LightLayout, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Pixel-centre coordinates (1, 1, H, W) in units of the long side, and the long side in px."""
    long_side = float(max(height, width))
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) / long_side
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / long_side
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return xx[None, None], yy[None, None], long_side


def _sources(layout: LightLayout, height: int, width: int) -> torch.Tensor:
    """Profile of every source, peak 1: (B, S, H, W)."""
    xx, yy, long_side = _grid(layout, height, width)
    v = lambda t: t[:, :, None, None]
    # positions are fractions of width/height; distances in units of the long side
    du = xx - v(layout.x) * (width / long_side)
    dv = yy - v(layout.y) * (height / long_side)
    cos, sin = torch.cos(v(layout.angle)), torch.sin(v(layout.angle))
    along, across = du * cos + dv * sin, -du * sin + dv * cos
    r, p, a = v(layout.radius), v(layout.falloff), v(layout.aspect)
    # pool: rotated ellipse, exp(-d**p)
    pool = torch.exp(-((along / r) ** 2 + (across / (r * a)) ** 2).sqrt() ** p)
    # cone: angular edge around the axis, falling with distance along it; bright near the origin
    off_axis = torch.atan2(across.abs(), along)
    cone = torch.exp(-(off_axis / v(layout.spread)) ** 4) * torch.exp(-(along.clamp(min=0.0) / r) ** p)
    # window: axis-aligned soft rectangle; the falloff exponent sets the edge softness
    soft = r * 0.08 * p
    window = torch.sigmoid((r - du.abs()) / soft) * torch.sigmoid((r * a * 0.7 - dv.abs()) / soft)
    shape = torch.tensor([LIGHT_SOURCES[k][1] for k in LIGHT_SOURCES])[layout.kind]
    prof = torch.where(v(shape) == 0, pool, torch.where(v(shape) == 1, cone, window))
    return prof * v(layout.weight)


def illumination_map(layout: LightLayout, height: int, width: int) -> torch.Tensor:
    """The linear-light illumination of each sample: (B, 3, H, W). Its luma spans exactly
    ``[level / ratio, level]`` over the image (coloured ambient at the dark end); neutral for
    monochrome samples.

    Example:
        >>> lay = sample_light_layout(1, torch.Generator().manual_seed(0), DegradeConfig(light_prob=1.0))
        >>> y = luma(illumination_map(lay, 48, 64))
        >>> round(float(y.max() / y.min() / lay.ratio[0]), 3)
        1.0
    """
    prof = _sources(layout, height, width)  # (B, S, H, W)
    light = (prof[:, :, None] * layout.rgb[:, :, :, None, None]).sum(1)  # (B, 3, H, W), luma = prof.sum(1)
    total = prof.sum(1, keepdim=True)  # (B, 1, H, W) luma of ``light``
    lo = total.amin(dim=(2, 3), keepdim=True)
    hi = total.amax(dim=(2, 3), keepdim=True)
    # S(x) = light with luma stretched to [0, 1]: subtract the colour mix at its darkest, in luma
    mix = light / total.clamp(min=1e-12)
    stretched = mix * ((total - lo) / (hi - lo).clamp(min=1e-12))
    ambient = (layout.level / layout.ratio).view(-1, 1, 1, 1)
    out = ambient * (layout.ambient_rgb[:, :, None, None] + (layout.ratio.view(-1, 1, 1, 1) - 1.0) * stretched)
    grey = luma(out).expand_as(out)
    return torch.where(layout.mono.view(-1, 1, 1, 1), grey, out)


def emitter_maps(layout: LightLayout, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Visible light sources: ``(core, glow)`` - the core's coverage (B, 1, H, W) in [0, 1]
    (anti-aliased discs, at least 1 px across) and the glow around them, linear light (B, 3, H, W)
    (coloured like the source, neutral for monochrome samples)."""
    xx, yy, long_side = _grid(layout, height, width)
    v = lambda t: t[:, :, None, None]
    dist = ((xx - v(layout.core_x) * (width / long_side)) ** 2 + (yy - v(layout.core_y) * (height / long_side)) ** 2).sqrt()
    rc = v(layout.core_radius).clamp(min=0.5 / long_side)
    on = v(layout.core & layout.lit[:, None]).float()  # emitters belong to lit samples only
    cover = ((rc - dist) * long_side + 0.5).clamp(0.0, 1.0) * on  # (B, S, H, W)
    core = 1.0 - (1.0 - cover).prod(dim=1, keepdim=True)
    halo = v(layout.glow) * torch.exp(-(dist - rc).clamp(min=0.0) / v(layout.glow_radius)) * on
    rgb = torch.where(layout.mono[:, None, None], torch.ones_like(layout.rgb), layout.rgb)
    glow = (halo[:, :, None] * rgb[:, :, :, None, None]).sum(1)
    return core, glow


def _per_frame(value: torch.Tensor, frames: int) -> torch.Tensor:
    return value.repeat_interleave(frames, dim=0)


def add_sensor_noise(linear: torch.Tensor, photons: torch.Tensor, read_noise: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Poisson shot noise (``photons`` electrons at full scale) + Gaussian read noise, linear light.

    ``linear`` (B, 3, H, W) in [0, 1]; ``photons``/``read_noise`` (B,). Returns unclipped values.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = add_sensor_noise(torch.full((1, 3, 64, 64), 0.01), torch.tensor([1000.]), torch.tensor([1e-3]), g)
        >>> 0.002 < y.std().item() < 0.005  # sqrt(0.01 / 1000 + 1e-6) ~ 0.0032
        True
    """
    k = photons.to(linear).view(-1, 1, 1, 1)
    shot = torch.poisson((linear.clamp(min=0.0) * k).float(), generator=generator) / k
    read = torch.randn(linear.shape, generator=generator, dtype=linear.dtype) * read_noise.to(linear).view(-1, 1, 1, 1)
    return shot + read


def _blur(linear: torch.Tensor, params: DegradeParams, frames: int) -> torch.Tensor:
    sigma = _per_frame(params.defocus_sigma, frames)
    ksize = _per_frame(params.motion_kernel, frames)
    angle = _per_frame(params.motion_angle, frames)
    out = linear
    idx = torch.nonzero(sigma > 0).flatten()
    if idx.numel():
        s = sigma[idx]
        k = int(2 * math.ceil(3 * float(s.max())) + 1)
        blurred = kornia.filters.gaussian_blur2d(out[idx], (k, k), torch.stack([s, s], dim=1))
        out = out.index_copy(0, idx, blurred)
    idx = torch.nonzero(ksize > 0).flatten()
    for i in idx.tolist():
        blurred = kornia.filters.motion_blur(out[i : i + 1], int(ksize[i]), float(angle[i]), 0.0)
        out = out.index_copy(0, torch.tensor([i]), blurred)
    return out


def _chroma_bias(srgb: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Magenta offset (R and B up, G down) fading out above ~20 % luma."""
    amount = codes.to(srgb).view(-1, 1, 1, 1) / 255.0
    dark = (1.0 - luma(srgb) / 0.2).clamp(0.0, 1.0)
    direction = srgb.new_tensor([1.0, -1.0, 1.0]).view(1, 3, 1, 1)
    return srgb + amount * dark * direction


def _flatten(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    if x.ndim == 5:
        b, t = x.shape[:2]
        flat = x.reshape(b * t, *x.shape[2:])
    elif x.ndim == 4:
        b, t = x.shape[0], 1
        flat = x
    else:
        raise ValueError(f"expected (B, 3, H, W) or (B, T, 3, H, W), got {tuple(x.shape)}")
    if flat.shape[1] != 3:
        raise ValueError(f"expected 3 channels, got {tuple(x.shape)}")
    return flat, b, t


def _mask(flags: torch.Tensor, frames: int) -> torch.Tensor:
    return _per_frame(flags, frames).view(-1, 1, 1, 1)


def _night_linear(lin: torch.Tensor, params: DegradeParams, frames: int) -> torch.Tensor:
    """Steps 2-3 with night light: lit samples get the illumination map and their emitters (not
    clipped here: the sensor clips after the shot noise), monochrome ones a neutral exposure."""
    lay = params.light
    exposure = _per_frame(params.exposure, frames).view(-1, 1, 1, 1)
    gains = _per_frame(params.gains, frames).view(-1, 3, 1, 1)
    gains = torch.where(_mask(lay.mono, frames), torch.ones_like(gains), gains)
    out = (lin * gains * exposure).clamp(0.0, 1.0)
    if bool(lay.lit.any()):
        h, w = lin.shape[-2:]
        illum = _per_frame(illumination_map(lay, h, w), frames)
        core, glow = (_per_frame(m, frames) for m in emitter_maps(lay, h, w))
        lit = (lin * illum + glow) * (1.0 - core) + CORE_LEVEL * core
        out = torch.where(_mask(lay.lit, frames), lit, out)
    return out


def degrade(x: torch.Tensor, params: DegradeParams, generator: torch.Generator) -> torch.Tensor:
    """Apply the low-light chain to sRGB images ``(B, 3, H, W)`` or clips ``(B, T, 3, H, W)`` in
    [0, 1] with one parameter set per image/clip; returns the 8-bit-quantised result, same shape.
    (:func:`degrade_pair` also returns the matching target.)

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> clip = torch.rand(1, 4, 3, 16, 16)
        >>> degrade(clip, sample_degradation(1, g), g).shape
        torch.Size([1, 4, 3, 16, 16])
    """
    flat, b, t = _flatten(x)
    if len(params) != b:
        raise ValueError(f"{len(params)} parameter sets for {b} images/clips")
    lay = params.light
    flat = flat.float()
    if lay is not None and bool(lay.mono.any()):
        flat = torch.where(_mask(lay.mono, t), to_grey(flat), flat)
    lin = srgb_to_linear(flat)
    if lay is None:
        gains = _per_frame(params.gains, t).view(-1, 3, 1, 1)
        exposure = _per_frame(params.exposure, t).view(-1, 1, 1, 1)
        lin = (lin * gains * exposure).clamp(0.0, 1.0)
    else:
        lin = _night_linear(lin, params, t)
    lin = _blur(lin, params, t)
    lin = add_sensor_noise(lin, _per_frame(params.photons, t), _per_frame(params.read_noise, t), generator)
    srgb = linear_to_srgb(lin.clamp(0.0, 1.0))
    bias = params.chroma_bias if lay is None else params.chroma_bias * ~lay.mono
    srgb = _chroma_bias(srgb, _per_frame(bias, t))
    srgb = quantize(srgb, 8)
    if lay is not None and bool(lay.mono.any()):
        # a monochrome camera stores R = G = B (one noise value per pixel, not three)
        srgb = torch.where(_mask(lay.mono, t), quantize(to_grey(srgb), 8), srgb)
    if bool((params.crf >= 0).any()):
        srgb = srgb.reshape(b, t, *srgb.shape[1:])
        out = []
        for i in range(b):
            crf = int(params.crf[i])
            if crf < 0:
                out.append(srgb[i])
                continue
            frames = (srgb[i] * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            coded = h264_roundtrip(frames, crf)
            out.append(torch.from_numpy(np.ascontiguousarray(coded)).permute(0, 3, 1, 2).float() / 255.0)
        srgb = torch.stack(out).reshape(b * t, *srgb.shape[2:])
        if lay is not None and bool(lay.mono.any()):
            # 4:2:0 rounding can leave +-1 code between channels; the grey camera's decoder would not
            srgb = torch.where(_mask(lay.mono, t), quantize(to_grey(srgb), 8), srgb)
    return srgb.reshape(x.shape)


def night_target(x: torch.Tensor, params: DegradeParams) -> torch.Tensor:
    """The training target for ``x`` under ``params`` (see the module docstring): ``x`` itself,
    except grey for monochrome samples and with the visible emitters (white core, glow at its
    absolute linear level) of lit samples. Same shape as ``x``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.rand(2, 3, 16, 16)
        >>> night_target(x, sample_degradation(2, g)) is x  # default config: the photo as is
        True
    """
    lay = params.light
    if lay is None or not bool((lay.mono | (lay.lit & lay.core.any(1))).any()):
        return x
    flat, b, t = _flatten(x)
    if len(params) != b:
        raise ValueError(f"{len(params)} parameter sets for {b} images/clips")
    out = flat.float()
    out = torch.where(_mask(lay.mono, t), to_grey(out), out)
    emitters = lay.lit & lay.core.any(1)
    if bool(emitters.any()):
        h, w = out.shape[-2:]
        core, glow = (_per_frame(m, t) for m in emitter_maps(lay, h, w))
        lit = linear_to_srgb((srgb_to_linear(out) + glow).clamp(0.0, 1.0)) * (1.0 - core) + core  # cores exactly 1
        out = torch.where(_mask(emitters, t), lit, out)
    return out.reshape(x.shape)


def degrade_pair(x: torch.Tensor, params: DegradeParams, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, target)`` for sRGB images/clips ``x``: :func:`degrade` and :func:`night_target`.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> cfg = DegradeConfig(light_prob=1.0, mono_prob=1.0, h264_prob=0.0)
        >>> low, target = degrade_pair(torch.rand(1, 3, 32, 32), sample_degradation(1, g, cfg), g)
        >>> bool((low[:, 0] == low[:, 1]).all()), bool((target[:, 1] == target[:, 2]).all())
        (True, True)
    """
    return degrade(x, params, generator), night_target(x, params)


def synthesize_low_light(x: torch.Tensor, generator: torch.Generator, config: DegradeConfig | None = None) -> tuple[torch.Tensor, DegradeParams]:
    """Sample parameters and degrade in one call: ``(low, params)``.

    Example:
        >>> low, p = synthesize_low_light(torch.rand(1, 3, 16, 16), torch.Generator().manual_seed(0))
        >>> low.shape
        torch.Size([1, 3, 16, 16])
    """
    b = x.shape[0]
    params = sample_degradation(b, generator, config)
    return degrade(x, params, generator), params
