"""The run's environment: torch CPU threads and the library versions recorded in stats.

    with torch_threads(default_cpu_threads()):
        ...
    library_versions()["torch"]
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch


# Torch threads of the small element-wise stages (conversion, scene check, smoothing) on the CPU.
# Two threads save ~2 ms per frame on an idle 2-core machine (smoothing 5.3 vs 7.2 ms, 640x360,
# batch 4) but every op then waits for both, and a busy machine often has one of them not running:
# 16-27 ms with 1-2 busy processes against 6.5-7.9 ms on one thread.
SMALL_STAGE_THREADS = 1


def available_cpus(*, affinity: set[int] | None = None, cgroup_root: str | os.PathLike = "/sys/fs/cgroup",
                   proc_cgroup: str | os.PathLike = "/proc/self/cgroup") -> int:
    """CPUs this process may actually use: its affinity mask, capped by a cgroup CPU quota.

    The quota is cgroup v2's ``cpu.max`` (``"200000 100000"`` = 2 CPUs; ``"max ..."`` = none) or
    v1's ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, rounded up, read for this process's own
    cgroup and every cgroup above it (a container's limit sits on one of them). ``affinity``,
    ``cgroup_root`` and ``proc_cgroup`` are for tests.

    Example:
        >>> available_cpus(affinity={0, 1, 2, 3}, cgroup_root="/nonexistent")
        4
    """
    if affinity is None:
        try:
            affinity = os.sched_getaffinity(0)
        except AttributeError:  # macOS
            affinity = set(range(os.cpu_count() or 1))
    n = max(1, len(affinity))
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    return n if quota is None else max(1, min(n, quota))


def codec_threads() -> int | None:
    """Threads for FFmpeg's decoder and encoder: :func:`available_cpus` where a cgroup quota is
    below the affinity mask (FFmpeg and x264 size their pools from the mask, 1.5x its CPUs for
    x264, so a 2-CPU container on a 64-core host would get ~96 encoder threads); None (their own
    automatic count) otherwise."""
    try:
        mask = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS: no affinity, no cgroups
        return None
    n = available_cpus()
    return n if n < mask else None


def cgroup_cpu_quota(cgroup_root: str | os.PathLike = "/sys/fs/cgroup",
                     proc_cgroup: str | os.PathLike = "/proc/self/cgroup") -> int | None:
    """The tightest cgroup CPU quota over this process's cgroups, in whole CPUs (rounded up);
    None where there is none (or no cgroup file system)."""
    root = Path(cgroup_root)
    limits = []
    for rel, names in _own_cgroups(proc_cgroup):
        parts = [p for p in rel.strip("/").split("/") if p]
        # v2: <root>/<path>/cpu.max; v1: <root>/<controller dir>/<path>/cpu.cfs_quota_us.
        bases = [root] if names is None else [root / d for d in ("cpu", "cpu,cpuacct", "cpuacct,cpu") if "cpu" in names]
        for base in bases:
            for depth in range(len(parts), -1, -1):
                limit = _quota_in(base.joinpath(*parts[:depth]))
                if limit is not None:
                    limits.append(limit)
    return min(limits) if limits else None


def _own_cgroups(proc_cgroup) -> list[tuple[str, set[str] | None]]:
    """(path, v1 controllers or None for v2) of this process's cgroups; the root when unknown."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return [("/", None), ("/", {"cpu"})]
    out = []
    for line in lines:
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        out.append((path or "/", None if controllers == "" else set(controllers.split(","))))
    return out or [("/", None)]


def _quota_in(folder: Path) -> int | None:
    try:
        fields = (folder / "cpu.max").read_text().split()
        if len(fields) == 2 and fields[0] != "max":
            return math.ceil(int(fields[0]) / int(fields[1]))
        return None
    except (OSError, ValueError, ZeroDivisionError):
        pass
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
        return math.ceil(quota / period) if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def default_cpu_threads() -> int:
    """Threads for CPU inference: every CPU this process may use (:func:`available_cpus`).

    Decoding and encoding cost a few percent of the model's time, so they fit between the
    model's ops. Measured on an idle 2-core machine (`vidllie bench`, real 640x360 night clip):
    tiny model 1.24 fps with 2 threads vs 0.70 fps with 1, micro model 4.39 vs 2.64 fps.
    The small element-wise stages run on one thread whatever this says (:data:`SMALL_STAGE_THREADS`).
    """
    return available_cpus()


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
