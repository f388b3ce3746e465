"""The manifest of a batch job: one JSON line per file event beside the outputs, the settings
that decide a file's output, and the resume rule (skip, keep a failure, or run).

    manifest = Manifest("out/vidllie-manifest.jsonl")
    task = FileTask("in.mp4", "out/in.mp4", *file_stat("in.mp4"), previous=manifest.last("in.mp4"))
    decide(task, settings_of(config, video))        # "skip" | "keep-failed" | "run"

Used by :mod:`vidllie.jobs.batch`, which runs the job.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vidllie.errors import OutputError
from vidllie.pipeline.options import EnhanceConfig

MANIFEST_NAME = "vidllie-manifest.jsonl"

# Options of one file's video (enhance_video_file keywords) that a batch passes through.
VIDEO_OPTIONS = ("start", "end", "codec", "crf", "preset", "pix_fmt", "audio", "hdr", "video_stream")
_VIDEO_DEFAULTS = {"start": None, "end": None, "codec": "libx264", "crf": 18, "preset": "medium",
                   "pix_fmt": None, "audio": True, "hdr": "sdr"}
# Video options added after manifests existed: left out of `settings` at their default, so the
# files an older job finished still count as done.
_LATER_DEFAULTS = {"video_stream": None}
# Enhancer options that do not change the output (where and how fast it runs): not in `settings`.
_RUNTIME_OPTIONS = ("device", "batch_size", "compile", "runtime", "channels_last", "threads", "tile_overlap")


def settings_of(config: EnhanceConfig, video: dict[str, Any]) -> dict[str, Any]:
    """What decides a file's output: the model (with its file's size and mtime), the enhance
    options that change pixels, and the video options. A done file is redone when these change.

    Example:
        >>> s = settings_of(EnhanceConfig(model="default", temporal=0.5), {"crf": 20})
        >>> s["temporal"], s["crf"], "device" in s
        (0.5, 20, False)
    """
    options = {k: getattr(config, k) for k in EnhanceConfig.names() if k not in _RUNTIME_OPTIONS}
    model = options.pop("model")
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        model_id: Any = str(path.resolve()) if path.is_file() else str(model)
        if path.is_file():
            st = path.stat()
            model_id = [model_id, st.st_size, st.st_mtime]
    else:
        model_id = type(model).__name__
    dino = options["dino"]
    options["dino"] = dino if dino is None or isinstance(dino, (str, os.PathLike)) else type(dino).__name__
    video = {k: v for k, v in video.items() if k not in _LATER_DEFAULTS or v != _LATER_DEFAULTS[k]}
    return json.loads(json.dumps({"model": model_id, **options, **{**_VIDEO_DEFAULTS, **video}}, default=str))


# ---------------------------------------------------------------------------- manifest
class Manifest:
    """The JSON-lines record of a batch job beside its outputs; the last line of an input wins.

    Appends are flushed and fsynced line by line, so a killed job loses at most the line being
    written (a torn last line is ignored on reading).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.rows: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            for line in self.path.read_text(errors="replace").splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # torn line of a killed job
                if isinstance(row, dict) and "input" in row:
                    self.rows[row["input"]] = row

    def last(self, src: str) -> dict[str, Any] | None:
        return self.rows.get(src)

    def append(self, row: dict[str, Any]) -> None:
        self.rows[row["input"]] = row
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row, default=str) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise OutputError(f"cannot write the manifest {self.path}: {err.strerror}") from None


@dataclass
class FileTask:
    """One file of the job: paths as the manifest keys them, and its input's size and mtime."""

    input: str
    output: str
    size: int | None
    mtime: float | None
    overwrite: bool = False
    previous: dict[str, Any] | None = field(default=None, repr=False)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def file_stat(src: str) -> tuple[int | None, float | None]:
    try:
        st = os.stat(src)
    except OSError:
        return None, None
    return st.st_size, st.st_mtime


def decide(task: FileTask, settings: dict[str, Any], *, retry_failed: bool = False, force: bool = False) -> str:
    """``"skip"`` (done earlier, unchanged), ``"keep-failed"`` (failed earlier on the same bytes
    and settings; retried only with ``retry_failed``) or ``"run"``."""
    prev = task.previous
    if force or prev is None:
        return "run"
    same = prev.get("size") == task.size and prev.get("mtime") == task.mtime and prev.get("settings") == settings
    if prev.get("status") == "done" and same and prev.get("output") == task.output and Path(task.output).is_file():
        return "skip"
    if prev.get("status") == "failed" and same and not retry_failed and task.size is not None:
        return "keep-failed"
    return "run"


def remove_partial_outputs(output: str) -> None:
    """Temp files a killed worker left for ``output`` (VideoWriter's ``.<stem>.<pid>-<hex>.part<ext>``)."""
    dst = Path(output)
    for p in dst.parent.glob(f".{dst.stem}.*.part{dst.suffix}"):
        try:
            p.unlink()
        except OSError:
            pass
