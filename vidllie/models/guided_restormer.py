"""The vidllie network: a Restormer body steered by frozen DINO features.

DINO extraction is a separate call (:class:`vidllie.models.dino.DinoGuide`) so the pipeline can
cache features across frames; this module only consumes them::

    feats = dino(frames)                 # list of (B, C_dino, h, w) maps, or None
    out = model(frames, guidance=feats)  # (B, 3, H, W)
"""

from __future__ import annotations

import torch
from torch import nn

from vidllie.models.configuration import ModelConfig
from vidllie.models.restormer import Restormer


class GuidedRestormer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.restormer = Restormer(config.restormer)
        self.guidance = None  # built by the guidance module for guided configs

    @property
    def size_multiple(self) -> int:
        return self.restormer.size_multiple

    def forward(
        self, x: torch.Tensor, guidance: list[torch.Tensor] | None = None,
        region: tuple[int, int, int, int] | None = None,
    ) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, H, W), not clamped.

        ``guidance`` is the list of DINO maps for the same B frames; ``None`` runs the plain
        Restormer (what guidance dropout trains for). When ``x`` is a tile of the frames the maps
        were computed on, ``region = (top, left, frame_height, frame_width)`` places it.
        """
        if guidance is None or self.guidance is None:
            return self.restormer(x)
        # The frame size lets the guidance map DINO patches onto pixels through both paddings.
        if region is None:
            hook = self.guidance.hook(guidance, frame_size=(x.shape[-2], x.shape[-1]))
        else:
            top, left, frame_h, frame_w = region
            hook = self.guidance.hook(guidance, frame_size=(frame_h, frame_w), offset=(top, left))
        return self.restormer(x, level_hook=hook)
