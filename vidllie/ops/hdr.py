"""HDR (BT.2100 HLG and PQ, BT.2020 primaries) to and from the SDR BT.709 signal the model sees,
as torch tensor ops (any device, any float dtype; images are (*, 3, H, W), values in [0, 1]).

No maintained library provides these as torch ops: kornia has only the sRGB transfer
(``kornia.color.rgb_to_linear_rgb``) and colour-science is numpy, so they are written here from
the standards: ITU-R BT.2100 (HLG OETF/OOTF, PQ EOTF), BT.2087 (BT.2020 <-> BT.709 primaries),
BT.2390 (the EETF that compresses highlights) and BT.1886 (the SDR display's EOTF). The reference values
(HLG 0.5 <-> 1/12 scene linear, PQ 1.0 <-> 10000 cd/m2, PQ 0.508 ~ 100 cd/m2) and SDR levels
converted by zscale are tested in ``tests/test_hdr.py``.

The SDR side is display-referred, as FFmpeg's zscale (``npl=100``): SDR 1.0 is ``sdr_white`` =
100 cd/m2 and the signal is the inverse BT.1886 EOTF (power 1/2.4) of it, so an SDR clip
converted to HLG/PQ with zscale comes back to its own code values below the tone map's knee.

:func:`hdr_to_sdr` also returns the per-pixel tone-map ratio; :func:`sdr_to_hlg` divides by it,
so an SDR picture changed by the model goes back to HLG with the original highlights (see its
docstring).
"""

from __future__ import annotations

import math

import torch

# ---------------------------------------------------------------- constants (BT.2100, BT.2087)
HLG_A = 0.17883277
HLG_B = 1.0 - 4.0 * HLG_A  # 0.28466892
HLG_C = 0.5 - HLG_A * math.log(4.0 * HLG_A)  # 0.55991073
PQ_M1, PQ_M2 = 2610 / 16384, 2523 / 4096 * 128
PQ_C1, PQ_C2, PQ_C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
PQ_PEAK = 10000.0  # cd/m2 at PQ signal 1.0
LUMA_2020 = (0.2627, 0.6780, 0.0593)
LUMA_709 = (0.2126, 0.7152, 0.0722)
BT2020_TO_BT709 = (
    (1.6605, -0.5876, -0.0728),
    (-0.1246, 1.1329, -0.0083),
    (-0.0182, -0.1006, 1.1187),
)
BT709_TO_BT2020 = (
    (0.6274, 0.3293, 0.0433),
    (0.0691, 0.9195, 0.0114),
    (0.0164, 0.0880, 0.8956),
)


def _check(x: torch.Tensor, name: str = "input") -> None:
    if not isinstance(x, torch.Tensor) or x.dim() < 3 or x.shape[-3] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a (*, 3, H, W) tensor, got {shape}")


def _luma(x: torch.Tensor, weights: tuple[float, float, float]) -> torch.Tensor:
    r, g, b = x.unbind(-3)
    return (weights[0] * r + weights[1] * g + weights[2] * b).unsqueeze(-3)


def _matrix(x: torch.Tensor, m: tuple[tuple[float, ...], ...]) -> torch.Tensor:
    mat = torch.tensor(m, dtype=x.dtype, device=x.device)
    return torch.einsum("ij,...jhw->...ihw", mat, x)


# ---------------------------------------------------------------- transfer functions
def hlg_oetf(scene: torch.Tensor) -> torch.Tensor:
    """BT.2100 HLG OETF: scene linear [0, 1] -> signal [0, 1] (elementwise).

    Example:
        >>> hlg_oetf(torch.tensor([1 / 12, 1.0]))
        tensor([0.5000, 1.0000])
    """
    e = scene.clamp(min=0.0)
    log = HLG_A * torch.log((12.0 * e - HLG_B).clamp(min=1e-12)) + HLG_C
    return torch.where(e <= 1 / 12, torch.sqrt(3.0 * e), log)


def hlg_inverse_oetf(signal: torch.Tensor) -> torch.Tensor:
    """BT.2100 HLG inverse OETF: signal [0, 1] -> scene linear [0, 1] (elementwise).

    Example:
        >>> hlg_inverse_oetf(torch.tensor([0.5, 1.0]))
        tensor([0.0833, 1.0000])
    """
    e = signal.clamp(min=0.0)
    return torch.where(e <= 0.5, e * e / 3.0, (torch.exp((e - HLG_C) / HLG_A) + HLG_B) / 12.0)


def hlg_gamma(peak: float) -> float:
    """The HLG system gamma for a display of ``peak`` cd/m2 (BT.2100: 1.2 at 1000).

    Example:
        >>> hlg_gamma(1000.0)
        1.2
    """
    return 1.2 + 0.42 * math.log10(peak / 1000.0)


def hlg_ootf(scene: torch.Tensor, peak: float = 1000.0) -> torch.Tensor:
    """BT.2100 HLG OOTF: scene linear BT.2020 RGB (*, 3, H, W) -> display light in cd/m2 on a
    display of ``peak`` cd/m2 (black level 0).

    Example:
        >>> hlg_ootf(torch.ones(1, 3, 1, 1)).flatten()
        tensor([1000., 1000., 1000.])
    """
    _check(scene)
    ys = _luma(scene.clamp(min=0.0), LUMA_2020).clamp(min=1e-12)
    return peak * ys.pow(hlg_gamma(peak) - 1.0) * scene.clamp(min=0.0)


def hlg_inverse_ootf(display: torch.Tensor, peak: float = 1000.0) -> torch.Tensor:
    """Inverse of :func:`hlg_ootf`: display light in cd/m2 (*, 3, H, W) -> scene linear.

    Example:
        >>> hlg_inverse_ootf(torch.full((1, 3, 1, 1), 1000.0)).flatten()
        tensor([1., 1., 1.])
    """
    _check(display)
    d = display.clamp(min=0.0) / peak
    g = hlg_gamma(peak)
    yd = _luma(d, LUMA_2020).clamp(min=1e-12)
    return d * yd.pow((1.0 - g) / g)


def pq_eotf(signal: torch.Tensor) -> torch.Tensor:
    """SMPTE ST 2084 (PQ) EOTF: signal [0, 1] -> absolute display light in cd/m2 (elementwise).

    Example:
        >>> pq_eotf(torch.tensor([1.0, 0.508078])).round()
        tensor([10000.,   100.])
    """
    p = signal.clamp(0.0, 1.0).pow(1.0 / PQ_M2)
    return PQ_PEAK * ((p - PQ_C1).clamp(min=0.0) / (PQ_C2 - PQ_C3 * p)).pow(1.0 / PQ_M1)


def pq_inverse_eotf(nits: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pq_eotf`: cd/m2 -> PQ signal [0, 1] (elementwise).

    Example:
        >>> pq_inverse_eotf(torch.tensor([100.0, 1000.0]))
        tensor([0.5081, 0.7518])
    """
    y = (nits / PQ_PEAK).clamp(0.0, 1.0).pow(PQ_M1)
    return ((PQ_C1 + PQ_C2 * y) / (1.0 + PQ_C3 * y)).pow(PQ_M2)


def bt1886_eotf(signal: torch.Tensor) -> torch.Tensor:
    """BT.1886 EOTF (black level 0): SDR signal [0, 1] -> display light relative to SDR white,
    ``signal ** 2.4`` (elementwise). The display-referred SDR linearisation, as zscale's.

    Example:
        >>> bt1886_eotf(torch.tensor([0.5, 1.0]))
        tensor([0.1895, 1.0000])
    """
    return signal.clamp(0.0, 1.0).pow(2.4)


def bt1886_inverse_eotf(linear: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`bt1886_eotf`: display light relative to SDR white -> SDR signal.

    Example:
        >>> bt1886_inverse_eotf(torch.tensor([0.1895, 1.0]))
        tensor([0.5000, 1.0000])
    """
    return linear.clamp(0.0, 1.0).pow(1 / 2.4)


# ---------------------------------------------------------------- gamut and tone mapping
def bt2020_to_bt709(rgb: torch.Tensor) -> torch.Tensor:
    """Linear BT.2020 RGB -> linear BT.709 RGB (BT.2087 matrix); wide-gamut colours come out
    with negative components (see :func:`gamut_compress`).

    Example:
        >>> bt2020_to_bt709(torch.ones(3, 1, 1)).flatten()
        tensor([1.0001, 1.0000, 0.9999])
    """
    _check(rgb)
    return _matrix(rgb, BT2020_TO_BT709)


def bt709_to_bt2020(rgb: torch.Tensor) -> torch.Tensor:
    """Linear BT.709 RGB -> linear BT.2020 RGB (BT.2087 matrix).

    Example:
        >>> bt709_to_bt2020(torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)).flatten()
        tensor([0.6274, 0.0691, 0.0164])
    """
    _check(rgb)
    return _matrix(rgb, BT709_TO_BT2020)


def gamut_compress(rgb: torch.Tensor) -> torch.Tensor:
    """Bring linear BT.709 RGB with negative components (colours outside BT.709) onto the gamut
    boundary by moving each such pixel towards grey at constant luminance and hue, just far
    enough that its smallest component is 0 (in-gamut pixels are unchanged). Unlike clipping
    each channel, this keeps luminance and hue.

    Example:
        >>> y = gamut_compress(torch.tensor([1.2, 0.5, -0.1]).view(3, 1, 1))
        >>> float(y.min()), round(float((y.flatten() * torch.tensor([0.2126, 0.7152, 0.0722])).sum()), 4)
        (0.0, 0.6055)
    """
    _check(rgb)
    y = _luma(rgb, LUMA_709).clamp(min=0.0)
    low = rgb.amin(dim=-3, keepdim=True)
    # The fraction of saturation kept: 1 in gamut, y / (y - low) when low < 0.
    keep = torch.where(low < 0, y / (y - low).clamp(min=1e-12), torch.ones_like(low))
    return torch.where(low < 0, (y + keep * (rgb - y)).clamp(min=0.0), rgb)


def bt2390_eetf(nits: torch.Tensor, source_peak: float = 1000.0,
                target_peak: float = 100.0) -> torch.Tensor:
    """BT.2390 EETF (black level 0): display light in cd/m2 mastered up to ``source_peak`` ->
    cd/m2 for a display of ``target_peak``. Identity below the knee, a Hermite spline in the PQ
    domain above it, ``source_peak`` -> ``target_peak``; values above ``source_peak`` clip.

    Example:
        >>> bt2390_eetf(torch.tensor([1.0, 1000.0, 4000.0])).round()
        tensor([  1., 100., 100.])
    """
    if target_peak >= source_peak:
        return nits.clamp(0.0, source_peak)
    src = float(pq_inverse_eotf(torch.tensor(source_peak, dtype=torch.float64)))
    max_lum = float(pq_inverse_eotf(torch.tensor(target_peak, dtype=torch.float64))) / src
    ks = 1.5 * max_lum - 0.5
    e1 = (pq_inverse_eotf(nits) / src).clamp(0.0, 1.0)
    t = ((e1 - ks) / (1.0 - ks)).clamp(min=0.0)
    t2, t3 = t * t, t * t * t
    spline = (2 * t3 - 3 * t2 + 1) * ks + (t3 - 2 * t2 + t) * (1 - ks) + (-2 * t3 + 3 * t2) * max_lum
    e2 = torch.where(e1 < ks, e1, spline)
    return pq_eotf(e2 * src)


def tone_map(rgb_nits: torch.Tensor, source_peak: float = 1000.0,
             target_peak: float = 100.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Compress highlights of linear RGB in cd/m2 (*, 3, H, W) with :func:`bt2390_eetf` applied
    to each pixel's largest component, scaling the three alike (hue and saturation kept).
    Returns ``(mapped, ratio)``; ``ratio`` (*, 1, H, W) is mapped / input (1 below the knee).

    Example:
        >>> out, ratio = tone_map(torch.tensor([1000.0, 500.0, 10.0]).view(3, 1, 1))
        >>> out.flatten().round(), round(float(ratio), 4)
        (tensor([100.,  50.,   1.]), 0.1)
    """
    _check(rgb_nits)
    rgb = rgb_nits.clamp(min=0.0)
    peak = rgb.amax(dim=-3, keepdim=True)
    ratio = torch.where(peak > 0, bt2390_eetf(peak, source_peak, target_peak) / peak.clamp(min=1e-12),
                        torch.ones_like(peak))
    return rgb * ratio, ratio


# ---------------------------------------------------------------- the whole conversion
def hdr_to_display(signal: torch.Tensor, transfer: str, peak: float = 1000.0) -> torch.Tensor:
    """HLG or PQ BT.2020 signal (*, 3, H, W) -> linear BT.2020 display light in cd/m2 (HLG on a
    nominal display of ``peak`` cd/m2; PQ is absolute).

    Example:
        >>> hdr_to_display(torch.full((3, 1, 1), 0.75), "HLG").flatten().round()  # BT.2408 white
        tensor([203., 203., 203.])
    """
    _check(signal)
    if transfer == "HLG":
        return hlg_ootf(hlg_inverse_oetf(signal), peak)
    if transfer == "PQ":
        return pq_eotf(signal)
    raise ValueError(f"transfer must be 'HLG' or 'PQ', got {transfer!r}")


def hdr_to_sdr(signal: torch.Tensor, transfer: str, *, peak: float = 1000.0,
               sdr_white: float = 100.0) -> tuple[torch.Tensor, torch.Tensor]:
    """HLG/PQ BT.2020 signal (*, 3, H, W) in [0, 1] -> SDR BT.709 signal in [0, 1], in linear
    light: inverse OETF + OOTF (HLG, ``peak`` cd/m2 display) or EOTF (PQ), BT.2020 -> BT.709 with
    :func:`gamut_compress`, :func:`tone_map` of highlights above ``sdr_white`` (from ``peak``,
    the HLG display or the PQ mastering peak), ``sdr_white`` cd/m2 -> 1.0, :func:`bt1886_inverse_eotf`.
    Returns ``(sdr, ratio)``, ``ratio`` the per-pixel tone-map factor (for :func:`sdr_to_hlg`).

    Example:
        >>> sdr, _ = hdr_to_sdr(torch.tensor([0.0, 0.2, 0.508078]).view(1, 1, 3).expand(3, 1, 3), "PQ")
        >>> sdr[0].flatten()  # 0, 2.4 cd/m2 (below the knee: exact), 100 cd/m2 (compressed)
        tensor([0.0000, 0.2125, 0.8591])
    """
    display = hdr_to_display(signal, transfer, peak)
    rgb = gamut_compress(bt2020_to_bt709(display))
    mapped, ratio = tone_map(rgb, peak, sdr_white)
    return bt1886_inverse_eotf(mapped / sdr_white), ratio


def sdr_to_hlg(sdr: torch.Tensor, ratio: torch.Tensor, *, peak: float = 1000.0,
               sdr_white: float = 100.0) -> torch.Tensor:
    """Back from the SDR working space to an HLG BT.2020 signal, keeping highlights: the SDR
    signal (e.g. the model's output) is linearised, divided by the tone map's per-pixel
    ``ratio`` from :func:`hdr_to_sdr` of the same frame (so a pixel the model left alone gets its
    original HDR light back, and the model's change is applied as a gain in linear light), then
    BT.709 -> BT.2020, HLG inverse OOTF for a ``peak`` cd/m2 display and the HLG OETF. Colours the
    gamut mapping moved inside BT.709 stay there.

    Example:
        >>> x = torch.linspace(0, 1, 16).view(1, 1, 4, 4).expand(1, 3, 4, 4)  # greys to HLG peak
        >>> sdr, ratio = hdr_to_sdr(x, "HLG")
        >>> float((sdr_to_hlg(sdr, ratio) - x).abs().max()) < 1e-3
        True
    """
    _check(sdr)
    linear = bt1886_eotf(sdr) * sdr_white / ratio.clamp(min=1e-6)
    display = bt709_to_bt2020(linear).clamp(0.0, peak)
    return hlg_oetf(hlg_inverse_ootf(display, peak)).clamp(0.0, 1.0)


__all__ = [
    "bt1886_eotf", "bt1886_inverse_eotf", "bt2020_to_bt709", "bt2390_eetf", "bt709_to_bt2020",
    "gamut_compress", "hdr_to_display", "hdr_to_sdr", "hlg_gamma", "hlg_inverse_oetf",
    "hlg_inverse_ootf", "hlg_oetf", "hlg_ootf", "pq_eotf", "pq_inverse_eotf", "sdr_to_hlg",
    "tone_map",
]
