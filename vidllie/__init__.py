"""vidllie: video low-light enhancement (DINO-guided Restormer, streaming PyAV I/O)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "Enhancer", "enhance_video", "enhance_many", "preview"]


def __getattr__(name: str):
    # Lazy so that `import vidllie` (e.g. for the CLI's --help) does not import torch.
    if name == "Enhancer":
        from vidllie.pipeline.enhancer import Enhancer

        return Enhancer
    if name == "enhance_video":
        from vidllie.jobs.video_job import enhance_video

        return enhance_video
    if name == "enhance_many":
        from vidllie.jobs.batch import enhance_many

        return enhance_many
    if name == "preview":
        from vidllie.jobs.preview import preview

        return preview
    raise AttributeError(f"module 'vidllie' has no attribute {name!r}")
