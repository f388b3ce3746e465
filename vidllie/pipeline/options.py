"""Typed options of the enhancer: :class:`EnhanceConfig` is the one place for their names and
defaults (``Enhancer``, ``enhance_video``, ``vidllie enhance`` and ``vidllie bench`` derive theirs
from it), plus the parser of frame sizes given as options (``640x360``, ``720p``).

Example:
    >>> EnhanceConfig(batch_size=2).temporal
    0.8
    >>> EnhanceConfig.from_dict({"batch": 2})
    Traceback (most recent call last):
    ...
    ValueError: unknown enhance options: ['batch']
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from vidllie.errors import InputError


RUNTIMES = ("auto", "torch", "openvino")


@dataclass
class EnhanceConfig:
    """What :class:`~vidllie.pipeline.enhancer.Enhancer` is built from.

    Attributes:
        model: ``"default"`` (the bundled model), a checkpoint path, or a ``GuidedRestormer``.
        dino: for a DINO-guided model: ``None`` = the backbone named in the model config, a hub
            id or local folder to load it from, ``"none"`` to run without guidance, or a module
            (e.g. a ``DinoBackbone``) mapping (B, 3, H, W) frames to a list of maps.
        device: ``auto|cpu|cuda|cuda:N|mps``.
        precision: ``auto|fp32|fp16|bf16`` (autocast; auto = fp16 on CUDA, fp32 elsewhere).
        batch_size: frames per model call.
        chunk: exact chunk size in pixels; ``None`` = automatic (chunks only when a frame
            exceeds the device's pixel budget, CUDA/MPS), ``0`` = never. Exact for Restormer
            models: every block runs chunk by chunk with frame-wide attention statistics
            (:func:`~vidllie.models.chunked.chunked_forward`), so only memory changes.
            Independent feathered tiles (approximate) are the fallback when even that does not
            fit, and what other models get.
        tile_overlap: overlap of neighbouring independent feathered tiles, pixels.
        temporal: temporal smoothing strength in [0, 1]; 0 turns it off.
        scene_exposure: the scene-exposure stage (:mod:`vidllie.pipeline.exposure`: the model's
            tone judgement taken on key frames and held across a scene; near-black input kept
            dark). ``None`` = the model's own choice: on for the bundled ``default``, off for
            other models.
        dino_cache, cache_threshold, cache_max_age: DINO key-frame cache (see ``DinoCache``).
        reuse: change-driven inference (fixed cameras): recompute only the regions that changed
            since their output was computed, as tiles blended into the previous output; whole
            frames at scene cuts, every ``cache_max_age`` frames, on illumination changes and on a
            moving camera (see :mod:`vidllie.pipeline.reuse`). With it the DINO cache's key
            frames are the full refreshes.
            ``None`` = on where the model runs on the CPU, off on a GPU (there the model is a few
            milliseconds a frame, and each new tile batch shape costs seconds the first time).
        scene_cut_threshold: thumbnail difference that counts as a scene cut (resets smoothing
            and the cache).
        compile: wrap the model in ``torch.compile``.
        runtime: what runs the model on the CPU: ``torch``, ``openvino`` (unguided models, see
            :mod:`vidllie.pipeline.openvino_runtime`) or ``auto`` (OpenVINO on the CPU when it is
            installed and no DINO runs and ``compile`` is off; torch elsewhere).
        channels_last: run convolutions in channels-last layout (faster on CPU and GPU).
        threads: the model's CPU threads, torch's or OpenVINO's (``None``: every CPU this process
            may use: its affinity mask, capped by a cgroup quota); torch's count is restored
            afterwards. The small element-wise stages run on one thread. Ignored on GPUs.
    """

    model: Any = "default"
    dino: Any = None
    device: Any = "auto"
    precision: str = "auto"
    batch_size: int = 4
    chunk: int | None = None
    tile_overlap: int = 32
    temporal: float = 0.8
    scene_exposure: bool | None = None
    dino_cache: bool = True
    cache_threshold: float = 0.02
    cache_max_age: int = 30
    reuse: bool | None = None
    scene_cut_threshold: float = 0.1
    compile: bool = False
    runtime: str = "auto"
    channels_last: bool = True
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.chunk is not None and self.chunk < 0:
            raise ValueError(f"chunk must be >= 0 (0 = off), got {self.chunk}")
        if self.chunk and self.chunk <= 3 * self.tile_overlap:
            raise ValueError(
                f"chunk ({self.chunk}) must be more than three times the tile overlap ({self.tile_overlap})"
            )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> EnhanceConfig:
        """From keyword options; unknown names are refused in one line (``ValueError``)."""
        unknown = set(options) - set(cls.names())
        if unknown:
            raise ValueError(f"unknown enhance options: {sorted(unknown)}")
        return cls(**options)

    @classmethod
    def split(cls, options: dict[str, Any]) -> tuple[EnhanceConfig, dict[str, Any]]:
        """``(config, rest)``: the enhancer's options out of a mixed mapping, and the others."""
        mine = {k: v for k, v in options.items() if k in cls.names()}
        return cls.from_dict(mine), {k: v for k, v in options.items() if k not in mine}


DEFAULTS = EnhanceConfig()


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` (or ``720p``/``4k``) -> (width, height).

    Example:
        >>> parse_size("640x360"), parse_size("720p")
        ((640, 360), (1280, 720))
    """
    named = {"360p": (640, 360), "480p": (854, 480), "540p": (960, 540), "720p": (1280, 720),
             "1080p": (1920, 1080), "4k": (3840, 2160), "2160p": (3840, 2160)}
    key = text.strip().lower()
    if key in named:
        return named[key]
    try:
        w, h = (int(v) for v in key.split("x"))
    except ValueError:
        raise InputError(f"frame size must look like 1280x720 or 720p, got {text!r}") from None
    return w, h


__all__ = ["DEFAULTS", "EnhanceConfig", "parse_size"]
