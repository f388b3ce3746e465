"""Colour and luma helpers on (B, 3, H, W) float tensors in [0, 1] (kornia first).

Shared by the enhance pipeline and training; no I/O, no state.
"""

from __future__ import annotations

import kornia
import torch

# BT.709 luma weights (sRGB primaries); applied to gamma-encoded R'G'B' this is Y'.
BT709_LUMA = (0.2126, 0.7152, 0.0722)


def check_image(x: torch.Tensor, name: str = "image") -> None:
    """Raise ``ValueError`` unless ``x`` is a floating (B, 3, H, W) tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (B, 3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating tensor, got {x.dtype}")


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values in [0, 1] -> linear light (IEC 61966-2-1 curve, via kornia).

    Example:
        >>> srgb_to_linear(torch.full((1, 3, 1, 1), 0.5)).flatten()[0].item()  # doctest: +ELLIPSIS
        0.214...
    """
    check_image(x)
    return kornia.color.rgb_to_linear_rgb(x.clamp(0.0, 1.0))


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Linear light in [0, 1] -> sRGB-encoded values (values outside [0, 1] are clipped first).

    Example:
        >>> linear_to_srgb(torch.full((1, 3, 1, 1), 0.214)).flatten()[0].item()  # doctest: +ELLIPSIS
        0.49...
    """
    check_image(x)
    return kornia.color.linear_rgb_to_rgb(x.clamp(0.0, 1.0))


def luma(x: torch.Tensor) -> torch.Tensor:
    """BT.709 luma Y' of gamma-encoded RGB: (B, 3, H, W) -> (B, 1, H, W).

    Example:
        >>> luma(torch.ones(2, 3, 4, 4)).shape
        torch.Size([2, 1, 4, 4])
    """
    check_image(x)
    if x.dtype in (torch.float32, torch.float64) or x.is_cuda:
        # A contraction over the channels: no (B, 3, H, W) temporary. On the 2-core CPU: 4-8x
        # faster than multiply-and-sum on channels-last frames (the pipeline's); a 1x1 conv2d was
        # as fast with one thread but 14 ms with two on channels-first maps (docs/benchmarks.md).
        return torch.einsum("bchw,c->bhw", x, x.new_tensor(BT709_LUMA)).unsqueeze(1)
    w = x.new_tensor(BT709_LUMA).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def mean_luma(x: torch.Tensor) -> torch.Tensor:
    """Mean BT.709 luma per image: (B, 3, H, W) -> (B,) in the units of ``x``.

    Luma is linear in the channels, so this weights the channel means: no luma map (2.5x faster
    on a channels-last frame).

    Example:
        >>> round(mean_luma(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4)).item(), 4)
        0.2126
    """
    check_image(x)
    return (x.mean(dim=(2, 3)) * x.new_tensor(BT709_LUMA)).sum(dim=1)


def apply_gain(x: torch.Tensor, gain: torch.Tensor, knee: float = 0.5) -> torch.Tensor:
    """Brightness gain per image that never clips: (B, 3, H, W) in [0, 1], gain (B,) -> (B, 3, H, W).

    Gains <= 1 multiply. With a gain g > 1 each pixel is scaled by one factor (its colour ratios
    are kept) that takes its largest channel m to ``g m`` up to ``knee`` and then rolls off
    smoothly (same slope at the knee) to reach 1 only at m = 1: a pixel below 1 stays below 1. A
    plain ``(x * g).clamp(0, 1)`` turns a bright but unclipped surface white.

    Example:
        >>> x = torch.tensor([0.0, 0.1, 0.2, 0.5, 0.95, 1.0]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
        >>> [round(v, 3) for v in apply_gain(x, torch.tensor([2.0]))[0, 0, 0].tolist()]
        [0.0, 0.2, 0.4, 0.8, 0.988, 1.0]
    """
    check_image(x)
    if not 0.0 <= knee < 1.0:
        raise ValueError(f"knee must be in [0, 1), got {knee}")
    gain = gain.to(x.dtype).view(-1, 1, 1, 1)
    if x.device.type == "cpu" and bool((gain <= 1.0).all()):
        # Nothing can clip: the plain product (on a CPU the check costs no device sync).
        return x * gain
    up = gain.clamp(min=1.0)
    start = knee / up  # the input level that reaches the knee
    slope = (up - knee) / (1.0 - knee)  # keeps the curve's slope g at the knee
    # The largest channel; three slices are ~2x faster than amax on a channels-last frame.
    peak = torch.maximum(torch.maximum(x[:, 0:1], x[:, 1:2]), x[:, 2:3])  # (B, 1, H, W)
    u = ((peak - start) / (1.0 - start)).clamp_(min=0.0)  # 0 up to the knee ... 1 at white
    top = knee + (1.0 - knee) * slope * u / (1.0 + (slope - 1.0) * u)  # knee below it
    # Below the knee top / peak >= g (top = knee there), above it the concave curve stays under
    # g * peak: the minimum picks the right branch. Gains < 1 (up = 1, top = peak) just multiply.
    factor = torch.minimum(up, top / peak.clamp(min=1e-6)) * (gain / up)
    # peak * factor <= 1 by construction; the in-place clamp only removes rounding (and costs a
    # fraction of an out-of-place one on a channels-last frame).
    return (x * factor).clamp_(0.0, 1.0)


def quantize(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Round values in [0, 1] to ``2**bits`` levels (what an 8-bit file stores).

    Example:
        >>> round(quantize(torch.tensor([0.5014]), 8).item() * 255, 3)
        128.0
    """
    levels = float(2**bits - 1)
    return torch.round(x.clamp(0.0, 1.0) * levels) / levels


def to_uint8_image(x: torch.Tensor) -> "torch.Tensor":
    """(3, H, W) or (1, 3, H, W) float in [0, 1] -> (H, W, 3) uint8 tensor."""
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ValueError(f"expected a single image, got batch {x.shape[0]}")
        x = x[0]
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected (3, H, W), got {tuple(x.shape)}")
    return (x.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).contiguous()


def from_uint8_image(a) -> torch.Tensor:
    """(H, W, 3) uint8 array/tensor -> (3, H, W) float32 in [0, 1]."""
    t = torch.as_tensor(a)
    if t.ndim != 3 or t.shape[2] != 3 or t.dtype != torch.uint8:
        raise ValueError(f"expected (H, W, 3) uint8, got {tuple(t.shape)} {t.dtype}")
    return t.permute(2, 0, 1).float().div_(255.0)
