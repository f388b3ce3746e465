"""Shared test set-up: offline Hugging Face, a bounded thread count, the ../shared folder."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The suite's many small models run on the torch runtime (the reference); tests/test_openvino.py
# checks the OpenVINO runtime against it and runs it end to end. Its cache stays out of ~/.cache.
os.environ.setdefault("VIDLLIE_RUNTIME", "torch")
if "VIDLLIE_CACHE" not in os.environ:
    os.environ["VIDLLIE_CACHE"] = tempfile.mkdtemp(prefix="vidllie-test-cache-")
    atexit.register(shutil.rmtree, os.environ["VIDLLIE_CACHE"], True)  # converted models: ~10 MB each

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


def tiny_dinov3_config(registers: int = 4):
    """A DINOv3 ViT small enough for CPU tests (milliseconds per frame)."""
    from transformers import DINOv3ViTConfig

    return DINOv3ViTConfig(
        hidden_size=DINO_HIDDEN, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
        patch_size=16, num_register_tokens=registers,
    )


@pytest.fixture(scope="session")
def dinov3_dir(tmp_path_factory) -> str:
    """A tiny random DINOv3 saved with save_pretrained: loaded back through the real
    from_pretrained path, offline."""
    from transformers import DINOv3ViTModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("dinov3")
    DINOv3ViTModel(tiny_dinov3_config()).save_pretrained(folder)
    return str(folder)


def randomize_guidance(model, scale: float = 0.3, seed: int = 1) -> None:
    """Random weights for the zero-initialised guidance output projections, so guidance matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in model.guidance.blocks.values():
            for p in block.proj_out.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * scale)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors on a shared machine: intra-op threads only add barrier waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def guided_path(tmp_path_factory, dinov3_dir) -> Path:
    """Guided micro model + the tiny random DINOv3, guidance made non-zero."""
    from vidllie.models import DinoConfig, GuidanceConfig, ModelConfig, RestormerConfig, build_model, save_model

    torch.manual_seed(0)
    config = ModelConfig(
        name="micro-guided",
        restormer=RestormerConfig(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2), pixel_unshuffle=2),
        dino=DinoConfig(backbone=dinov3_dir, hidden_size=DINO_HIDDEN, patch_size=16, layers=(2, 4), short_side=64),
        guidance=GuidanceConfig(levels="latent", dim=16),
    )
    model = build_model(config)
    randomize_guidance(model)  # zero-init guidance would make cached and uncached outputs equal
    return save_model(model, tmp_path_factory.mktemp("guided") / "guided.safetensors")
