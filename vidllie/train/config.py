"""Typed training configuration: :class:`TrainConfig` and :func:`load_train_config`.

This module owns the names, defaults and checks of ``configs/train/*.yaml``. Sections are
dataclasses (``optim``, ``data``, ``loss``, ``dino``); ``data.degradation`` is
:class:`vidllie.train.degrade.DegradeConfig` and ``loss`` is
:class:`vidllie.train.losses.LossConfig`. Unknown keys are refused in one line, like the model
config's::

    cfg = load_train_config("configs/train/default.yaml")
    cfg.data.crop, cfg.optim.lr, cfg.data.degradation.exposure
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vidllie.errors import InputError
from vidllie.models.configuration import DinoConfig, ModelConfig
from vidllie.train.degrade import DegradeConfig
from vidllie.train.losses import LossConfig


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and cosine decay to ``min_lr``; gradient-norm clipping."""

    lr: float = 2e-3
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 200
    min_lr: float = 1e-5
    grad_clip: float = 0.5


@dataclass
class ClipsConfig:
    """Short clips for the temporal-consistency term, drawn every ``every`` steps."""

    frame_dirs: list[str] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    stills: bool | str | list[str] = False  # True: the training images; a folder/list: those
    frames: int = 3
    crop: int = 96
    batch_size: int = 2
    every: int = 4


@dataclass
class DataConfig:
    images: str | list[str] | None = None  # folder(s) of normal-light images -> synthetic pairs on the fly
    paired: str | None = None  # a LOL-layout folder (low/, high/) -> real pairs instead
    val_fraction: float = 0.1  # held-out share of `images`, fixed by file name (never trained on)
    val_paired: str | None = None  # a LOL-layout folder to validate on instead of the held-out split
    val_seed: int = 1234
    val_crop: int | None = 256  # centre crop of each held-out image (None: whole images)
    val_limit: int | None = 32  # held-out images used for validation during training
    crop: int = 128
    batch_size: int = 8
    scale: tuple[float, float] = (0.6, 1.0)
    degradation: DegradeConfig = field(default_factory=DegradeConfig)
    clips: ClipsConfig | None = None
    # 0: batches made in the training process from the run's generator. N > 0: made ahead in N
    # worker processes, batch ``k`` from a generator seeded by (seed, k) alone, so a run's batches
    # are the same for any N and after a resume (but not the same as with 0).
    workers: int = 0


@dataclass
class LoraConfig:
    """peft LoRA adapters on the frozen DINO's attention projections."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    lr: float | None = None  # default: a tenth of optim.lr


@dataclass
class DinoOptions:
    """DINO for guided models and the DINO loss. ``source``: hub id or folder overriding the model
    config's backbone; ``config``: DinoConfig fields (for the loss on an unguided model)."""

    source: str | None = None
    config: DinoConfig | None = None
    lora: LoraConfig | None = None


@dataclass
class TrainConfig:
    name: str = "run"
    model: str | ModelConfig = "tiny-unguided"  # variant name, model YAML path, or a model config
    init_from: str | None = None  # a model checkpoint to start from (fine-tuning)
    teacher: str | None = None  # a model (checkpoint, `quality`, `default`) to distil from: loss.teacher > 0
    seed: int = 0
    output_dir: str | None = None  # default runs/<name>
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    amp: str = "auto"  # auto (bf16/fp16 on CUDA, off elsewhere) | off | bf16 | fp16
    threads: int | None = None  # torch.set_num_threads
    steps: int = 5000
    time_limit_s: float | None = None  # stop (with a checkpoint) once this much training time has passed
    ema_decay: float = 0.999
    checkpoint_every: int = 250
    val_every: int = 500
    log_every: int = 25
    progress: bool = True
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    dino: DinoOptions = field(default_factory=DinoOptions)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _section(cls, data: Any, where: str, nested: dict[str, Any] | None = None):
    """``cls(**data)`` with unknown keys refused and nested sections built by ``nested[name]``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"training config: {where.rstrip('.') or 'the file'} must be a mapping")
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise InputError(f"training config: unknown key {where + key!r}")
    values = dict(data)
    for key, build in (nested or {}).items():
        if key in values:
            values[key] = build(values[key], f"{where}{key}.")
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise InputError(f"training config: {where.rstrip('.') or 'top level'}: {err}") from None


def _checked(from_dict, where: str):
    def build(data: Any, _where: str):
        try:
            return from_dict(data)
        except (TypeError, ValueError) as err:
            raise InputError(f"training config: {where}: {err}") from None

    return build


def _optional(cls, nested: dict[str, Any] | None = None):
    return lambda data, where: None if data is None else _section(cls, data, where, nested)


def _model(data: Any, where: str) -> str | ModelConfig:
    return _checked(ModelConfig.from_dict, "model")(data, where) if isinstance(data, dict) else data


def _pair(data: Any, where: str) -> tuple:
    return tuple(data)


def _merge(base: dict, update: dict) -> dict:
    """``base`` with ``update`` merged in, section by section (a degradation is replaced whole)."""
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if isinstance(out.get(key), dict) and isinstance(value, dict) and key != "degradation":
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _expand(value):
    """``${VAR}`` in path values, from the environment."""
    if isinstance(value, str):
        return os.path.expandvars(value)
    if isinstance(value, list):
        return [os.path.expandvars(p) for p in value]
    return value


def _dino_config(data: Any, where: str) -> DinoConfig | None:
    return None if data is None else _checked(lambda v: DinoConfig(**v), "dino.config")(data, where)


_DINO_SECTIONS = {"config": _dino_config, "lora": _optional(LoraConfig)}


def dino_options(data: dict | None) -> DinoOptions:
    """The ``dino`` section from a mapping (unknown keys refused)."""
    return _section(DinoOptions, data, "dino.", _DINO_SECTIONS)


def load_train_config(config: str | Path | dict | TrainConfig, overrides: dict | None = None) -> TrainConfig:
    """The full training config: defaults <- YAML file (or mapping) <- ``overrides``.

    ``${VAR}`` in path values is expanded from the environment.

    Example:
        >>> cfg = load_train_config({"data": {"images": "photos/", "crop": 64}})
        >>> cfg.output_dir, cfg.data.crop, cfg.data.degradation.cast_prob
        ('runs/run', 64, 0.7)
        >>> load_train_config({"data": {"images": "photos/"}, "stepz": 3})
        Traceback (most recent call last):
        ...
        vidllie.errors.InputError: training config: unknown key 'stepz'
    """
    if isinstance(config, TrainConfig):
        config = config.to_dict()
    if isinstance(config, (str, Path)):
        path = Path(config)
        if not path.is_file():
            raise InputError(f"training config not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
    else:
        data = dict(config)
    if overrides:
        data = _merge(data, overrides)
    cfg = _section(TrainConfig, data, "", {
        "model": _model,
        "optim": _optional(OptimConfig, {"betas": _pair}),
        "data": _optional(DataConfig, {
            "scale": _pair,
            "degradation": _checked(DegradeConfig.from_dict, "data.degradation"),
            "clips": _optional(ClipsConfig),
        }),
        "loss": _checked(LossConfig.from_dict, "loss"),
        "dino": _optional(DinoOptions, _DINO_SECTIONS),
    })
    cfg.output_dir = os.path.expandvars(str(cfg.output_dir or f"runs/{cfg.name}"))
    d = cfg.data
    d.images, d.paired, d.val_paired = _expand(d.images), _expand(d.paired), _expand(d.val_paired)
    if d.images is None and d.paired is None:
        raise InputError("training config: set data.images (synthetic pairs) or data.paired (a LOL folder)")
    if d.workers < 0:
        raise InputError(f"training config: data.workers must be >= 0, got {d.workers}")
    if d.crop % 16:
        raise InputError(f"training config: data.crop must be a multiple of 16, got {d.crop}")
    if cfg.loss.teacher > 0 and not cfg.teacher:
        raise InputError("training config: loss.teacher > 0 needs a teacher model (teacher: quality | PATH)")
    return cfg


__all__ = [
    "ClipsConfig", "DataConfig", "DinoOptions", "LoraConfig", "OptimConfig", "TrainConfig", "dino_options",
    "load_train_config",
]
