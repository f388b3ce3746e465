"""Running the network and DINO on a device within its memory: this module owns the pixel
budget and the out-of-memory ladder.

* Budget (CUDA/MPS): half the device memory over the model's activation bytes per pixel
  (``model.activation_bytes_per_pixel``) caps the batch and, for a frame larger than that, turns
  on exact chunks (:func:`vidllie.models.chunked.chunked_forward`, same output as whole frames).
* Out of memory (``torch.OutOfMemoryError``, MPS OOM): halve the sub-batch (kept for the run),
  then exact chunks from half the frame side down to :data:`MIN_TILE` px, then independent
  feathered tiles (:mod:`vidllie.pipeline.feathered_tiles`, approximate), retrying the same frames
  each time; then ``DeviceError``. No frame is dropped.

    runner = ModelRunner(model, device, torch.float16, chunk=None, tile_overlap=32, batch_size=4)
    y = runner.infer(x, dino_maps)          # (B, 3, H, W) float32, not clamped
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import nn

from vidllie.errors import DeviceError
from vidllie.models.chunked import chunked_forward
from vidllie.models.guided_restormer import GuidedRestormer
from vidllie.pipeline.device import autocast, device_total_memory, empty_cache, is_oom
from vidllie.pipeline.feathered_tiles import feathered_forward

MIN_TILE = 128  # below this the overlaps dominate; an OOM here is reported instead
_MEMORY_FRACTION = 0.5  # share of the device memory the automatic pixel budget may plan for


class ModelRunner:
    """The model (and DINO) on batches already on the device, with the budget and OOM ladder.

    ``model_fn`` is what runs whole frames (the model, or its ``torch.compile`` wrapper);
    ``chunk`` is the user's choice (None automatic, 0 never, N pixels). State adapted on
    out-of-memory errors is kept for the rest of the run.
    """

    def __init__(
        self, model: nn.Module, device: torch.device, dtype: torch.dtype, *, chunk: int | None,
        tile_overlap: int, batch_size: int, model_fn: nn.Module | Callable | None = None,
    ) -> None:
        self.model, self.device, self.dtype = model, device, dtype
        self.model_fn = model_fn if model_fn is not None else model
        self.chunk, self.tile_overlap = chunk, tile_overlap
        self.align = int(getattr(model, "size_multiple", 8))
        self.max_batch = batch_size
        self.oom_size: int | None = None  # chunk or tile side chosen after an OOM
        # Exact chunks until the frame's stage maps alone do not fit (or the model is not a
        # Restormer); then independent feathered tiles.
        self.feathered = not isinstance(model, GuidedRestormer)
        self.oom_retries = 0
        self.pad_batches = device.type == "cuda"  # see infer()

    # ------------------------------------------------------------------ planning
    def piece_size(self, h: int, w: int) -> int | None:
        """Chunk (or tile) side for an h x w frame (None = whole frames); caps the batch to the budget."""
        if self.chunk == 0:
            return None
        if self.oom_size is not None:
            return self.oom_size
        if self.chunk:
            return self.chunk
        total = device_total_memory(self.device)
        bytes_per_pixel = getattr(self.model, "activation_bytes_per_pixel", None)
        if total is None or bytes_per_pixel is None:
            return None  # host memory: no budget, the OOM fallback is the safety net
        elem = 4 if self.dtype is torch.float32 else 2
        budget = int(_MEMORY_FRACTION * total / bytes_per_pixel(elem))  # pixels per model call
        if h * w * self.max_batch > budget:
            self.max_batch = max(1, budget // (h * w))
        if h * w <= budget:
            return None
        if h * w * bytes_per_pixel(elem, chunked=True) > _MEMORY_FRACTION * total:
            self.feathered = True  # even the chunked path's full-frame maps exceed the budget
        side = int(math.sqrt(budget)) // self.align * self.align
        return max(MIN_TILE, side)

    def settings(self) -> dict[str, int | None]:
        """``{"chunk": exact chunk side or None, "tile": feathered tile side or None}`` in effect."""
        size = self.oom_size or self.chunk or None
        return {"chunk": None if self.feathered else size, "tile": size if self.feathered else None}

    # ------------------------------------------------------------------ running
    def _forward(self, x: torch.Tensor, dino_maps: list[torch.Tensor] | None, size: int | None) -> torch.Tensor:
        def fn(t: torch.Tensor, maps: list[torch.Tensor] | None) -> torch.Tensor:
            return self.model_fn(t, dino_maps=maps) if maps is not None else self.model_fn(t)

        with autocast(self.device, self.dtype):
            if size and size >= max(x.shape[-2:]):
                return fn(x, dino_maps).float()  # one piece: the plain forward is the same thing
            if size and not self.feathered:
                # Exact: the same output as whole frames, in the memory of the stage maps + one chunk.
                return chunked_forward(self.model, x, dino_maps, chunk=size).float()
            if size:
                grid = getattr(self.model, "dino_grid", None) if dino_maps is not None else None
                return feathered_forward(
                    fn, x, size, self.tile_overlap, dino_maps=dino_maps, grid=grid, align=self.align
                )
            return fn(x, dino_maps).float()

    def infer(self, x: torch.Tensor, dino_maps: list[torch.Tensor] | None) -> torch.Tensor:
        """The model on a batch, with the out-of-memory ladder (same frames, smaller pieces)."""
        h, w = x.shape[-2:]
        outs: list[torch.Tensor] = []
        i = 0
        while i < x.shape[0]:
            size = self.piece_size(h, w)
            n = min(self.max_batch, x.shape[0] - i)
            maps = None if dino_maps is None else [m[i : i + n] for m in dino_maps]
            piece = x[i : i + n]
            if self.pad_batches and n < self.max_batch:
                # A GPU's first call at a new batch size costs seconds (1.7-3.7 s on an H200);
                # partial batches (scene cuts, change-driven tiles) come in every size, so they
                # are padded to a power of two: a handful of shapes per stream instead of dozens.
                m = min(self.max_batch, 1 << (n - 1).bit_length())
                piece = _pad_batch(piece, m)
                maps = None if maps is None else [_pad_batch(t, m) for t in maps]
            try:
                outs.append(self._forward(piece, maps, size)[:n])
                i += n
            except Exception as err:
                if not is_oom(err):
                    raise
                del err
                maps = None
                empty_cache(self.device)
                self._shrink_after_oom(n, size, h, w)
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def _shrink_after_oom(self, n: int, size: int | None, h: int, w: int) -> None:
        self.oom_retries += 1
        if n > 1:
            self.max_batch = max(1, n // 2)
            warnings.warn(f"out of memory on {self.device}: batch size lowered to {self.max_batch}", UserWarning, stacklevel=5)
            return
        current = size or max(h, w)
        smaller = (current // 2) // self.align * self.align
        too_small = smaller < MIN_TILE or smaller <= 3 * self.tile_overlap
        if too_small and size and not self.feathered:
            # Small chunks still failed: the frame's full-size stage maps are what does not fit.
            # Last resort, independent tiles (each holds only its own maps), from half the frame.
            self.feathered = True
            smaller = (max(h, w) // 2) // self.align * self.align
            too_small = smaller < MIN_TILE or smaller <= 3 * self.tile_overlap
        if too_small:
            raise DeviceError(
                f"out of memory on {self.device} even with one frame in tiles of {current} px; "
                "try --device cpu, --precision fp16 or a smaller model"
            )
        self.oom_size = smaller
        kind = "independent tiles (approximate)" if self.feathered else "chunks (exact)"
        warnings.warn(f"out of memory on {self.device}: tiling frames into {smaller} px {kind}", UserWarning, stacklevel=5)

    def run_dino(self, dino: nn.Module, frames: torch.Tensor) -> list[torch.Tensor]:
        """DINO on ``frames`` with the OOM ladder: halve the sub-batch down to one frame."""
        outs: list[list[torch.Tensor]] = []
        i, step = 0, frames.shape[0]
        while i < frames.shape[0]:
            n = min(step, frames.shape[0] - i)
            try:
                with autocast(self.device, self.dtype):
                    outs.append(dino(frames[i : i + n]))
                i += n
            except Exception as err:
                if not is_oom(err):
                    raise
                del err
                empty_cache(self.device)
                self.oom_retries += 1
                if n == 1:
                    raise DeviceError(
                        f"out of memory on {self.device} running DINO on a single frame; "
                        "try --dino none, --device cpu or a smaller DINO"
                    ) from None
                step = max(1, n // 2)
        if len(outs) == 1:
            return outs[0]
        return [torch.cat(parts) for parts in zip(*outs)]


def _pad_batch(t: torch.Tensor, size: int) -> torch.Tensor:
    """(n, ...) -> (size, ...): the last item repeated (a real input, so no NaN or range surprise)."""
    return torch.cat([t, t[-1:].expand(size - t.shape[0], *t.shape[1:])])
