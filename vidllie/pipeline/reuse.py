"""Change-driven inference: run the network only where the picture changed (fixed cameras).

Most of a surveillance frame is the same as the frame before; only the noise moves there. The
frame is cut into square *regions*; each region remembers the luma of the frame its output was
computed from (a grid of ``cell``-pixel gamma-luma cells, :func:`vidllie.pipeline.scene.luma_cells`
— area means, so sensor noise averages out). A new frame is compared with those references:

* a region whose cells changed (after removing the frame's median change, so a slow global drift
  does not mark everything) is recomputed as a *tile*: the region plus a ``halo`` of context on
  each side. All tiles of a batch run through the model in one batched call; each tile's output is
  matched to the previous output on its halo's unchanged pixels (:func:`match_colour`, the tile's
  own exposure estimate differs from the whole frame's) and pasted with weight 1 on its region and a linear ramp over the middle of the halo, so it fades
  into the reused output around it (no seam); overlapping tiles are averaged;
* every other region keeps the previous output (the reference is *not* moved, so slow changes
  accumulate until they count);
* the whole frame is recomputed (and every reference reset) on the first frame, at a scene cut,
  after ``max_age`` frames, on a global illumination change (the median cell change exceeds
  ``global_threshold``: lights switched on, auto-exposure, IR switch) and when the tiles would
  cost nearly as much as the frame (a moving camera: it falls back at once, frame by frame).

The same decisions drive the DINO cache (:class:`~vidllie.pipeline.dino_cache.DinoCache`): its
key frames are the full refreshes, the regions reuse the key's maps; one mechanism, one state.

The default model's MDTA attention is frame-global (channel attention over the whole input), so a
tile's output is not exactly the whole-frame output: mostly a per-channel gain/offset, which the
colour match on the halo removes; the rest is bounded by the periodic full refresh (measured in
docs/benchmarks.md)::

    reuse = RegionReuse(region=32, halo=48, tile=256, align=model.size_multiple)
    plan = reuse.plan(frames, cuts)                       # decisions for a batch, state advanced
    y = reuse.run(frames, plan, lambda t, maps: model(t), dino_maps)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from vidllie.pipeline.feathered_tiles import crop_dino_maps
from vidllie.pipeline.scene import luma_cells

RunFn = Callable[[torch.Tensor, "list[torch.Tensor] | None"], torch.Tensor]
GridFn = Callable[[int, int], "tuple[int, int, float, float]"]
Box = tuple[int, int, int, int]  # (y0, y1, x0, x1)

REASONS = ("first", "cut", "age", "global", "moving")


@dataclass
class ReusePlan:
    """What to compute for each frame of a batch.

    ``full[i]``: whole frame i runs (``reasons[i]`` says why); otherwise ``tiles[i]`` lists the
    ``(tile_box, region_box)`` pairs to recompute (empty: the previous output is reused whole).
    """

    full: list[bool]
    reasons: list[str | None]
    tiles: list[list[tuple[Box, Box]]] = field(default_factory=list)
    changed: list[torch.Tensor | None] = field(default_factory=list)  # (rows, cols) changed regions


def span(c0: int, c1: int, halo: int, length: int, size: int) -> tuple[int, int]:
    """A window of ``size`` px (or the whole ``length``) around ``[c0, c1)``, shifted into the frame.

    >>> span(0, 64, 32, 360, 128), span(320, 360, 32, 360, 128)
    ((0, 128), (232, 360))
    """
    if size >= length:
        return 0, length
    start = min(max(0, c0 - halo), length - size)
    return start, start + size


def halo_ramp(t0: int, t1: int, c0: int, c1: int, halo: int, device: torch.device | None = None) -> torch.Tensor:
    """1-D paste weights of a tile over ``[t0, t1)`` whose region is ``[c0, c1)``: 1 on the region,
    falling linearly to 0 over the middle half of the halo (the outer quarter, which saw the least
    context, gets none) — but not at the frame border side, where there is no neighbour.

    >>> halo_ramp(0, 16, 4, 12, 4).tolist()
    [0.0, 0.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.25, 0.0]
    """
    p = torch.arange(t0, t1, device=device, dtype=torch.float32) + 0.5
    d = torch.maximum(c0 - p, p - c1).clamp(min=0.0)  # distance outside the region, px
    q = max(1.0, halo / 4)
    return ((halo - q - d) / max(1.0, halo - 2 * q)).clamp(0.0, 1.0)


def match_colour(tile: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor, min_pixels: int = 256) -> torch.Tensor:
    """Per-channel gain that maps the mean of ``tile`` (1, 3, h, w) onto ``reference``'s over the
    ``mask`` pixels (h, w), applied to the whole tile and clamped to [0, 1].

    The model's attention is frame-global: a tile alone gets another exposure/colour estimate
    than the whole frame, almost entirely a per-channel gain and offset (measured: tile cores at
    24-27 dB against the whole-frame output, 50-54 dB after this gain on the halo ring; an
    affine fit is hardly better there and extrapolates badly from dark rings to bright objects).
    Fewer than ``min_pixels`` unchanged pixels: the tile is returned as is. The gain is kept in
    [0.5, 2] so a bad fit cannot blow up.

    Example:
        >>> t = torch.rand(1, 3, 32, 32)
        >>> torch.allclose(match_colour(t * 0.5, t, torch.ones(32, 32, dtype=torch.bool)), t, atol=1e-5)
        True
    """
    m = mask.to(tile.dtype)
    n = float(m.sum())
    if n < min_pixels:
        return tile
    # Masked means as weighted sums (boolean indexing copies, and is slow on large tiles).
    a = (tile[0] * m).sum((1, 2)) / n  # (3,)
    b = (reference[0] * m).sum((1, 2)) / n
    gain = (b / a.clamp(min=1e-4)).clamp(0.5, 2.0)
    return (tile * gain.view(1, 3, 1, 1)).clamp(0.0, 1.0)


class RegionReuse:
    """State and decisions of change-driven inference for one stream (see the module docstring).

    Args:
        enabled: False = every frame runs whole (the plan says so; stats still count).
        region: side of a change-detection region in pixels (a multiple of ``cell``).
        halo: context around a tile's core on each side (the core is what the tile writes).
        tile: tile side in pixels (at least ``region + 2 * halo``, a multiple of ``align``); the
            changed regions are covered greedily by tile cores of ``tile - 2 * halo`` px.
        cell: side of a change-detection cell in pixels.
        threshold: gamma-luma change of a cell that marks its region changed.
        global_threshold: median cell change that forces a full refresh (illumination change).
        max_age: frames after which the whole frame is recomputed.
        full_share: recompute the whole frame when the tiles' pixels exceed this share of it.
    """

    def __init__(
        self, *, enabled: bool = True, region: int = 32, halo: int = 48, tile: int = 256, cell: int = 16, threshold: float = 0.03,
        global_threshold: float = 0.03, max_age: int = 30, full_share: float = 0.35, align: int = 8,
    ) -> None:
        if region % cell or region <= 0 or halo < 0 or max_age < 1:
            raise ValueError(f"need region a positive multiple of cell, halo >= 0, max_age >= 1; got {region}, {cell}, {halo}, {max_age}")
        self.enabled = enabled
        self.region, self.halo, self.cell = region, halo, cell
        self.tile = max(math.ceil((region + 2 * halo) / align), tile // align) * align
        self.threshold, self.global_threshold = threshold, global_threshold
        self.max_age, self.full_share = max_age, full_share
        self.reset()
        self.reset_stats()

    def reset(self) -> None:
        """New stream: no reference, no previous output."""
        self._ref: torch.Tensor | None = None  # (1, 1, gh, gw) cells each region was computed from
        self._out: torch.Tensor | None = None  # (1, 3, H, W) last output (clamped model output)
        self._age = 0
        self._pending = 0  # planned frames whose output has not been assembled yet

    def reset_stats(self) -> None:
        self.frames = self.full_frames = self.tile_frames = self.reused_frames = self.tiles_run = 0
        self.pixels_computed = self.pixels_total = 0
        self.refresh_reasons = dict.fromkeys(REASONS, 0)

    def stats(self) -> dict:
        share = self.pixels_computed / self.pixels_total if self.pixels_total else None
        return {
            "enabled": self.enabled,
            "frames": self.frames,
            "full_frames": self.full_frames,
            "tile_frames": self.tile_frames,
            "reused_frames": self.reused_frames,
            "tiles": self.tiles_run,
            "tile_size": self.tile,
            "recomputed_share": None if share is None else round(share, 4),
            "refresh_reasons": dict(self.refresh_reasons),
        }

    # ------------------------------------------------------------------ decisions
    def plan(self, frames: torch.Tensor, cuts: Sequence[bool]) -> ReusePlan:
        """Decide, frame by frame, what to recompute; advances the reference state.

        ``frames`` (B, 3, H, W) in [0, 1]; ``cuts`` the scene-cut flags of the same frames.
        """
        if len(cuts) != frames.shape[0]:
            raise ValueError(f"{len(cuts)} cut flags for {frames.shape[0]} frames")
        h, w = frames.shape[-2:]
        cells = luma_cells(frames, self.cell)  # (B, 1, gh, gw)
        ref = self._ref
        if ref is not None and ref.shape[-2:] != cells.shape[-2:]:
            ref, self._out = None, None
        # Regions as blocks of cells: (rows, cols) of regions on the cell grid.
        k = self.region // self.cell
        plan = ReusePlan(full=[], reasons=[], tiles=[], changed=[])
        cells_cpu = cells.cpu()
        ref = None if ref is None else ref.cpu()
        for i in range(frames.shape[0]):
            cur = cells_cpu[i : i + 1]
            reason = None
            if not self.enabled or ref is None:
                reason = "first" if self.enabled else None
            elif cuts[i]:
                reason = "cut"
            elif self._age >= self.max_age:
                reason = "age"
            changed = None
            if reason is None and self.enabled:
                diff = cur - ref
                median = diff.median()
                if median.abs() > self.global_threshold:
                    reason = "global"
                else:
                    changed = (diff - median).abs() > self.threshold
                    changed = F.max_pool2d(changed.float(), k, k, ceil_mode=True)[0, 0] > 0
            tiles: list[tuple[Box, Box]] = []
            if changed is not None and bool(changed.any()):
                tiles = self._cover(changed, h, w)
                tile_pixels = sum((t[1] - t[0]) * (t[3] - t[2]) for t, _ in tiles)
                if tile_pixels > self.full_share * h * w:
                    reason, tiles = "moving", []
            full = reason is not None or not self.enabled
            plan.full.append(full)
            plan.reasons.append(reason)
            plan.tiles.append(tiles)
            plan.changed.append(changed if tiles else None)
            self.frames += 1
            self.pixels_total += h * w
            if full:
                self.full_frames += 1
                self.pixels_computed += h * w
                if reason is not None:
                    self.refresh_reasons[reason] += 1
                ref = cur.clone()
                self._age = 1
            else:
                self._age += 1
                if tiles:
                    self.tile_frames += 1
                    self.tiles_run += len(tiles)
                    self.pixels_computed += sum((t[1] - t[0]) * (t[3] - t[2]) for t, _ in tiles)
                    for _, (cy0, cy1, cx0, cx1) in tiles:
                        g = self.cell
                        ref[..., cy0 // g : math.ceil(cy1 / g), cx0 // g : math.ceil(cx1 / g)] = cur[
                            ..., cy0 // g : math.ceil(cy1 / g), cx0 // g : math.ceil(cx1 / g)
                        ]
                else:
                    self.reused_frames += 1
        self._ref = None if ref is None else ref.to(frames.device)
        return plan

    def _cover(self, changed: torch.Tensor, h: int, w: int) -> list[tuple[Box, Box]]:
        """Fixed-size tiles whose cores (the tile less its halo) cover every changed region:
        greedy, row-major — each tile's core starts at the first uncovered changed region."""
        left = changed.clone()
        r, core = self.region, self.tile - 2 * self.halo
        k = max(1, core // r)
        tiles: list[tuple[Box, Box]] = []
        while bool(left.any()):
            ry, rx = (int(v) for v in left.nonzero()[0])
            # Centre the core's columns on the changed run that starts here (more cover per tile).
            run = int(left[ry, rx : rx + k].long().cumprod(0).sum())
            rx0 = max(0, min(rx - (k - run) // 2, left.shape[1] - k))
            left[ry : ry + k, rx0 : rx0 + k] = False
            cy0, cy1 = ry * r, min(h, (ry + k) * r)
            cx0, cx1 = rx0 * r, min(w, (rx0 + k) * r)
            ty, tx = span(cy0, cy1, self.halo, h, self.tile), span(cx0, cx1, self.halo, w, self.tile)
            tiles.append(((ty[0], ty[1], tx[0], tx[1]), (cy0, cy1, cx0, cx1)))
        return tiles

    # ------------------------------------------------------------------ running
    def run(
        self, frames: torch.Tensor, plan: ReusePlan, run: RunFn, dino_maps: list[torch.Tensor] | None = None,
        grid: GridFn | None = None,
    ) -> torch.Tensor:
        """The batch's outputs: whole frames where planned, tiles blended into the previous output
        elsewhere. ``run(x, maps)`` is the model on a batch (B, 3, h, w) -> (B, 3, h, w); its
        output is clamped to [0, 1] here. Returns (B, 3, H, W) float32."""
        b, _, h, w = frames.shape
        # In the frames' memory layout (channels-last in the pipeline): a channels-first result
        # makes every later stage several times slower on a CPU.
        out = torch.empty_like(frames, dtype=torch.float32)
        full = [i for i in range(b) if plan.full[i]]
        if full:
            maps = None if dino_maps is None else [m[full] for m in dino_maps]
            out[full] = run(frames[full], maps).float().clamp_(0.0, 1.0)
        jobs = [(i, t, r) for i in range(b) if not plan.full[i] for t, r in plan.tiles[i]]
        tiles_out = None
        if jobs:
            crops = torch.stack([frames[i, :, t[0] : t[1], t[2] : t[3]] for i, t, _ in jobs])
            maps = None
            if dino_maps is not None:
                parts = [crop_dino_maps([m[i : i + 1] for m in dino_maps], (h, w), t, grid) for i, t, _ in jobs]
                maps = [torch.cat(layer) for layer in zip(*parts)]
            tiles_out = run(crops, maps).float().clamp_(0.0, 1.0)
        j = 0
        prev = self._out
        for i in range(b):
            if plan.full[i] or prev is None:
                if not plan.full[i]:  # no previous output (cannot happen after a planned first frame)
                    raise RuntimeError("reuse planned tiles without a previous output")
                prev = out[i : i + 1]
                continue
            if not plan.tiles[i]:  # nothing changed: the previous output as is
                out[i : i + 1] = prev
                prev = out[i : i + 1]
                continue
            mine = [(t, c) for k, t, c in jobs if k == i]
            # Work inside the union of this frame's tiles only; the rest is `prev` as is.
            y0, y1 = min(t[0] for t, _ in mine), max(t[1] for t, _ in mine)
            x0, x1 = min(t[2] for t, _ in mine), max(t[3] for t, _ in mine)
            acc = torch.zeros(1, 3, y1 - y0, x1 - x0, device=frames.device)
            weight = torch.zeros(1, 1, y1 - y0, x1 - x0, device=frames.device)
            base = prev[..., y0:y1, x0:x1]
            # Pixels of unchanged regions: where the previous output is still right.
            r = self.region
            same = ~plan.changed[i].to(frames.device).repeat_interleave(r, 0).repeat_interleave(r, 1)[y0:y1, x0:x1]
            for t, c in mine:
                wy = halo_ramp(t[0], t[1], c[0], c[1], self.halo, frames.device)
                wx = halo_ramp(t[2], t[3], c[2], c[3], self.halo, frames.device)
                wt = (wy[:, None] * wx[None, :])[None, None]
                box = np.s_[..., t[0] - y0 : t[1] - y0, t[2] - x0 : t[3] - x0]
                ring = same[box[1:]].clone()
                ring[c[0] - t[0] : c[1] - t[0], c[2] - t[2] : c[3] - t[2]] = False
                y = match_colour(tiles_out[j : j + 1], base[box], ring)
                acc[box] += y * wt
                weight[box] += wt
                j += 1
            # Where tiles cover fully (weight >= 1) their average; elsewhere they fade into `prev`.
            rest = (1.0 - weight).clamp(min=0.0)
            frame = prev.clone()
            frame[..., y0:y1, x0:x1] = (acc + base * rest) / (weight + rest)
            out[i : i + 1] = frame
            prev = out[i : i + 1]
        self._out = prev.clone()
        return out


__all__ = ["REASONS", "RegionReuse", "ReusePlan", "halo_ramp", "match_colour", "span"]
