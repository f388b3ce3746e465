"""The run's environment: torch CPU threads and the library versions recorded in stats.

    with torch_threads(default_cpu_threads()):
        ...
    library_versions()["torch"]
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator

import numpy as np
import torch


def default_cpu_threads() -> int:
    """Torch threads for CPU inference: every core this process may use.

    Decoding and encoding cost a few percent of the model's time, so they fit between the
    model's ops. Measured on an idle 2-core machine (`vidllie bench`, real 640x360 night clip):
    tiny model 1.24 fps with 2 threads vs 0.70 fps with 1, micro model 4.39 vs 2.64 fps.
    On a machine shared with other busy processes, torch's spin-waiting OpenMP workers lose
    whole scheduler slices: then pass fewer (``threads``).
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (None: leave as is), then restore."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def library_versions() -> dict[str, str | None]:
    """Versions of vidllie and the libraries behind a result (for stats and benchmark reports).

    Example:
        >>> sorted(library_versions())[:4]
        ['av', 'cuda', 'ffmpeg', 'kornia']
    """
    import av
    import kornia
    import transformers

    import vidllie

    return {
        "vidllie": vidllie.__version__, "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "av": av.__version__, "ffmpeg": _ffmpeg_version(av),
        "kornia": kornia.__version__, "transformers": transformers.__version__, "numpy": np.__version__,
        "openvino": _openvino_version(),
    }


def _openvino_version() -> str | None:
    # From the package metadata: importing openvino would load its native runtime and threads
    # into every process that only reports versions.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openvino")
    except PackageNotFoundError:
        return None


def _ffmpeg_version(av_module) -> str | None:
    try:
        return av_module.library_versions.get("libavcodec") and ".".join(
            map(str, av_module.library_versions["libavcodec"])
        )
    except Exception:  # noqa: BLE001 - informational only
        return None
