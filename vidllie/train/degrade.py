"""Physically motivated low-light degradation: normal-light sRGB -> what a night camera stores.

Pure tensor functions; every random draw comes from an explicit ``torch.Generator``. The chain
(per sample, in this order):

0. Optionally (``scene_hue_prob``) the scene's colours turned by a random hue angle, in input and
   target alike: the photos' colour prior made symmetric about grey.
1. sRGB -> linear light (kornia).
2. Illuminant cast in linear light: per-channel gains towards a street-light spectrum (sodium
   ~2000 K, warm LED ~3000 K, cool LED ~5000 K) or, with ``cast_mirror_prob``, its complement;
   luma-normalised so it does not change exposure.
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
before): with probability ``light_prob`` a sample is lit by a spatially varying illumination map
with pools of light and visible emitters instead of by steps 2-3, with probability ``mono_prob``
it is monochrome like an IR camera at night. The layouts, maps and colours are
:mod:`vidllie.train.night_light`'s; the ranges are :class:`DegradeConfig`
(:mod:`vidllie.train.degrade_config`). Their names are importable from here too.

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
from vidllie.train.degrade_config import DegradeConfig, coin, log_uniform, uniform
from vidllie.train.night_light import (
    CORE_LEVEL,
    LIGHT_SOURCES,
    LightLayout,
    emitter_maps,
    illumination_map,
    kelvin_to_rgb,
    sample_light_layout,
    tint_green,
)

__all__ = [
    "CORE_LEVEL", "ILLUMINANTS", "LIGHT_SOURCES", "DegradeConfig", "DegradeParams", "LightLayout",
    "add_sensor_noise", "degrade", "degrade_pair", "emitter_maps", "illumination_map", "kelvin_to_rgb",
    "night_target", "sample_degradation", "sample_light_layout", "synthesize_low_light", "tint_green", "turn_hue",
]

# Linear-light RGB of street-light illuminants relative to daylight white (approximate black-body /
# phosphor ratios; luma-normalised when applied).
ILLUMINANTS: dict[str, tuple[float, float, float]] = {
    "sodium": (1.0, 0.62, 0.22),
    "warm_led": (1.0, 0.80, 0.58),
    "cool_led": (0.88, 0.96, 1.0),
}


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
    chroma_hue: torch.Tensor | None = None  # (B,) radians the chroma bias is turned from magenta; None = 0
    scene_hue: torch.Tensor | None = None  # (B,) radians the scene's colours are turned (input and target); None = 0

    def __len__(self) -> int:
        return int(self.exposure.shape[0])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name).tolist() for f in dataclasses.fields(self)
                               if f.name != "light" and getattr(self, f.name) is not None}
        if self.light is not None:
            out["light"] = self.light.to_dict()
        return out


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
    exposure = log_uniform(n, *c.exposure, g)
    names = list(ILLUMINANTS)
    kind = torch.randint(0, len(names), (n,), generator=g)
    strength = uniform(n, *c.cast_strength, g) * coin(n, c.cast_prob, g)
    target = torch.tensor([ILLUMINANTS[k] for k in names], dtype=torch.float64)[kind]
    gains = 1.0 + strength[:, None] * (target - 1.0)
    photons = log_uniform(n, *c.photons, g)
    read = log_uniform(n, *c.read_noise, g)
    defocus = uniform(n, *c.defocus_sigma, g) * coin(n, c.defocus_prob, g)
    klo, khi = c.motion_kernel
    ksize = (torch.randint(klo // 2, khi // 2 + 1, (n,), generator=g) * 2 + 1) * coin(n, c.motion_prob, g)
    angle = uniform(n, 0.0, 180.0, g)
    bias = uniform(n, *c.chroma_bias, g) * coin(n, c.chroma_bias_prob, g)
    crf = torch.randint(int(c.crf[0]), int(c.crf[1]) + 1, (n,), generator=g)
    crf = torch.where(coin(n, c.h264_prob, g), crf, torch.full_like(crf, -1))
    # night light is drawn after everything else and only when enabled: the default config makes
    # exactly the draws it always made
    light = sample_light_layout(n, g, c) if c.light_prob > 0 or c.mono_prob > 0 else None
    hue = None
    if c.chroma_bias_hue_prob > 0:  # drawn last, and only when enabled (same reason)
        hue = uniform(n, -math.pi, math.pi, g) * coin(n, c.chroma_bias_hue_prob, g)
    if c.cast_mirror_prob > 0:  # drawn after everything else, and only when enabled (same reason)
        gains = torch.where(coin(n, c.cast_mirror_prob, g)[:, None], 1.0 / gains, gains)  # the complement
    scene_hue = None
    if c.scene_hue_prob > 0:  # likewise
        scene_hue = uniform(n, -math.pi, math.pi, g) * coin(n, c.scene_hue_prob, g)
    gains = gains / (gains * torch.tensor(BT709_LUMA, dtype=torch.float64)).sum(1, keepdim=True)  # exposure kept
    return DegradeParams(
        exposure=exposure.float(), gains=gains.float(), photons=photons.float(), read_noise=read.float(),
        defocus_sigma=defocus.float(), motion_kernel=ksize.long(), motion_angle=angle.float(),
        chroma_bias=bias.float(), crf=crf.long(), light=light, chroma_hue=None if hue is None else hue.float(),
        scene_hue=None if scene_hue is None else scene_hue.float(),
    )


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


def chroma_bias_direction(hue: torch.Tensor) -> torch.Tensor:
    """(B,) angles -> (B, 3) offsets: magenta (1, -1, 1) turned by ``hue`` about the grey axis
    (Rodrigues' rotation; the grey component and the length are kept).

    Example:
        >>> chroma_bias_direction(torch.zeros(1)).round(decimals=4).tolist()
        [[1.0, -1.0, 1.0]]
    """
    magenta = hue.new_tensor([1.0, -1.0, 1.0])
    axis = hue.new_ones(3) / math.sqrt(3.0)
    cos, sin = hue.cos()[:, None], hue.sin()[:, None]
    along = (magenta @ axis) * axis  # the grey part: unchanged by the rotation
    return along + cos * (magenta - along) + sin * torch.linalg.cross(axis.expand(len(hue), 3), magenta.expand(len(hue), 3))


def _chroma_bias(srgb: torch.Tensor, codes: torch.Tensor, hue: torch.Tensor | None = None) -> torch.Tensor:
    """Chroma offset fading out above ~20 % luma: magenta (R and B up, G down), or turned by ``hue``."""
    amount = codes.to(srgb).view(-1, 1, 1, 1) / 255.0
    dark = (1.0 - luma(srgb) / 0.2).clamp(0.0, 1.0)
    if hue is None:
        direction = srgb.new_tensor([1.0, -1.0, 1.0]).view(1, 3, 1, 1)
    else:
        direction = chroma_bias_direction(hue.to(srgb)).view(-1, 3, 1, 1)
    return srgb + amount * dark * direction


def turn_hue(srgb: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Turn the colours of sRGB images (N, 3, H, W) in [0, 1] by ``angle`` (N,) radians about the
    grey axis: CIELAB a*, b* rotated, L* kept; colours turned out of the sRGB gamut are clipped.
    Greys stay grey.

    Example:
        >>> red = torch.tensor([0.8, 0.2, 0.2]).view(1, 3, 1, 1)
        >>> turned = turn_hue(red, torch.tensor([math.pi]))  # red's opposite: a blue-green
        >>> bool(turned[0, 2] > turned[0, 0] and turned[0, 1] > turned[0, 0])
        True
    """
    lab = kornia.color.rgb_to_lab(srgb.clamp(0.0, 1.0))  # (N, 3, H, W)
    cos, sin = (f(angle.to(lab)).view(-1, 1, 1) for f in (torch.cos, torch.sin))
    a, b = lab[:, 1], lab[:, 2]
    return kornia.color.lab_to_rgb(torch.stack([lab[:, 0], cos * a - sin * b, sin * a + cos * b], dim=1), clip=True)


def _scene(flat: torch.Tensor, params: DegradeParams, frames: int) -> torch.Tensor:
    """The scene the camera sees and the target shows: ``flat`` (B*T, 3, H, W), with the colours of
    the samples that have a ``scene_hue`` turned (the others untouched, bit for bit)."""
    if params.scene_hue is None:
        return flat
    angle = _per_frame(params.scene_hue, frames)
    idx = torch.nonzero(angle != 0).flatten()
    if not idx.numel():
        return flat
    return flat.index_copy(0, idx, turn_hue(flat[idx], angle[idx]).to(flat.dtype))


def _flatten(x: torch.Tensor, params: DegradeParams | None = None) -> tuple[torch.Tensor, int, int]:
    """(B, 3, H, W) or (B, T, 3, H, W) -> ((B*T, 3, H, W), B, T); refuses a ``params`` of another B."""
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
    if params is not None and len(params) != b:
        raise ValueError(f"{len(params)} parameter sets for {b} images/clips")
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
    flat, b, t = _flatten(x, params)
    lay = params.light
    flat = _scene(flat.float(), params, t)
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
    hue = None if params.chroma_hue is None else _per_frame(params.chroma_hue, t)
    srgb = _chroma_bias(srgb, _per_frame(bias, t), hue)
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
    """The training target for ``x`` under ``params`` (see the module docstring): ``x`` itself
    (its colours turned where the sample has a ``scene_hue``), except grey for monochrome samples
    and with the visible emitters (white core, glow at its absolute linear level) of lit samples.
    Same shape as ``x``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.rand(2, 3, 16, 16)
        >>> night_target(x, sample_degradation(2, g)) is x  # default config: the photo as is
        True
    """
    lay = params.light
    turned = params.scene_hue is not None and bool((params.scene_hue != 0).any())
    if not turned and (lay is None or not bool((lay.mono | (lay.lit & lay.core.any(1))).any())):
        return x
    flat, b, t = _flatten(x, params)
    out = _scene(flat.float(), params, t)
    if lay is None:
        return out.reshape(x.shape)
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
    if params.scene_hue is not None:  # turn the scene once for both
        flat, b, t = _flatten(x, params)
        x = _scene(flat.float(), params, t).reshape(x.shape)
        params = dataclasses.replace(params, scene_hue=None)
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
