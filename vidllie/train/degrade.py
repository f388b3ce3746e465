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

    def __post_init__(self) -> None:
        for name in ("exposure", "cast_strength", "photons", "read_noise", "defocus_sigma",
                     "motion_kernel", "chroma_bias", "crf"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"degradation {name}: low end {lo} above high end {hi}")
            setattr(self, name, (lo, hi))
        if not 0 < self.exposure[0] <= self.exposure[1] <= 1:
            raise ValueError(f"exposure factors must be in (0, 1], got {self.exposure}")
        for name in ("cast_prob", "defocus_prob", "motion_prob", "chroma_bias_prob", "h264_prob"):
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

    def __len__(self) -> int:
        return int(self.exposure.shape[0])

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
    return DegradeParams(
        exposure=exposure.float(), gains=gains.float(), photons=photons.float(), read_noise=read.float(),
        defocus_sigma=defocus.float(), motion_kernel=ksize.long(), motion_angle=angle.float(),
        chroma_bias=bias.float(), crf=crf.long(),
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


def _chroma_bias(srgb: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Magenta offset (R and B up, G down) fading out above ~20 % luma."""
    amount = codes.to(srgb).view(-1, 1, 1, 1) / 255.0
    dark = (1.0 - luma(srgb) / 0.2).clamp(0.0, 1.0)
    direction = srgb.new_tensor([1.0, -1.0, 1.0]).view(1, 3, 1, 1)
    return srgb + amount * dark * direction


def degrade(x: torch.Tensor, params: DegradeParams, generator: torch.Generator) -> torch.Tensor:
    """Apply the low-light chain to sRGB images ``(B, 3, H, W)`` or clips ``(B, T, 3, H, W)`` in
    [0, 1] with one parameter set per image/clip; returns the 8-bit-quantised result, same shape.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> clip = torch.rand(1, 4, 3, 16, 16)
        >>> degrade(clip, sample_degradation(1, g), g).shape
        torch.Size([1, 4, 3, 16, 16])
    """
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
    if len(params) != b:
        raise ValueError(f"{len(params)} parameter sets for {b} images/clips")
    flat = flat.float()
    lin = srgb_to_linear(flat)
    gains = _per_frame(params.gains, t).view(-1, 3, 1, 1)
    exposure = _per_frame(params.exposure, t).view(-1, 1, 1, 1)
    lin = (lin * gains * exposure).clamp(0.0, 1.0)
    lin = _blur(lin, params, t)
    lin = add_sensor_noise(lin, _per_frame(params.photons, t), _per_frame(params.read_noise, t), generator)
    srgb = linear_to_srgb(lin.clamp(0.0, 1.0))
    srgb = _chroma_bias(srgb, _per_frame(params.chroma_bias, t))
    srgb = quantize(srgb, 8)
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
    return srgb.reshape(x.shape)


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
