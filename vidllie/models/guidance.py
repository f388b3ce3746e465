"""DINO guidance modules (spatial + channel attention from DINO maps)."""

from __future__ import annotations

from vidllie.models.configuration import ModelConfig
from vidllie.models.guided_restormer import GuidedRestormer


def build_guided_restormer(config: ModelConfig) -> GuidedRestormer:
    model = GuidedRestormer(config)
    if config.guided:
        raise NotImplementedError("guided variants are being built (issue 3)")
    return model
