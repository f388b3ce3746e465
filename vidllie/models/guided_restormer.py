"""The vidllie network: a Restormer body steered by frozen DINO features.

This module owns :class:`GuidedRestormer`, the complete trainable network (Restormer body plus,
for guided configs, its guidance layers) and the one place where DINO maps are turned into the
body's level hook. DINO extraction is a separate call (:class:`vidllie.models.dino.DinoBackbone`),
so the pipeline can cache the maps across frames; this module only consumes them::

    maps = backbone(frames)                 # list of (B, C_dino, h, w) DINO maps
    out = model(frames, dino_maps=maps)     # (B, 3, H, W)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vidllie.models.configuration import ModelConfig
from vidllie.models.dino import dino_grid
from vidllie.models.guidance import GuidanceLayers
from vidllie.models.restormer import LevelHook, Restormer, StageRunner

# (top, left, frame_height, frame_width): where a tile sits in the frame its DINO maps came from.
Region = tuple[int, int, int, int]


class GuidedRestormer(nn.Module):
    """Restormer body (``.restormer``) + guidance layers (``.guidance``, None when unguided).

    Example:
        >>> from vidllie.models import build_model
        >>> model = build_model("tiny-unguided")
        >>> model(torch.rand(1, 3, 20, 36)).shape
        torch.Size([1, 3, 20, 36])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.restormer = Restormer(config.restormer)
        self.guidance = GuidanceLayers(config) if config.guided else None

    def identity_init_prefixes(self) -> tuple[str, ...]:
        """Parameter-name prefixes of the parts that leave the output unchanged when freshly built
        (zero-initialised): a checkpoint without them can start this network exactly."""
        prefixes = ["guidance."] if self.guidance is not None else []
        if self.restormer.detail is not None:
            prefixes.append("restormer.detail.")
        if self.restormer.global_context is not None:
            prefixes.append("restormer.global_context.")
        return tuple(prefixes)

    @property
    def size_multiple(self) -> int:
        return self.restormer.size_multiple

    def level_hook(
        self, dino_maps: Sequence[torch.Tensor] | None, frame_size: tuple[int, int], region: Region | None = None
    ) -> LevelHook | None:
        """The body's level hook for one batch of DINO maps (None: run the plain Restormer).

        ``frame_size`` is the (H, W) of the input; when the input is a tile of the frame the maps
        were computed on, ``region`` places it and gives the frame's size instead.
        """
        if dino_maps is None or self.guidance is None:
            return None
        # The frame size lets the guidance map DINO patches onto pixels through both paddings.
        if region is None:
            return self.guidance.hook(dino_maps, frame_size=frame_size)
        top, left, frame_h, frame_w = region
        return self.guidance.hook(dino_maps, frame_size=(frame_h, frame_w), offset=(top, left))

    def forward(
        self, x: torch.Tensor, dino_maps: Sequence[torch.Tensor] | None = None,
        region: Region | None = None, run_stage: StageRunner | None = None,
    ) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, H, W), not clamped.

        ``dino_maps`` is the list of DINO maps for the same B frames; ``None`` runs the plain
        Restormer (what guidance dropout trains for). When ``x`` is a tile of the frames the maps
        were computed on, ``region = (top, left, frame_height, frame_width)`` places it.
        ``run_stage`` runs each stage of the body (see :mod:`vidllie.models.chunked`).
        """
        hook = self.level_hook(dino_maps, (x.shape[-2], x.shape[-1]), region)
        return self.restormer(x, level_hook=hook, run_stage=run_stage)

    # What the pipeline's memory planner needs, without reading config internals.
    def activation_bytes_per_pixel(self, element_size: int, chunked: bool = False) -> float:
        """Rough peak activation bytes per input pixel (see :meth:`Restormer.activation_bytes_per_pixel`)."""
        return self.restormer.activation_bytes_per_pixel(element_size, chunked)

    def dino_grid(self, height: int, width: int) -> tuple[int, int, float, float]:
        """DINO token grid of an (height, width) frame for this model's DINO config (see
        :func:`vidllie.models.dino.dino_grid`)."""
        dc = self.config.dino
        return dino_grid(height, width, dc.short_side, dc.patch_size)
