"""The training loop behind ``vidllie train --config configs/train/<name>.yaml [--resume]``.

AdamW + linear warm-up + cosine decay, gradient clipping, AMP on CUDA (bf16, else fp16 with a
scaler), EMA weights, validation PSNR/SSIM on a fixed held-out split, checkpoints as safetensors
(model, EMA, optimizer, scheduler, step, RNG states; no pickle) every N steps and on Ctrl-C, exact
resume, a tqdm bar and CSV + JSON-lines logs. DINO (when the model is guided or the DINO loss is
on) is frozen, optionally with LoRA adapters (peft, the ``train`` extra).

Outputs in ``output_dir``: ``checkpoint.safetensors`` (resume state), ``best_ema.safetensors``
and ``final_ema.safetensors`` (loadable with ``load_model``), ``train_log.csv``, ``val_log.csv``,
``log.jsonl``, ``config.json``, ``summary.json``.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import platform
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import safe_open

from vidllie.errors import InputError, OutputError
from vidllie.models import build_model, load_model, save_model
from vidllie.models.checkpoint import write_safetensors
from vidllie.train.datasets import ClipPairs, PairedCrops, PairedFolder, SyntheticPairs, list_images, split_images, validation_pairs
from vidllie.train.degrade import DegradeConfig
from vidllie.train.evaluate import psnr, ssim
from vidllie.train.losses import LossConfig, RestorationLoss, differentiable

CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_FORMAT = "vidllie-train-state/1"

DEFAULTS: dict[str, Any] = {
    "name": "run",
    "model": "tiny-unguided",  # variant name, model YAML path, or a model config mapping
    "init_from": None,  # a model checkpoint to start from (fine-tuning)
    "seed": 0,
    "output_dir": None,  # default runs/<name>
    "device": "auto",  # auto | cpu | cuda | cuda:N | mps
    "amp": "auto",  # auto (bf16/fp16 on CUDA, off elsewhere) | off | bf16 | fp16
    "threads": None,  # torch.set_num_threads
    "steps": 5000,
    "time_limit_s": None,  # stop (with a checkpoint) once this much training time has passed
    "ema_decay": 0.999,
    "checkpoint_every": 250,
    "val_every": 500,
    "log_every": 25,
    "progress": True,
    "optim": {"lr": 2e-3, "weight_decay": 1e-4, "betas": [0.9, 0.999], "warmup_steps": 200,
              "min_lr": 1e-5, "grad_clip": 0.5},
    "data": {
        "images": None,  # folder(s) of normal-light images -> synthetic pairs on the fly
        "paired": None,  # a LOL-layout folder (low/, high/) -> real pairs instead
        "val_fraction": 0.1,  # held-out share of `images`, fixed by file name (never trained on)
        "val_paired": None,  # a LOL-layout folder to validate on instead of the held-out split
        "val_seed": 1234,
        "val_crop": 256,  # centre crop of each held-out image (None: whole images)
        "val_limit": 32,  # held-out images used for validation during training
        "crop": 128,
        "batch_size": 8,
        "scale": [0.6, 1.0],
        "degradation": {},  # DegradeConfig fields
        "clips": None,  # {frame_dirs, videos, stills, frames, crop, batch_size, every}
    },
    "loss": {},  # LossConfig fields
    # DINO for guided models and the DINO loss: `source` = hub id or local folder overriding the
    # model config's backbone; `config` = DinoConfig fields (needed for the loss on an unguided
    # model); `lora` = {r, alpha, dropout, target_modules, lr} adapters on the frozen backbone.
    "dino": {"source": None, "config": None, "lora": None},
}


# ------------------------------------------------------------------------------------- config
def _merge(base: dict, update: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if key not in base:
            raise InputError(f"training config: unknown key {where}{key!r}")
        if isinstance(base[key], dict) and base[key] and isinstance(value, dict) and key not in ("degradation",):
            out[key] = _merge(base[key], value, f"{where}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_train_config(config: str | Path | dict, overrides: dict | None = None) -> dict[str, Any]:
    """The full training config: DEFAULTS <- YAML file (or mapping) <- ``overrides``.

    ``${VAR}`` in path values is expanded from the environment.
    """
    if isinstance(config, (str, Path)):
        path = Path(config)
        if not path.is_file():
            raise InputError(f"training config not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
    else:
        data = dict(config)
    cfg = _merge(DEFAULTS, data)
    if overrides:
        cfg = _merge(cfg, overrides)
    if cfg["output_dir"] is None:
        cfg["output_dir"] = f"runs/{cfg['name']}"
    cfg["output_dir"] = os.path.expandvars(str(cfg["output_dir"]))
    d = cfg["data"]
    for key in ("images", "paired", "val_paired"):
        if isinstance(d[key], str):
            d[key] = os.path.expandvars(d[key])
        elif isinstance(d[key], list):
            d[key] = [os.path.expandvars(p) for p in d[key]]
    if d["images"] is None and d["paired"] is None:
        raise InputError("training config: set data.images (synthetic pairs) or data.paired (a LOL folder)")
    if d["crop"] % 16:
        raise InputError(f"training config: data.crop must be a multiple of 16, got {d['crop']}")
    DegradeConfig.from_dict(d["degradation"])
    LossConfig.from_dict(cfg["loss"])
    return cfg


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


# ---------------------------------------------------------------------------------------- EMA
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


# ------------------------------------------------------------------------------------ devices
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def resolve_amp(name: str, device: torch.device) -> torch.dtype | None:
    if name == "off" or device.type != "cuda":
        if name in ("bf16", "fp16") and device.type != "cuda":
            raise InputError(f"training config: amp {name} needs a CUDA device (got {device})")
        return None
    if name == "bf16" or (name == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


# ------------------------------------------------------------------------------------- DINO
def build_dino(model_config, options: dict, device: torch.device):
    """The frozen DINO backbone (``vidllie.models.dino.DinoGuide``) of a guided config, or of
    ``options["config"]`` (DinoConfig fields) for the loss alone, loaded from ``options["source"]``
    when given; peft LoRA adapters on its attention projections when ``options["lora"]`` is set.
    Returns ``(dino, params)`` with the trainable (LoRA) parameters."""
    from vidllie.models import DinoConfig
    from vidllie.models.dino import DinoGuide  # the models layer owns DINO loading

    dino_config = DinoConfig(**options["config"]) if options.get("config") else model_config.dino
    dino = DinoGuide(dino_config, source=options.get("source"))
    for p in dino.parameters():
        p.requires_grad_(False)
    lora = options.get("lora")
    params: list[torch.nn.Parameter] = []
    if lora:
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError:
            raise InputError("LoRA on DINO needs peft: pip install 'vidllie[train]'") from None
        config = LoraConfig(r=int(lora.get("r", 8)), lora_alpha=float(lora.get("alpha", 16)),
                            lora_dropout=float(lora.get("dropout", 0.0)),
                            target_modules=list(lora.get("target_modules", ["q_proj", "v_proj"])))
        inject_adapter_in_model(config, dino.backbone)
        params = [p for n, p in dino.named_parameters() if "lora_" in n]
        if not params:
            raise InputError(f"LoRA: no module of DINO matches {config.target_modules}")
        for p in params:
            p.requires_grad_(True)
    return dino.to(device), params


# -------------------------------------------------------------------------------- checkpoints
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


def _restore_optimizer(opt, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, values in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(values)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# -------------------------------------------------------------------------------------- logs
class _Logs:
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


# -------------------------------------------------------------------------------------- train
def _images_split(images, fraction: float) -> tuple[list[Path], list[tuple[Path, Path]]]:
    roots = [images] if isinstance(images, (str, Path)) else list(images)
    train, val = [], []
    for root in roots:
        tr, va = split_images(root, fraction)
        train += tr
        val += [(p, Path(root)) for p in va]
    return train, val


def _validate(model, pairs, device, amp_dtype, dino=None) -> tuple[float, float]:
    model.eval()
    ps, ss = [], []
    with torch.inference_mode():
        for low, high, _ in pairs:
            x = low[None].to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                guidance = dino(x) if dino is not None and model.config.guided else None
                out = model(x, guidance=guidance)
            out = out.float().clamp(0, 1).cpu()
            ps.append(psnr(out, high[None]))
            ss.append(ssim(out, high[None]))
    model.train()
    return sum(ps) / len(ps), sum(ss) / len(ss)


def train(config: str | Path | dict, resume: bool = False, *, overrides: dict | None = None,
          stop_after: int | None = None) -> dict[str, Any]:
    """Train a model from a training config (YAML path or mapping); returns the run summary.

    ``resume`` continues exactly from ``output_dir/checkpoint.safetensors``. ``stop_after`` ends
    the run (with a checkpoint) after that global step without changing the schedule — what an
    interruption does. Ctrl-C (or SIGTERM) saves a checkpoint, then raises ``KeyboardInterrupt``.

    Example:
        >>> summary = train("configs/train/default.yaml")          # doctest: +SKIP
        >>> summary = train("configs/train/default.yaml", resume=True)  # doctest: +SKIP
    """
    cfg = load_train_config(config, overrides)
    out_dir = Path(cfg["output_dir"])
    ckpt_path = out_dir / CHECKPOINT
    if not resume and ckpt_path.exists():
        raise OutputError(f"{ckpt_path} exists: pass --resume to continue, or use another output_dir")
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    device = resolve_device(cfg["device"])
    amp_dtype = resolve_amp(cfg["amp"], device)
    seed = int(cfg["seed"])
    torch.manual_seed(seed)

    # model, DINO, loss
    model = build_model(cfg["model"] if not isinstance(cfg["model"], dict) else _model_config(cfg["model"]))
    if cfg["init_from"]:
        model.load_state_dict(load_model(cfg["init_from"]).state_dict())
    model.to(device).train()
    loss_cfg = LossConfig.from_dict(cfg["loss"])
    dino, dino_params = None, []
    if model.config.guided or loss_cfg.dino > 0:
        dino, dino_params = build_dino(model.config, cfg["dino"], device)
    criterion = RestorationLoss(loss_cfg, dino)

    # data
    d = cfg["data"]
    degradation = DegradeConfig.from_dict(d["degradation"])
    val_items: list = []
    if d["paired"]:
        source = PairedCrops(d["paired"], crop=d["crop"], batch_size=d["batch_size"])
    else:
        train_paths, held_out = _images_split(d["images"], float(d["val_fraction"]))
        source = SyntheticPairs(train_paths, crop=d["crop"], batch_size=d["batch_size"],
                                degradation=degradation, scale=tuple(d["scale"]))
        if not d["val_paired"]:
            for root in {r for _, r in held_out}:
                val_items += validation_pairs([p for p, r in held_out if r == root], root, seed=d["val_seed"],
                                              crop=d["val_crop"], degradation=degradation)
            val_items = val_items[: d["val_limit"] or None]
    if d["val_paired"]:
        folder = PairedFolder(d["val_paired"])
        val_items = [folder[i] for i in range(min(len(folder), d["val_limit"] or len(folder)))]
    clip_source, clip_every = None, 0
    if d["clips"]:
        c = dict(d["clips"])
        clip_every = int(c.pop("every", 4))
        stills = c.pop("stills", False)
        still_paths = (train_paths if stills is True else list_images(stills) if stills else []) if not d["paired"] else []
        clip_source = ClipPairs(frame_dirs=c.pop("frame_dirs", []) or [], videos=c.pop("videos", []) or [],
                                stills=still_paths, degradation=degradation, **c)

    # optimisation
    o = cfg["optim"]
    groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": o["lr"]}]
    if dino_params:
        groups.append({"params": dino_params, "lr": float(cfg["dino"]["lora"].get("lr", o["lr"] * 0.1))})
    opt = torch.optim.AdamW(groups, lr=o["lr"], betas=tuple(o["betas"]), weight_decay=o["weight_decay"])
    total = int(cfg["steps"])
    min_ratio = float(o["min_lr"]) / float(o["lr"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, int(o["warmup_steps"]), min_ratio))
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    ema = EMA(model, cfg["ema_decay"])
    data_gen = torch.Generator().manual_seed(seed)

    step, elapsed, best = 0, 0.0, -math.inf
    if resume:
        tensors, meta = load_checkpoint(ckpt_path)
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        ema.shadow = {k[4:]: v.to(device) for k, v in tensors.items() if k.startswith("ema.")}
        if dino is not None and dino_params:
            named = dict(dino.named_parameters())
            with torch.no_grad():
                for k, v in tensors.items():
                    if k.startswith("dino."):
                        named[k[5:]].copy_(v)
        _restore_optimizer(opt, tensors, json.loads(meta["optimizer"]))
        scheduler.load_state_dict(json.loads(meta["scheduler"]))
        if scaler is not None and "scaler.scale" in tensors:
            scaler.load_state_dict({**json.loads(meta["scaler"]), "scale": float(tensors["scaler.scale"])})
        torch.set_rng_state(tensors["rng.torch"])
        data_gen.set_state(tensors["rng.data"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
        info = json.loads(meta["info"])
        step, elapsed, best = int(meta["step"]), float(info["elapsed_s"]), float(info.get("best_psnr", -math.inf))
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2))

    loss_names = [k for k in ("charbonnier", "l1", "ssim", "dino", "temporal")
                  if getattr(loss_cfg, k) > 0 and (k != "temporal" or clip_source is not None)]
    logs = _Logs(out_dir, loss_names, append=resume and (out_dir / "train_log.csv").exists())
    eval_model = copy.deepcopy(model)
    dropout = float(model.config.guidance.dropout)
    hardware = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads" if device.type == "cpu" \
        else torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)

    def info() -> dict[str, Any]:
        return {"elapsed_s": elapsed, "best_psnr": best, "device": str(device), "hardware": hardware}

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, model=model, ema=ema, opt=opt, scheduler=scheduler, scaler=scaler, step=step,
                        data_gen=data_gen, info=info(),
                        dino_params={n: p for n, p in dino.named_parameters() if p.requires_grad} if dino_params else None)

    def forward(low: torch.Tensor) -> torch.Tensor:
        guidance = None
        if dino is not None and model.config.guided:
            use = float(torch.rand((), generator=data_gen)) >= dropout
            if use:
                guidance = differentiable(dino)(low) if dino_params else dino(low)  # LoRA needs grads
        return model(low, guidance=guidance)

    from tqdm import tqdm

    bar = tqdm(total=total, initial=step, desc=cfg["name"], unit="step", disable=not cfg["progress"],
               mininterval=10.0, dynamic_ncols=True)
    status = "finished"
    previous_sigterm = _sigterm_as_interrupt()
    window_t, window_n = time.perf_counter(), 0
    try:
        while step < total:
            if stop_after is not None and step >= stop_after:
                status = "stopped"
                break
            if cfg["time_limit_s"] is not None and elapsed >= float(cfg["time_limit_s"]):
                status = "time_limit"
                break
            t0 = time.perf_counter()
            low, high = source.batch(data_gen)
            clips = clip_source.batch(data_gen) if clip_source is not None and step % clip_every == 0 else None
            low, high = low.to(device), high.to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                pred = forward(low)
                loss, parts = criterion(pred.float(), high, low)
                if clips is not None:
                    clow, chigh = (t.to(device) for t in clips)
                    cpred = forward(clow.flatten(0, 1)).float().reshape(chigh.shape)
                    closs, cparts = criterion(cpred, chigh, clow)
                    loss = loss + closs
                    for k, v in cparts.items():
                        parts[k] = parts.get(k, 0.0) + v
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
            else:
                loss.backward()
            params = [p for g in opt.param_groups for p in g["params"]]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, float(o["grad_clip"])))
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            scheduler.step()
            step += 1
            ema.update(model, step)
            elapsed += time.perf_counter() - t0
            window_n += 1
            bar.update(1)
            if step % cfg["log_every"] == 0 or step == total:
                now = time.perf_counter()
                row = {"step": step, "time_s": round(elapsed, 2), "lr": opt.param_groups[0]["lr"],
                       "loss": float(loss.detach()), **parts, "grad_norm": grad_norm,
                       "s_per_step": round((now - window_t) / max(1, window_n), 4)}
                window_t, window_n = now, 0
                logs.train(row)
                bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}")
            if val_items and (step % cfg["val_every"] == 0 or step == total):
                p, s = _validate(ema.copy_to(eval_model), val_items, device, amp_dtype, dino)
                if p > best:
                    best = p
                    save_model(eval_model, out_dir / "best_ema.safetensors",
                               {"step": step, "val_psnr": p, "val_ssim": s, "train_time_s": round(elapsed, 1)})
                logs.val({"step": step, "time_s": round(elapsed, 2), "psnr": p, "ssim": s, "best_psnr": best})
                bar.write(f"step {step}: val PSNR {p:.2f} dB, SSIM {s:.4f} (EMA; best {best:.2f})")
            if step % cfg["checkpoint_every"] == 0:
                checkpoint()
    except KeyboardInterrupt:
        checkpoint()
        bar.close()
        logs.close()
        print(f"interrupted at step {step}: checkpoint saved to {ckpt_path} (continue with --resume)", file=sys.stderr)
        raise
    finally:
        bar.close()
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
    checkpoint()
    logs.close()
    ema.copy_to(eval_model)
    summary = {"name": cfg["name"], "status": status, "step": step, "steps": total, "train_time_s": round(elapsed, 1),
               "best_val_psnr": best if math.isfinite(best) else None, "device": str(device), "hardware": hardware,
               "final_loss": float(loss.detach()) if step and "loss" in locals() else None}
    if status in ("finished", "time_limit"):
        save_model(eval_model, out_dir / "final_ema.safetensors", {"step": step, "train_time_s": round(elapsed, 1)})
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _sigterm_as_interrupt():
    """In the main thread, make SIGTERM behave like Ctrl-C (checkpoint, then stop): background runs
    (``nohup ... &``) ignore SIGINT. Returns the previous handler, or None if not installed."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    return signal.signal(signal.SIGTERM, handler)


def _model_config(data: dict):
    from vidllie.models import ModelConfig

    return ModelConfig.from_dict(data)


def main(argv: list[str] | None = None) -> int:
    """``python -m vidllie.train.trainer --config FILE [--resume]``: the same as ``vidllie train``
    (one-line errors, exit codes), returning the exit status."""
    from vidllie.cli import app

    try:
        app(["train", *(sys.argv[1:] if argv is None else argv)], prog_name="python -m vidllie.train.trainer")
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
