"""What a training run (:mod:`vidllie.train.trainer`) is built from: the learning-rate schedule,
the AMP choice, a start from another model's weights, the frozen DINO (with optional LoRA), where
batches come from (:class:`TrainingData`; made ahead in worker processes by :func:`step_batches`),
validation on the held-out items and the run's logs.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import torch

from vidllie.errors import InputError
from vidllie.models.configuration import ModelConfig
from vidllie.models.dino import load_dino
from vidllie.train.config import DataConfig, DinoOptions, dino_options
from vidllie.train.datasets import (
    ClipPairs, PairedCrops, PairedFolder, SyntheticPairs, list_images, name_seed, split_images, validation_pairs,
)
from vidllie.train.evaluate import psnr, ssim


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from 1 to ``min_ratio`` at ``total``.

    Example:
        >>> [round(lr_factor(s, 100, 10, 0.0), 3) for s in (0, 5, 10, 55, 100)]
        [0.1, 0.6, 1.0, 0.5, 0.0]
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def init_partially(model: torch.nn.Module, source: torch.nn.Module, where: str) -> list[str]:
    """Start ``model`` from ``source``'s weights. Parts the source lacks are allowed only where a
    fresh build leaves the output unchanged (``model.identity_init_prefixes()``: the detail branch,
    guidance layers), so the started network computes exactly the source. Returns those parts' names."""
    state = source.state_dict()
    ours = model.state_dict()
    unexpected = sorted(set(state) - set(ours))
    mismatched = sorted(k for k in set(state) & set(ours) if state[k].shape != ours[k].shape)
    fresh = sorted(set(ours) - set(state))
    allowed = model.identity_init_prefixes() if hasattr(model, "identity_init_prefixes") else ()
    other = [k for k in fresh if not k.startswith(allowed)]
    if unexpected or mismatched or other:
        raise InputError(
            f"init_from {where}: does not fit this model (unknown {len(unexpected)}, other shape "
            f"{len(mismatched)}, missing {len(other)} tensors{': ' + ', '.join(other[:3]) if other else ''})"
        )
    model.load_state_dict(state, strict=False)
    return fresh


def resolve_amp(name: str, device: torch.device) -> torch.dtype | None:
    if name == "off" or device.type != "cuda":
        if name in ("bf16", "fp16") and device.type != "cuda":
            raise InputError(f"training config: amp {name} needs a CUDA device (got {device})")
        return None
    if name == "bf16" or (name == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def build_dino(model_config: ModelConfig | None, options: DinoOptions | dict, device: torch.device):
    """The frozen DINO backbone (:class:`vidllie.models.dino.DinoBackbone`, loaded by
    :func:`~vidllie.models.dino.load_dino`) of a guided model config, or of ``options.config``
    (for the loss alone), from ``options.source`` when given; peft LoRA adapters on its attention
    projections when ``options.lora`` is set. Returns ``(dino, params)`` with the trainable
    (LoRA) parameters."""
    if isinstance(options, dict):
        options = dino_options(options)
    dino, _ = load_dino(options.config or model_config.dino, options.source, needed=True)
    for p in dino.parameters():
        p.requires_grad_(False)
    lora = options.lora
    params: list[torch.nn.Parameter] = []
    if lora:
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError:
            raise InputError("LoRA on DINO needs peft: pip install 'vidllie[train]'") from None
        config = LoraConfig(r=int(lora.r), lora_alpha=float(lora.alpha), lora_dropout=float(lora.dropout),
                            target_modules=list(lora.target_modules))
        inject_adapter_in_model(config, dino.backbone)
        params = [p for n, p in dino.named_parameters() if "lora_" in n]
        if not params:
            raise InputError(f"LoRA: no module of DINO matches {config.target_modules}")
        for p in params:
            p.requires_grad_(True)
    return dino.to(device), params


class Logs:
    """The run's CSV logs (``train_log.csv``, ``val_log.csv``) and their JSON-lines copy (``log.jsonl``)."""

    def __init__(self, folder: Path, loss_names: list[str], append: bool) -> None:
        self.folder = folder
        self.train_cols = ["step", "time_s", "lr", "loss", *loss_names, "grad_norm", "s_per_step"]
        self.val_cols = ["step", "time_s", "psnr", "ssim", "best_psnr"]
        mode = "a" if append else "w"
        self._train = open(folder / "train_log.csv", mode, newline="")
        self._val = open(folder / "val_log.csv", mode, newline="")
        self._jsonl = open(folder / "log.jsonl", mode)
        self.train_writer = csv.DictWriter(self._train, self.train_cols, extrasaction="ignore")
        self.val_writer = csv.DictWriter(self._val, self.val_cols)
        if not append:
            self.train_writer.writeheader()
            self.val_writer.writeheader()

    def train(self, row: dict) -> None:
        self.train_writer.writerow(row)
        self._train.flush()
        self._jsonl.write(json.dumps({"kind": "train", **row}) + "\n")
        self._jsonl.flush()

    def val(self, row: dict) -> None:
        self.val_writer.writerow(row)
        self._val.flush()
        self._jsonl.write(json.dumps({"kind": "val", **row}) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        for f in (self._train, self._val, self._jsonl):
            f.close()


# -------------------------------------------------------------------------------------- data
def images_split(images, fraction: float) -> tuple[list[Path], list[tuple[Path, Path]]]:
    roots = [images] if isinstance(images, (str, Path)) else list(images)
    train, val = [], []
    for root in roots:
        tr, va = split_images(root, fraction)
        train += tr
        val += [(p, Path(root)) for p in va]
    return train, val


class TrainingData:
    """Where batches come from: training pairs, optional clips, and the fixed validation items."""

    def __init__(self, d: DataConfig) -> None:
        degradation = d.degradation
        self.val_items: list = []
        train_paths: list[Path] = []
        if d.paired:
            self.source = PairedCrops(d.paired, crop=d.crop, batch_size=d.batch_size)
        else:
            train_paths, held_out = images_split(d.images, float(d.val_fraction))
            self.source = SyntheticPairs(train_paths, crop=d.crop, batch_size=d.batch_size,
                                         degradation=degradation, scale=tuple(d.scale))
            if not d.val_paired:
                for root in {r for _, r in held_out}:
                    self.val_items += validation_pairs([p for p, r in held_out if r == root], root, seed=d.val_seed,
                                                       crop=d.val_crop, degradation=degradation)
                self.val_items = self.val_items[: d.val_limit or None]
        if d.val_paired:
            folder = PairedFolder(d.val_paired)
            self.val_items = [folder[i] for i in range(min(len(folder), d.val_limit or len(folder)))]
        self.clips, self.clip_every = None, 0
        if d.clips:
            c = d.clips
            self.clip_every = int(c.every)
            stills = c.stills
            still_paths = (train_paths if stills is True else list_images(stills) if stills else []) if not d.paired else []
            self.clips = ClipPairs(frame_dirs=c.frame_dirs or [], videos=c.videos or [], stills=still_paths,
                                   frames=c.frames, crop=c.crop, batch_size=c.batch_size, degradation=degradation)

    def clip_batch(self, step: int, gen: torch.Generator):
        return self.clips.batch(gen) if self.clips is not None and step % self.clip_every == 0 else None


class StepBatches(torch.utils.data.Dataset):
    """Item ``k``: the ``(low, high, clips)`` batch of training step ``k``, drawn from a generator
    seeded by ``(seed, k)`` alone, so it is the same batch whichever process makes it and when."""

    def __init__(self, data: TrainingData, seed: int) -> None:
        self.data, self.seed = data, int(seed)

    def __getitem__(self, step: int):
        gen = torch.Generator().manual_seed(name_seed(f"step {step}", self.seed))
        low, high = self.data.source.batch(gen)
        return low, high, self.data.clip_batch(step, gen)


def _as_is(item):
    return item


def step_batches(data: TrainingData, seed: int, start: int, stop: int, workers: int, pin_memory: bool = False):
    """Batches of steps ``start`` .. ``stop - 1`` in order, made ahead by ``workers`` processes
    (two batches each in flight). The synthetic degradation runs on one CPU thread per batch; on a
    GPU it is most of a step, so the workers keep the device fed.

    On Linux the workers are forked: they share the training images already in memory.

    Example:
        >>> batches = step_batches(data, seed=0, start=run.step, stop=run.total, workers=4)  # doctest: +SKIP
        >>> low, high, clips = next(batches)                                                  # doctest: +SKIP
    """
    loader = torch.utils.data.DataLoader(
        StepBatches(data, seed), batch_size=None, sampler=range(start, stop), num_workers=workers,
        collate_fn=_as_is, pin_memory=pin_memory, prefetch_factor=2 if workers else None,
        # The loader draws its workers' base seed from this, not from torch's global generator,
        # which is the run's (checkpointed) state: a resumed run must not draw it twice.
        generator=torch.Generator().manual_seed(int(seed)),
    )
    return iter(loader)


def validate_model(model, pairs, device, amp_dtype, dino=None) -> tuple[float, float]:
    model.eval()
    ps, ss = [], []
    with torch.inference_mode():
        for low, high, _ in pairs:
            x = low[None].to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                maps = dino(x) if dino is not None and model.config.guided else None
                out = model(x, dino_maps=maps)
            out = out.float().clamp(0, 1).cpu()
            ps.append(psnr(out, high[None]))
            ss.append(ssim(out, high[None]))
    model.train()
    return sum(ps) / len(ps), sum(ss) / len(ss)
