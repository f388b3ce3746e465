"""The training loop behind ``vidllie train --config configs/train/<name>.yaml [--resume]``.

This module owns the loop: AdamW + linear warm-up + cosine decay, gradient clipping, AMP on CUDA
(bf16, else fp16 with a scaler), EMA weights, validation PSNR/SSIM on a fixed held-out split,
checkpoints every N steps and on Ctrl-C (format in :mod:`vidllie.train.state`), exact resume, a
tqdm bar and CSV + JSON-lines logs. The config is the typed
:class:`vidllie.train.config.TrainConfig`. DINO (when the model is guided or the DINO loss is on)
is frozen, optionally with LoRA adapters (peft, the ``train`` extra). What the loop is built from
(schedule, AMP, DINO, data, validation, logs) is in :mod:`vidllie.train.parts`.

Outputs in ``output_dir``: ``checkpoint.safetensors`` (resume state), ``best_ema.safetensors``
and ``final_ema.safetensors`` (loadable with ``load_model``), ``train_log.csv``, ``val_log.csv``,
``log.jsonl``, ``config.json``, ``summary.json``.
"""

from __future__ import annotations

import copy
import json
import math
import platform
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

from vidllie.errors import InputError, OutputError
from vidllie.models import build_model, load_model, save_model
from vidllie.pipeline.device import resolve_device
from vidllie.train.config import TrainConfig, load_train_config
from vidllie.train.losses import RestorationLoss, differentiable
from vidllie.train.parts import (
    Logs, TrainingData, build_dino, init_partially, lr_factor, resolve_amp, step_batches, validate_model,
)
from vidllie.train.state import CHECKPOINT, EMA, load_checkpoint, restore_optimizer, save_checkpoint

__all__ = ["CHECKPOINT", "TrainingRun", "load_train_config", "train"]


# -------------------------------------------------------------------------------------- run
class TrainingRun:
    """One run's objects and counters (step, elapsed time, best validation PSNR, last loss)."""

    def __init__(self, cfg: TrainConfig, resume: bool) -> None:
        self.cfg = cfg
        self.out_dir = Path(cfg.output_dir)
        self.ckpt_path = self.out_dir / CHECKPOINT
        if not resume and self.ckpt_path.exists():
            raise OutputError(f"{self.ckpt_path} exists: pass --resume to continue, or use another output_dir")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        self.device = device = resolve_device(cfg.device)
        self.amp_dtype = resolve_amp(cfg.amp, device)
        torch.manual_seed(int(cfg.seed))

        # model, DINO, loss
        self.model = model = build_model(cfg.model)
        if cfg.init_from:
            init_partially(model, load_model(cfg.init_from), cfg.init_from)
        model.to(device).train()
        o = cfg.optim
        self.dino, dino_params = None, []
        if model.config.guided or cfg.loss.dino > 0:
            self.dino, dino_params = build_dino(model.config, cfg.dino, device)
        self.criterion = RestorationLoss(cfg.loss, self.dino)
        self.teacher = None
        if cfg.loss.teacher > 0:
            # Frozen and deterministic (an unguided model, eval mode): it draws no random numbers,
            # so resuming stays exact and nothing of it is checkpointed.
            self.teacher = load_model(cfg.teacher).to(device).eval().requires_grad_(False)
            if self.teacher.config.guided:
                raise InputError(f"teacher {cfg.teacher}: a DINO-guided teacher is not supported; use an unguided model")
        self.data = TrainingData(cfg.data)
        self._batches = None  # worker-made batches (data.workers > 0), started at the first step

        # optimisation
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": o.lr}]
        if dino_params:
            lora_lr = cfg.dino.lora.lr
            groups.append({"params": dino_params, "lr": float(lora_lr if lora_lr is not None else o.lr * 0.1)})
        self.lora = bool(dino_params)
        self.opt = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        self.total = int(cfg.steps)
        total, warmup, min_ratio = self.total, int(o.warmup_steps), float(o.min_lr) / float(o.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(s, total, warmup, min_ratio))
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.ema = EMA(model, cfg.ema_decay)
        self.data_gen = torch.Generator().manual_seed(int(cfg.seed))
        self.step, self.elapsed, self.best = 0, 0.0, -math.inf
        self.last_loss: float | None = None
        if resume:
            self.restore()
        self.eval_model = copy.deepcopy(model)
        self.dropout = float(model.config.guidance.dropout)
        self.hardware = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads" \
            if device.type == "cpu" else torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)

    def restore(self) -> None:
        """Continue exactly from the run's checkpoint."""
        tensors, meta = load_checkpoint(self.ckpt_path)
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.ema.shadow = {k[4:]: v.to(self.device) for k, v in tensors.items() if k.startswith("ema.")}
        if self.dino is not None and self.lora:
            named = dict(self.dino.named_parameters())
            with torch.no_grad():
                for k, v in tensors.items():
                    if k.startswith("dino."):
                        named[k[5:]].copy_(v)
        restore_optimizer(self.opt, tensors, json.loads(meta["optimizer"]))
        self.scheduler.load_state_dict(json.loads(meta["scheduler"]))
        if self.scaler is not None and "scaler.scale" in tensors:
            self.scaler.load_state_dict({**json.loads(meta["scaler"]), "scale": float(tensors["scaler.scale"])})
        torch.set_rng_state(tensors["rng.torch"])
        self.data_gen.set_state(tensors["rng.data"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
        info = json.loads(meta["info"])
        self.step, self.elapsed = int(meta["step"]), float(info["elapsed_s"])
        self.best = float(info.get("best_psnr", -math.inf))

    def info(self) -> dict[str, Any]:
        return {"elapsed_s": self.elapsed, "best_psnr": self.best, "device": str(self.device), "hardware": self.hardware}

    def checkpoint(self) -> None:
        dino_params = {n: p for n, p in self.dino.named_parameters() if p.requires_grad} if self.lora else None
        save_checkpoint(self.ckpt_path, model=self.model, ema=self.ema, opt=self.opt, scheduler=self.scheduler,
                        scaler=self.scaler, step=self.step, data_gen=self.data_gen, info=self.info(),
                        dino_params=dino_params)

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        """The model on a batch; a guided model gets DINO maps unless guidance dropout drops them."""
        maps = None
        if self.dino is not None and self.model.config.guided:
            if float(torch.rand((), generator=self.data_gen)) >= self.dropout:
                maps = differentiable(self.dino)(low) if self.lora else self.dino(low)  # LoRA needs grads
        return self.model(low, dino_maps=maps)

    def teach(self, low: torch.Tensor) -> torch.Tensor | None:
        """The teacher's clamped output for the distillation term (None without a teacher)."""
        if self.teacher is None:
            return None
        with torch.no_grad():
            return self.teacher(low).float().clamp(0.0, 1.0)

    def loss(self, low, high, clips) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            pred = self.forward(low)
            loss, parts = self.criterion(pred.float(), high, low, self.teach(low))
            if clips is not None:
                clow, chigh = (t.to(self.device) for t in clips)
                cpred = self.forward(clow.flatten(0, 1)).float().reshape(chigh.shape)
                cteach = self.teach(clow.flatten(0, 1))
                closs, cparts = self.criterion(cpred, chigh, clow, None if cteach is None else cteach.reshape(chigh.shape))
                loss = loss + closs
                for k, v in cparts.items():
                    parts[k] = parts.get(k, 0.0) + v
        return loss, parts

    def train_step(self) -> tuple[dict[str, float], float]:
        """One optimisation step; returns the loss parts and the gradient norm."""
        t0 = time.perf_counter()
        low, high, clips = self.next_batch()
        low, high = low.to(self.device, non_blocking=True), high.to(self.device, non_blocking=True)
        loss, parts = self.loss(low, high, clips)
        opt, scaler = self.opt, self.scaler
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        else:
            loss.backward()
        params = [p for g in opt.param_groups for p in g["params"]]
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, float(self.cfg.optim.grad_clip)))
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        self.scheduler.step()
        self.step += 1
        self.ema.update(self.model, self.step)
        self.elapsed += time.perf_counter() - t0
        self.last_loss = float(loss.detach())
        return parts, grad_norm

    def next_batch(self):
        """``(low, high, clips)`` for the current step: from the worker processes when
        ``data.workers`` > 0 (they depend on the step alone: resuming is exact), else drawn here
        from the run's data generator (checkpointed)."""
        workers = int(self.cfg.data.workers)
        if not workers:
            low, high = self.data.source.batch(self.data_gen)
            return low, high, self.data.clip_batch(self.step, self.data_gen)
        if self._batches is None:
            self._batches = step_batches(self.data, self.cfg.seed, self.step, self.total, workers,
                                         pin_memory=self.device.type == "cuda")
        return next(self._batches)

    def close(self) -> None:
        """Stop the batch workers (if any)."""
        self._batches = None

    def validate(self) -> tuple[float, float]:
        """EMA weights on the validation items; saves ``best_ema`` on a new best PSNR."""
        p, s = validate_model(self.ema.copy_to(self.eval_model), self.data.val_items, self.device, self.amp_dtype, self.dino)
        if p > self.best:
            self.best = p
            save_model(self.eval_model, self.out_dir / "best_ema.safetensors",
                       {"step": self.step, "val_psnr": p, "val_ssim": s, "train_time_s": round(self.elapsed, 1)})
        return p, s

    def stop_reason(self, stop_after: int | None) -> str | None:
        if self.step >= self.total:
            return "finished"
        if stop_after is not None and self.step >= stop_after:
            return "stopped"
        if self.cfg.time_limit_s is not None and self.elapsed >= float(self.cfg.time_limit_s):
            return "time_limit"
        return None

    def loss_names(self) -> list[str]:
        lc = self.cfg.loss
        return [k for k in ("charbonnier", "l1", "ssim", "dino", "teacher", "temporal")
                if getattr(lc, k) > 0 and (k != "temporal" or self.data.clips is not None)]

    def summary(self, status: str) -> dict[str, Any]:
        return {"name": self.cfg.name, "status": status, "step": self.step, "steps": self.total,
                "train_time_s": round(self.elapsed, 1), "best_val_psnr": self.best if math.isfinite(self.best) else None,
                "device": str(self.device), "hardware": self.hardware,
                "final_loss": self.last_loss if self.step else None}


def _loop(run: TrainingRun, logs: Logs, bar, stop_after: int | None) -> str:
    """Steps until the schedule ends, ``stop_after`` or the time limit; returns the status."""
    cfg = run.cfg
    window_t, window_n = time.perf_counter(), 0
    while (status := run.stop_reason(stop_after)) is None:
        parts, grad_norm = run.train_step()
        window_n += 1
        bar.update(1)
        step = run.step
        if step % cfg.log_every == 0 or step == run.total:
            now = time.perf_counter()
            row = {"step": step, "time_s": round(run.elapsed, 2), "lr": run.opt.param_groups[0]["lr"],
                   "loss": run.last_loss, **parts, "grad_norm": grad_norm,
                   "s_per_step": round((now - window_t) / max(1, window_n), 4)}
            window_t, window_n = now, 0
            logs.train(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}")
        if run.data.val_items and (step % cfg.val_every == 0 or step == run.total):
            p, s = run.validate()
            logs.val({"step": step, "time_s": round(run.elapsed, 2), "psnr": p, "ssim": s, "best_psnr": run.best})
            bar.write(f"step {step}: val PSNR {p:.2f} dB, SSIM {s:.4f} (EMA; best {run.best:.2f})")
        if step % cfg.checkpoint_every == 0:
            run.checkpoint()
    return status


def train(config: str | Path | dict | TrainConfig, resume: bool = False, *, overrides: dict | None = None,
          stop_after: int | None = None) -> dict[str, Any]:
    """Train a model from a training config (YAML path, mapping or TrainConfig); returns the run summary.

    ``resume`` continues exactly from ``output_dir/checkpoint.safetensors``. ``stop_after`` ends
    the run (with a checkpoint) after that global step without changing the schedule — what an
    interruption does. Ctrl-C (or SIGTERM) saves a checkpoint, then raises ``KeyboardInterrupt``.

    Example:
        >>> summary = train("configs/train/default.yaml")          # doctest: +SKIP
        >>> summary = train("configs/train/default.yaml", resume=True)  # doctest: +SKIP
    """
    cfg = load_train_config(config, overrides)
    run = TrainingRun(cfg, resume)
    (run.out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    logs = Logs(run.out_dir, run.loss_names(), append=resume and (run.out_dir / "train_log.csv").exists())
    from tqdm import tqdm

    bar = tqdm(total=run.total, initial=run.step, desc=cfg.name, unit="step", disable=not cfg.progress,
               mininterval=10.0, dynamic_ncols=True)
    previous_sigterm = _sigterm_as_interrupt()
    try:
        status = _loop(run, logs, bar, stop_after)
    except KeyboardInterrupt:
        run.checkpoint()
        bar.close()
        logs.close()
        print(f"interrupted at step {run.step}: checkpoint saved to {run.ckpt_path} (continue with --resume)",
              file=sys.stderr)
        raise
    finally:
        run.close()
        bar.close()
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
    run.checkpoint()
    logs.close()
    run.ema.copy_to(run.eval_model)
    summary = run.summary(status)
    if status in ("finished", "time_limit"):
        save_model(run.eval_model, run.out_dir / "final_ema.safetensors",
                   {"step": run.step, "train_time_s": round(run.elapsed, 1)})
    (run.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _sigterm_as_interrupt():
    """In the main thread, make SIGTERM behave like Ctrl-C (checkpoint, then stop): background runs
    (``nohup ... &``) ignore SIGINT. Returns the previous handler, or None if not installed."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    return signal.signal(signal.SIGTERM, handler)
