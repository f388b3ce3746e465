"""Shared test set-up: offline Hugging Face, a bounded thread count, the ../shared folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDLLIE_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the repo; tests that need it skip cleanly when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is absent (fresh machine)")
    return SHARED


@pytest.fixture(scope="session")
def night_clip(shared_dir: Path) -> Path:
    path = shared_dir / "media" / "night_dashcam.mp4"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


# ---------------------------------------------------------------- small models for pipeline tests
DINO_HIDDEN = 32


def micro_config(unshuffle: int = 2):
    """A random-init micro network (dim 8, one block per level): fast enough for whole clips."""
    from vidllie.models import DinoConfig, GuidanceConfig, ModelConfig, RestormerConfig

    return ModelConfig(
        name="micro",
        restormer=RestormerConfig(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 1, 1), pixel_unshuffle=unshuffle),
        dino=DinoConfig(backbone=None),
        guidance=GuidanceConfig(levels="none"),
    )


@pytest.fixture(scope="session")
def micro_path(tmp_path_factory) -> Path:
    from vidllie.models import build_model, save_model

    torch.manual_seed(0)
    return save_model(build_model(micro_config()), tmp_path_factory.mktemp("models") / "micro.safetensors")


@pytest.fixture(scope="session")
def guided_path(tmp_path_factory) -> Path:
    """Guided micro model + tiny random DINOv3 (from_pretrained path), guidance made non-zero."""
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    from vidllie.models import DinoConfig, GuidanceConfig, ModelConfig, RestormerConfig, build_model, save_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("dinov3")
    DINOv3ViTModel(DINOv3ViTConfig(
        hidden_size=DINO_HIDDEN, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
        patch_size=16, num_register_tokens=4,
    )).save_pretrained(folder)
    config = ModelConfig(
        name="micro-guided",
        restormer=RestormerConfig(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2), pixel_unshuffle=2),
        dino=DinoConfig(backbone=str(folder), hidden_size=DINO_HIDDEN, patch_size=16, layers=(2, 4), short_side=64),
        guidance=GuidanceConfig(levels="latent", dim=16),
    )
    model = build_model(config)
    # Zero-initialised guidance would make cached and uncached outputs trivially equal.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for block in model.guidance.blocks.values():
            for p in block.proj_out.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return save_model(model, tmp_path_factory.mktemp("guided") / "guided.safetensors")
