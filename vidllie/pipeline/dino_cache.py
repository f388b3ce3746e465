"""Reuse DINO features across similar frames.

DINO is the most expensive per-frame guide and its patch features change little between similar
frames. The cache computes DINO on *key frames* only; a following frame reuses the key frame's
features while

- its gamma-corrected luma thumbnail differs from the key frame's by at most ``threshold``
  (mean absolute difference, see :mod:`vidllie.pipeline.scene`),
- the key frame is younger than ``max_age`` frames, and
- no scene cut happened in between.

Otherwise the frame becomes the new key frame. All key frames of a batch go through DINO in one
call::

    cache = DinoCache(dino, threshold=0.02, max_age=30)
    dino_maps = cache(frames, luma_thumbnails(frames), cuts)   # list of (B, C, h, w) maps
    cache.hit_rate
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from vidllie.pipeline.scene import pairwise_distance

DinoFn = Callable[[torch.Tensor], "list[torch.Tensor]"]


class DinoCache:
    """Key-frame cache of DINO maps. ``enabled=False`` computes DINO on every frame."""

    def __init__(self, dino: DinoFn, *, enabled: bool = True, threshold: float = 0.02, max_age: int = 30) -> None:
        if threshold < 0 or max_age < 1:
            raise ValueError(f"need threshold >= 0 and max_age >= 1, got {threshold}, {max_age}")
        self.dino = dino
        self.enabled = enabled
        self.threshold = threshold
        self.max_age = max_age
        self.hits = 0
        self.misses = 0
        self.refresh_reasons = {
            "first": 0, "cut": 0, "changed": 0, "age": 0, "disabled": 0, "global": 0, "moving": 0,
        }
        self.key_frames: list[int] = []  # stream indices of the key frames (for tests and stats)
        self._seen = 0
        self.reset()

    def reset(self) -> None:
        """Forget the key frame (new stream). Counters are kept; see :meth:`reset_stats`."""
        self._key_thumb: torch.Tensor | None = None
        self._key_maps: list[torch.Tensor] | None = None
        self._age = 0

    def reset_stats(self) -> None:
        self.hits = self.misses = self._seen = 0
        self.refresh_reasons = dict.fromkeys(self.refresh_reasons, 0)
        self.key_frames = []

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None

    def stats(self) -> dict:
        return {
            "enabled": self.enabled,
            "threshold": self.threshold,
            "max_age": self.max_age,
            "frames": self.hits + self.misses,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": None if self.hit_rate is None else round(self.hit_rate, 4),
            "refresh_reasons": dict(self.refresh_reasons),
        }

    def plan(
        self, thumbs: torch.Tensor, cuts: Sequence[bool], refresh: Sequence[str | None] | None = None
    ) -> list[int]:
        """Decide the key frame of every frame of the batch.

        ``refresh`` (change-driven inference, :mod:`vidllie.pipeline.reuse`): the full-refresh
        reason of each frame, or None where the frame reuses earlier work; when given it decides
        the key frames alone (one mechanism: the reuse planner's state and decisions). Returns ``source[i]``: -1 = reuse the cached key from before this batch, ``j >= 0`` = use
        the features of batch frame j (a new key frame; ``source[j] == j``).
        """
        n = thumbs.shape[0]
        key_thumb = self._key_thumb
        if key_thumb is not None and key_thumb.shape[1:] != thumbs.shape[1:]:
            key_thumb = None  # frame size changed
        if key_thumb is not None:
            # Row/column 0 is the cached key; one transfer for the whole batch.
            dist = pairwise_distance(torch.cat([key_thumb, thumbs])).cpu()
            offset = 1
        else:
            dist = pairwise_distance(thumbs).cpu()
            offset = 0
        key = -1 if key_thumb is not None else None
        age = self._age
        source: list[int] = []
        for i in range(n):
            reason = None
            if not self.enabled:
                reason = "disabled"
            elif refresh is not None and (refresh[i] is not None or key is None):
                reason = refresh[i] or "first"
            elif refresh is not None:
                reason = None
            elif key is None:
                reason = "first"
            elif cuts[i]:
                reason = "cut"
            elif age >= self.max_age:
                reason = "age"
            elif dist[key + offset, i + offset] > self.threshold:
                reason = "changed"
            if reason is None:
                self.hits += 1
                age += 1
            else:
                self.misses += 1
                self.refresh_reasons[reason] += 1
                self.key_frames.append(self._seen + i)
                key, age = i, 1
            source.append(key)
        self._age = age
        self._seen += n
        return source

    def __call__(
        self, frames: torch.Tensor, thumbs: torch.Tensor, cuts: Sequence[bool],
        refresh: Sequence[str | None] | None = None,
    ) -> list[torch.Tensor]:
        """DINO maps for every frame of the batch: list of (B, C, h, w), from key frames
        (``refresh``: see :meth:`plan`)."""
        if frames.shape[0] != thumbs.shape[0] or len(cuts) != frames.shape[0]:
            raise ValueError("frames, thumbs and cuts must describe the same batch")
        source = self.plan(thumbs, cuts, refresh)
        keys = sorted({s for s in source if s >= 0})
        fresh = self.dino(frames[keys]) if keys else None
        # Pool of available maps: [cached key] + fresh keys; gather one entry per frame.
        pools, slot = [], {}
        if self._key_maps is not None and -1 in source:
            slot[-1] = 0
        for k, key in enumerate(keys):
            slot[key] = k + (1 if -1 in slot else 0)
        index = torch.tensor([slot[s] for s in source], device=frames.device)
        n_layers = len(fresh) if fresh is not None else len(self._key_maps)
        for layer in range(n_layers):
            parts = []
            if -1 in slot:
                parts.append(self._key_maps[layer])
            if fresh is not None:
                parts.append(fresh[layer])
            pools.append(torch.cat(parts) if len(parts) > 1 else parts[0])
        maps = [pool.index_select(0, index) for pool in pools]
        last = source[-1]
        self._key_maps = [m[slot[last] : slot[last] + 1].clone() for m in pools]
        self._key_thumb = thumbs[last : last + 1].clone() if last >= 0 else self._key_thumb
        return maps
