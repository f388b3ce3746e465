"""Night light for the low-light degradation (:mod:`vidllie.train.degrade`): light layouts, the
illumination and emitter maps they make, black-body colours, and monochrome (IR) samples. Off by
default (``light_prob = mono_prob = 0`` in :class:`~vidllie.train.degrade.DegradeConfig`: nothing
here is drawn). With probability ``light_prob`` a sample is lit like a real night scene instead
of by the global exposure and cast (steps 2-3 of the chain): a spatially varying illumination
map in linear light multiplies the scene,

    I(x) = ambient * (c_amb + (ratio - 1) * S(x)),   luma(S) in [0, 1] with min 0 and max 1,

a dim bluish ambient (sky glow, moonlight, ``ambient_kelvin``, optionally tinted green or
magenta, ``ambient_tint``) plus 1-4 light pools: street
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

:func:`~vidllie.train.degrade.degrade` applies the maps and
:func:`~vidllie.train.degrade.night_target` builds the matching target; every public name here is
importable from :mod:`vidllie.train.degrade` too.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import kornia
import torch

from vidllie.ops.color import BT709_LUMA, luma
from vidllie.train.degrade_config import DegradeConfig, coin, log_uniform, uniform

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


def tint_green(rgb: torch.Tensor, log_gain: torch.Tensor) -> torch.Tensor:
    """Move colours (..., 3), luma 1, along the green-magenta axis: green times ``exp(log_gain)``
    (...,), then luma-normalised again (> 0 greener, < 0 more magenta).

    Example:
        >>> out = tint_green(torch.ones(2, 3), torch.tensor([0.1, -0.1]))
        >>> bool(out[0, 1] > out[0, 0]), bool(out[1, 1] < out[1, 0])
        (True, True)
    """
    gain = torch.ones_like(rgb)
    gain[..., 1] = torch.exp(log_gain.to(rgb.dtype))
    out = rgb * gain
    return out / (out * out.new_tensor(BT709_LUMA)).sum(-1, keepdim=True)


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
    lit = coin(n, c.light_prob, g)
    mono = coin(n, c.mono_prob, g)
    level = log_uniform(n, *c.light_level, g)
    ratio = log_uniform(n, *c.light_ratio, g)
    ambient_rgb = kelvin_to_rgb(uniform(n, *c.ambient_kelvin, g))
    count = torch.randint(int(c.light_sources[0]), s + 1, (n,), generator=g)
    names = list(LIGHT_SOURCES)
    kind = torch.randint(0, len(names), (n, s), generator=g)
    k_lo = torch.tensor([LIGHT_SOURCES[k][0][0] for k in names], dtype=torch.float64)[kind]
    k_hi = torch.tensor([LIGHT_SOURCES[k][0][1] for k in names], dtype=torch.float64)[kind]
    kelvin = k_lo + (k_hi - k_lo) * torch.rand(n, s, generator=g, dtype=torch.float64)
    shape = torch.tensor([LIGHT_SOURCES[k][1] for k in names])[kind]
    # the first source is the brightest; the others 0.1 ... 1 of it
    weight = torch.exp(uniform(n * s, math.log(0.1), 0.0, g).view(n, s))
    weight[:, 0] = 1.0
    weight = weight * (torch.arange(s)[None, :] < count[:, None])
    x = uniform(n * s, 0.05, 0.95, g).view(n, s)
    y = uniform(n * s, 0.1, 0.95, g).view(n, s)
    radius = log_uniform(n * s, *c.light_radius, g).view(n, s)
    aspect = uniform(n * s, 0.35, 1.0, g).view(n, s)
    angle = uniform(n * s, 0.0, math.pi, g).view(n, s)
    spread = uniform(n * s, math.radians(10.0), math.radians(35.0), g).view(n, s)
    falloff = uniform(n * s, *c.light_falloff, g).view(n, s)
    # cones point into the frame from an origin near the bottom or a side edge (a car's headlights)
    cone = shape == 1
    y = torch.where(cone, uniform(n * s, 0.55, 1.0, g).view(n, s), y)
    angle = torch.where(cone, torch.atan2(0.45 - y, 0.5 - x) + uniform(n * s, -0.4, 0.4, g).view(n, s), angle)
    radius = torch.where(cone, radius * 2.0, radius)
    # a visible emitter: a lamp head above its pool, a headlight at the cone's origin; windows none
    core = (coin(n * s, c.core_prob, g).view(n, s) & (shape != 2) & (weight > 0))
    lift = uniform(n * s, 0.0, 1.2, g).view(n, s)
    core_x = x
    core_y = torch.where(cone, y, (y - lift * radius * aspect).clamp(0.0, 1.0))
    core_radius = log_uniform(n * s, *c.core_radius, g).view(n, s)
    glow = log_uniform(n * s, *c.glow, g).view(n, s)
    glow_radius = core_radius * uniform(n * s, *c.glow_radius, g).view(n, s)
    if c.ambient_tint != (0.0, 0.0):  # drawn last, and only when enabled: other configs' draws are unchanged
        ambient_rgb = tint_green(ambient_rgb, uniform(n, *c.ambient_tint, g))
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
