"""Training state on disk: the EMA weights and the resumable checkpoint.

This module owns the checkpoint format (``vidllie-train-state/1``): one safetensors file with
the model, EMA, optimizer and scaler tensors, the RNG states and (for LoRA) DINO adapters; step,
scheduler and run info in the header metadata. No pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from vidllie.errors import InputError
from vidllie.models.checkpoint import write_safetensors

CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_FORMAT = "vidllie-train-state/1"


class EMA:
    """Exponential moving average of a model's floating tensors (buffers copied)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, model: torch.nn.Module) -> torch.nn.Module:
        model.load_state_dict(self.shadow)
        return model


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_checkpoint(path: Path, *, model, ema: EMA, opt, scheduler, scaler, step: int, data_gen: torch.Generator,
                    info: dict[str, Any], dino_params: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the complete training state to one safetensors file (atomic rename)."""
    tensors: dict[str, torch.Tensor] = {}
    tensors.update({f"model.{k}": v for k, v in model.state_dict().items()})
    tensors.update({f"ema.{k}": v for k, v in ema.shadow.items()})
    opt_tensors, opt_meta = _optimizer_tensors(opt)
    tensors.update(opt_tensors)
    tensors.update({f"dino.{k}": v for k, v in (dino_params or {}).items()})
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.data"] = data_gen.get_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    if scaler is not None:
        tensors["scaler.scale"] = scaler.state_dict()["scale"] if isinstance(scaler.state_dict().get("scale"), torch.Tensor) else torch.tensor(float(scaler.get_scale()))
    meta = {
        "format": CHECKPOINT_FORMAT,
        "step": str(step),
        "optimizer": json.dumps(opt_meta),
        "scheduler": json.dumps(scheduler.state_dict()),
        "scaler": json.dumps({k: v for k, v in scaler.state_dict().items() if not isinstance(v, torch.Tensor)}) if scaler else "null",
        "info": json.dumps(info),
        "model_config": json.dumps(model.config.to_dict()),
    }
    return write_safetensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, path, meta)


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise InputError(f"cannot resume: no checkpoint at {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"{path}: not a vidllie training checkpoint")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return tensors, meta


def restore_optimizer(opt, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, values in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(values)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
