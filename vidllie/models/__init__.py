"""Pure ``torch.nn`` models: no file or video I/O here except checkpoint (de)serialisation."""

from vidllie.models.checkpoint import build_model, load_model, save_model, variant_config, variant_names
from vidllie.models.configuration import DinoConfig, GuidanceConfig, ModelConfig, RestormerConfig
from vidllie.models.dino import DinoBackbone, load_dino
from vidllie.models.guidance import GuidanceLayers
from vidllie.models.guided_restormer import GuidedRestormer
from vidllie.models.restormer import Restormer

__all__ = [
    "DinoBackbone",
    "DinoConfig",
    "GuidanceConfig",
    "GuidanceLayers",
    "GuidedRestormer",
    "ModelConfig",
    "Restormer",
    "RestormerConfig",
    "build_model",
    "load_dino",
    "load_model",
    "save_model",
    "variant_config",
    "variant_names",
]
