"""Exact chunked inference: the output of the whole-frame forward pass, in less memory.

Tiling a Restormer into independent tiles is only approximate: MDTA attends over channels with
statistics of the *whole* feature map (the q·kᵀ Gram matrix and the L2 norms of q and k are sums
over all pixels), so a tile sees different attention than the frame (~37 dB on 1280x720). What
makes Restormer expensive, though, is not those statistics but the wide per-block intermediates:
3C channels of q/k/v and 2 x 2.66 x C channels inside the GDFN, at every pixel.

This module owns the chunked execution of one stage (:func:`chunked_stage_runner`); the U-Net
wiring and the guidance hook are the model's own (:meth:`Restormer.forward_padded` takes the stage
runner). :func:`chunked_forward` keeps only the block-level C-channel maps for the whole frame, and
runs every ``TransformerBlock`` in spatial chunks with a 1-pixel halo (each 3x3 depthwise conv needs one pixel of context; at the frame
border the convs' own zero padding applies, exactly as in the whole-frame pass):

* LayerNorm, 1x1 convs, GELU gate: per pixel, chunk freely.
* MDTA in two passes. Pass 1 accumulates, per (batch, head), Σ q kᵀ, Σ q² and Σ k² over the
  chunks in float32; the attention ``softmax(Gram / (‖q‖ ‖k‖ᵀ) * temperature)`` is then the
  frame's own (``F.normalize``'s ``max(norm, 1e-12)`` included). Pass 2 applies it to v chunk by
  chunk, with ``project_out`` and the residual.
* GDFN: chunk with halo.

Guidance hooks run on the full level maps, so DINO guidance (which pools globally) is exact too.
The result equals ``model(x, dino_maps)`` up to float rounding (≤ 1e-4 in fp32)::

    y = chunked_forward(model, frames, dino_maps=maps, chunk=256)   # == model(frames, maps)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vidllie.models.guided_restormer import GuidedRestormer, Region
from vidllie.models.restormer import GDFN, MDTA, Restormer, StageRunner, TransformerBlock

Box = tuple[int, int, int, int]  # (y0, y1, x0, x1)

# F.normalize's default eps: it divides by max(‖x‖, eps).
_NORMALIZE_EPS = 1e-12


def _boxes(h: int, w: int, chunk: int) -> Iterator[Box]:
    for y0 in range(0, h, chunk):
        for x0 in range(0, w, chunk):
            yield y0, min(y0 + chunk, h), x0, min(x0 + chunk, w)


def _with_halo(x: torch.Tensor, box: Box, halo: int = 1) -> tuple[torch.Tensor, tuple[slice, slice]]:
    """The box grown by ``halo`` pixels inside the frame, and the slices that crop it back.

    Where the box touches the frame border no halo is taken, so a 3x3 conv with ``padding=1`` on
    the returned region pads with zeros there exactly as it does on the whole frame; elsewhere the
    halo supplies the real neighbours and the (wrong) halo outputs are cropped away.
    """
    h, w = x.shape[-2:]
    y0, y1, x0, x1 = box
    hy0, hy1, hx0, hx1 = max(y0 - halo, 0), min(y1 + halo, h), max(x0 - halo, 0), min(x1 + halo, w)
    crop = (slice(y0 - hy0, y1 - hy0), slice(x0 - hx0, x1 - hx0))
    return x[..., hy0:hy1, hx0:hx1], crop


def _qkv_part(attn: MDTA, x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Channels ``lo:hi`` of ``attn.qkv_dwconv(attn.qkv(x))`` without computing the others.

    Both convs act on each output channel separately (1x1, then depthwise), so slicing their
    weights gives exactly those channels: pass 1 needs only q and k, pass 2 only v.
    """
    qkv, dw = attn.qkv, attn.qkv_dwconv
    t = F.conv2d(x, qkv.weight[lo:hi], None if qkv.bias is None else qkv.bias[lo:hi])
    return F.conv2d(t, dw.weight[lo:hi], None if dw.bias is None else dw.bias[lo:hi], padding=1, groups=hi - lo)


def _into(out: torch.Tensor | None, like: torch.Tensor, value: torch.Tensor, box: Box) -> torch.Tensor:
    """Write ``value`` into ``box`` of ``out`` (allocated on first use like ``like``).

    The dtype is the one the whole-frame ``x + f(x)`` would have (autocast may make them differ).
    """
    if out is None:
        out = torch.empty_like(like, dtype=torch.result_type(like, value))
    y0, y1, x0, x1 = box
    out[..., y0:y1, x0:x1] = value
    return out


def _mdta_residual(block: TransformerBlock, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """``x + block.attn(block.norm1(x))`` chunk by chunk, with the frame's attention."""
    attn: MDTA = block.attn
    b, c, h, w = x.shape
    heads = attn.num_heads
    ch = c // heads
    boxes = list(_boxes(h, w, chunk))

    # Pass 1: frame-wide statistics of q and k, float32 even under autocast (sums over millions
    # of pixels would lose the small terms in half precision).
    gram = x.new_zeros(b, heads, ch, ch, dtype=torch.float32)
    sq = x.new_zeros(b, heads, ch, dtype=torch.float32)
    sk = x.new_zeros(b, heads, ch, dtype=torch.float32)
    for box in boxes:
        region, crop = _with_halo(x, box)
        qk = _qkv_part(attn, block.norm1(region), 0, 2 * c)[..., crop[0], crop[1]]  # (B, 2C, h, w)
        q, k = qk.float().reshape(b, 2, heads, ch, -1).unbind(1)  # (B, heads, C/heads, h*w) each
        gram += q @ k.transpose(-2, -1)
        sq += q.square().sum(-1)
        sk += k.square().sum(-1)
    # normalize(q) · normalize(k) = q·k / (max(‖q‖, eps) max(‖k‖, eps))
    nq = sq.sqrt().clamp_min(_NORMALIZE_EPS)
    nk = sk.sqrt().clamp_min(_NORMALIZE_EPS)
    weights = (gram / (nq[..., :, None] * nk[..., None, :]) * attn.temperature.float()).softmax(dim=-1)

    # Pass 2: the (B, heads, C/h, C/h) attention applied to v, chunk by chunk.
    out = None
    for box in boxes:
        region, crop = _with_halo(x, box)
        v = _qkv_part(attn, block.norm1(region), 2 * c, 3 * c)[..., crop[0], crop[1]]  # (B, C, h, w)
        hh, ww = v.shape[-2:]
        mixed = weights.to(v.dtype) @ v.reshape(b, heads, ch, hh * ww)  # (B, heads, C/heads, h*w)
        delta = attn.project_out(mixed.reshape(b, c, hh, ww))
        y0, y1, x0, x1 = box
        out = _into(out, x, x[..., y0:y1, x0:x1] + delta, box)
    return out


def _gdfn_residual(block: TransformerBlock, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """``x + block.ffn(block.norm2(x))`` chunk by chunk (only the halo is recomputed)."""
    ffn: GDFN = block.ffn
    out = None
    for box in _boxes(*x.shape[-2:], chunk):
        region, crop = _with_halo(x, box)
        # Module calls (not functional) so forward hooks on project_in / dwconv see the chunks.
        hidden = ffn.dwconv(ffn.project_in(block.norm2(region)))[..., crop[0], crop[1]]  # (B, 2*hid, h, w)
        x1, x2 = hidden.chunk(2, dim=1)
        delta = ffn.project_out(F.gelu(x1) * x2)  # (B, C, h, w)
        y0, y1, x0, x1_ = box
        out = _into(out, x, x[..., y0:y1, x0:x1_] + delta, box)
    return out


def chunked_block(block: TransformerBlock, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """``block(x)`` for a (B, C, H, W) map, never holding more than a chunk of its internals."""
    return _gdfn_residual(block, _mdta_residual(block, x, chunk), chunk)


def chunked_stage_runner(chunk: int) -> StageRunner:
    """A ``run_stage`` for :meth:`Restormer.forward_padded` that runs every block of a stage in
    ``chunk``-pixel chunks (feature pixels, the same at every level: deeper levels have more
    channels but 4x fewer pixels per level, so their chunks cost no more in total)."""

    def run_stage(stage: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        for block in stage:
            x = chunked_block(block, x, chunk)
        return x

    return run_stage


def chunked_forward(
    model: GuidedRestormer | Restormer,
    x: torch.Tensor,
    dino_maps: Sequence[torch.Tensor] | None = None,
    chunk: int = 256,
    region: Region | None = None,
) -> torch.Tensor:
    """``model(x, dino_maps)`` computed in spatial chunks: same output, a fraction of the memory.

    Args:
        model: a :class:`GuidedRestormer` (or a bare :class:`Restormer`, then ``dino_maps`` must
            be ``None``).
        x: (B, 3, H, W) frames in [0, 1], any H and W.
        dino_maps: DINO maps for the same frames, as for ``model(x, dino_maps)``.
        chunk: chunk side in input pixels; a chunk covers ``ceil(chunk / pixel_unshuffle)``
            feature pixels per side at every level. Memory is about the frame's C-channel stage
            maps plus one chunk's block internals; the output does not depend on it.
        region: ``(top, left, frame_height, frame_width)`` when ``x`` is a tile of the frame
            the maps were computed on, as for :meth:`GuidedRestormer.forward`.

    Returns:
        (B, 3, H, W), not clamped; equal to ``model(x, dino_maps)`` up to float rounding.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if isinstance(model, GuidedRestormer):
        net = model.restormer
    elif isinstance(model, Restormer):
        if dino_maps is not None:
            raise ValueError("a bare Restormer takes no DINO maps")
        net = model
    else:
        raise TypeError(f"chunked_forward needs a GuidedRestormer or Restormer, got {type(model).__name__}")
    run_stage = chunked_stage_runner(math.ceil(chunk / net.config.pixel_unshuffle))
    # The model's own guidance hook, applied to the full level maps (so the guidance's global
    # pooling and cross-attention see the whole frame), and the body's own wiring.
    hook = None if net is model else model.level_hook(dino_maps, (x.shape[-2], x.shape[-1]), region)
    return net(x, level_hook=hook, run_stage=run_stage)


__all__ = ["chunked_block", "chunked_forward", "chunked_stage_runner"]
