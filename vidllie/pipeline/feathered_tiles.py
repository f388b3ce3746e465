"""Independent tiles with feathered blending (approximate): the last-resort fallback for frames
too large. Exact chunks (the ``chunk`` option) are :mod:`vidllie.models.chunked`'s; this module
owns the approximate path: tile layout, feather ramps, cropping DINO maps per tile.

The pipeline tiles Restormer models exactly with :func:`vidllie.models.chunked.chunked_forward`
(same output as untiled); independent tiles are only approximate for them (MDTA's attention uses
statistics of its whole input, ~37 dB on 1280x720) and are used when even the chunked path's
full-frame stage maps do not fit, or for models that are not Restormers.

Tiles overlap; inside an overlap the two tiles' outputs are blended with complementary linear
ramps (they sum to one), so the result changes smoothly from one tile to the next and no seam
shows. Each tile's outermost overlap pixels (which saw padding instead of their neighbours) get no
weight at all. Tile starts are aligned to the model's size multiple so no tile needs extra padding and
DINO maps can be cropped on the same grid::

    y = feathered_forward(lambda t, g: model(t, g), x, tile=512, overlap=64, align=model.size_multiple)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import kornia
import torch

TileFn = Callable[[torch.Tensor, "list[torch.Tensor] | None"], torch.Tensor]


def tile_spans(length: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` covering ``range(length)`` with as few tiles of at most ~``tile``
    pixels as give every neighbour pair ``overlap`` pixels in common.

    Tiles are made equal (smaller than ``tile`` when that suffices) so only neighbours overlap;
    starts are multiples of ``align`` (overlaps may grow or shrink by less than ``align``); the
    last tile ends at ``length``.

    >>> tile_spans(1000, 512, 64, 8)
    [(0, 376), (312, 688), (624, 1000)]
    """
    if tile <= 0 or overlap < 0:
        raise ValueError(f"tile must be > 0 and overlap >= 0, got {tile}, {overlap}")
    if 3 * overlap >= tile:
        raise ValueError(f"tile overlap ({overlap}) must be less than a third of the tile ({tile})")
    if length <= tile:
        return [(0, length)]
    n = math.ceil((length - overlap) / (tile - overlap))
    size = math.ceil(((length - overlap) / n + overlap) / align) * align
    step = (length - size) / (n - 1)
    starts = [int(k * step) // align * align for k in range(n)]
    spans = [(s, min(s + size, length)) for s in starts]
    spans[-1] = (starts[-1], length)
    return spans


def feather_ramp(spans: list[tuple[int, int]], index: int, *, feather: bool = True) -> torch.Tensor:
    """1-D blending weights of tile ``index`` over its own span.

    Over each overlap of n pixels the two tiles cross-fade linearly and their weights sum to one;
    the first and last n/4 pixels of the overlap are left wholly to the tile for which they are
    not at the border, since a tile's outermost pixels lack context (padding). ``feather=False``
    gives flat weights (plain averaging, which leaves a step at each tile edge; for comparison).
    """
    start, end = spans[index]
    w = torch.ones(end - start)
    if not feather:
        return w

    def rising(n: int) -> torch.Tensor:
        m = n // 4
        j = torch.arange(n, dtype=torch.float32) + 0.5
        return ((j - m) / max(1, n - 2 * m)).clamp(0.0, 1.0)

    if index > 0:
        n = spans[index - 1][1] - start  # overlap with the previous tile
        if n > 0:
            w[:n] = rising(n)
    if index + 1 < len(spans):
        n = end - spans[index + 1][0]
        if n > 0:
            w[end - start - n :] = 1.0 - rising(n)
    return w


GridFn = Callable[[int, int], "tuple[int, int, float, float]"]


def crop_dino_maps(
    dino_maps: list[torch.Tensor] | None,
    frame_hw: tuple[int, int],
    box: tuple[int, int, int, int],
    grid: GridFn | None = None,
) -> list[torch.Tensor] | None:
    """DINO maps for the tile ``box = (y0, y1, x0, x1)`` of a frame, as if made for the tile.

    ``grid(h, w) -> (rows, cols, valid_rows, valid_cols)`` is the DINO token grid of an h x w
    image (:func:`vidllie.models.dino.dino_grid`): ``valid_*`` patches cover the image, the rest
    is padding. The tile gets a map on its own grid, bilinearly sampled from the frame's map at the
    exact frame positions of its cells, so the model maps it back onto the tile's pixels where the
    frame's map would have put it. Without ``grid`` the maps are assumed to cover the frame exactly.
    """
    if dino_maps is None:
        return None
    h, w = frame_hw
    y0, y1, x0, x1 = box
    th, tw = y1 - y0, x1 - x0
    rows, cols = dino_maps[0].shape[-2:]
    if grid is not None:
        valid_r, valid_c = grid(h, w)[2:]
        rows_t, cols_t, valid_rt, valid_ct = grid(th, tw)
    else:
        valid_r, valid_c = float(rows), float(cols)
        valid_rt, valid_ct = rows * th / h, cols * tw / w
        rows_t, cols_t = math.ceil(valid_rt), math.ceil(valid_ct)
    device = dino_maps[0].device
    # Cell centres of the tile map -> frame pixels -> index coordinates in the frame map.
    ys = (y0 + (torch.arange(rows_t, device=device) + 0.5) * th / valid_rt) * valid_r / h - 0.5
    xs = (x0 + (torch.arange(cols_t, device=device) + 0.5) * tw / valid_ct) * valid_c / w - 0.5
    map_y, map_x = torch.meshgrid(ys.float(), xs.float(), indexing="ij")
    out = []
    for g in dino_maps:
        b = g.shape[0]
        out.append(
            kornia.geometry.transform.remap(
                g, map_x.expand(b, -1, -1), map_y.expand(b, -1, -1),
                mode="bilinear", padding_mode="border", align_corners=True,
            )
        )
    return out


def feathered_forward(
    fn: TileFn,
    x: torch.Tensor,
    tile: int,
    overlap: int,
    *,
    dino_maps: list[torch.Tensor] | None = None,
    grid: GridFn | None = None,
    align: int = 8,
    feather: bool = True,
) -> torch.Tensor:
    """Apply ``fn(tile, dino_maps_crop)`` tile by tile over ``x`` (B, C, H, W) and blend.

    ``dino_maps`` (for the whole frame) are cropped per tile with :func:`crop_dino_maps`.
    Returns ``fn``'s output for the whole frame, (B, C_out, H, W) in float32.

    Example:
        >>> y = feathered_forward(lambda t, g: t * 2, torch.rand(1, 3, 300, 500), 128, 16)
        >>> y.shape
        torch.Size([1, 3, 300, 500])
    """
    if x.ndim != 4:
        raise ValueError(f"x must be (B, C, H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    tile = max(align, tile // align * align)
    overlap = min(overlap, (tile - 1) // 3)
    ys, xs = tile_spans(h, tile, overlap, align), tile_spans(w, tile, overlap, align)
    if len(ys) == 1 and len(xs) == 1:
        return fn(x, dino_maps).float()
    out = acc = None
    for iy, (y0, y1) in enumerate(ys):
        wy = feather_ramp(ys, iy, feather=feather).to(x.device)
        for ix, (x0, x1) in enumerate(xs):
            wx = feather_ramp(xs, ix, feather=feather).to(x.device)
            crop = crop_dino_maps(dino_maps, (h, w), (y0, y1, x0, x1), grid)
            y = fn(x[..., y0:y1, x0:x1], crop).float()
            if out is None:
                out = torch.zeros(x.shape[0], y.shape[1], h, w, device=x.device)
                acc = torch.zeros(1, 1, h, w, device=x.device)
            weight = (wy[:, None] * wx[None, :])[None, None]
            out[..., y0:y1, x0:x1] += y * weight
            acc[..., y0:y1, x0:x1] += weight
    return out / acc
