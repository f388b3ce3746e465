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
