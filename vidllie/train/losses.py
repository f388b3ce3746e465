"""Training losses: Charbonnier/L1 + SSIM (kornia), DINO perceptual contrastive, temporal.

All take (B, 3, H, W) tensors in [0, 1] (clips: (B, T, 3, H, W)) and return scalars.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import kornia
import torch
from torch import nn

DinoFn = Callable[[torch.Tensor], "list[torch.Tensor]"]


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if pred.ndim not in (4, 5) or pred.shape[-3] != 3:
        raise ValueError(f"expected (B, 3, H, W) or (B, T, 3, H, W), got {tuple(pred.shape)}")


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, *x.shape[-3:]) if x.ndim == 5 else x


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean of ``sqrt((pred - target)**2 + eps**2) - eps`` (an L1 that is smooth at 0).

    kornia's ``charbonnier_loss`` fixes eps = 1 (an L2 at image scale); scaling the residual by
    1/eps gives the restoration form with its numerically stable evaluation.

    Example:
        >>> round(charbonnier(torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)).item(), 3)
        0.499
    """
    _check_pair(pred, target)
    return eps * kornia.losses.charbonnier_loss(pred / eps, target / eps, reduction="mean")


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, window_size: int = 11) -> torch.Tensor:
    """``1 - SSIM`` (kornia, Gaussian window), averaged: 0 for identical images.

    Example:
        >>> x = torch.rand(1, 3, 32, 32)
        >>> ssim_loss(x, x).item() < 1e-6
        True
    """
    _check_pair(pred, target)
    return 2.0 * kornia.losses.ssim_loss(_flat(pred), _flat(target), window_size, max_val=1.0)


def temporal_consistency(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Charbonnier between the frame-to-frame changes of the output and of the target on clips
    (B, T, 3, H, W): flicker the target does not have is penalised, real motion is not.

    Example:
        >>> clip = torch.rand(1, 3, 3, 8, 8)
        >>> temporal_consistency(clip, clip).item()
        0.0
    """
    _check_pair(pred, target)
    if pred.ndim != 5 or pred.shape[1] < 2:
        raise ValueError(f"temporal consistency needs clips (B, T>=2, 3, H, W), got {tuple(pred.shape)}")
    return charbonnier(pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1], eps)


def distillation(pred: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, min_psnr: float = 0.0,
                 eps: float = 1e-3) -> torch.Tensor:
    """Charbonnier between the student's and a teacher's output, on the samples where the teacher
    is right: its PSNR against the target is at least ``min_psnr`` dB (0: every sample). A
    teacher that misjudges some scenes (the bundled model on pools of night light) then teaches
    only what it knows; no sample qualifying gives 0. Averaged over the qualifying samples.

    Example:
        >>> target = torch.full((2, 3, 8, 8), 0.5)
        >>> teacher = torch.stack([target[0], target[1] * 0])      # right on sample 0 only
        >>> student = torch.zeros(2, 3, 8, 8)
        >>> round(distillation(student, teacher, target, min_psnr=20.0).item(), 3)   # sample 0 only
        0.499
    """
    _check_pair(pred, teacher)
    _check_pair(pred, target)
    pred, teacher, target = _flat(pred), _flat(teacher), _flat(target)
    teacher = teacher.detach()
    per_sample = kornia.losses.charbonnier_loss(pred / eps, teacher / eps, reduction="none").mean(dim=(1, 2, 3)) * eps
    if min_psnr <= 0:
        return per_sample.mean()
    mse = (teacher.float() - target.float()).square().mean(dim=(1, 2, 3))
    keep = (-10.0 * torch.log10(mse.clamp_min(1e-10)) >= min_psnr).to(per_sample.dtype)
    return (per_sample * keep).sum() / keep.sum().clamp_min(1.0)


def differentiable(dino: DinoFn) -> DinoFn:
    """``dino`` as a callable with autograd on.

    :class:`vidllie.models.dino.DinoBackbone` runs its forward under ``torch.no_grad`` (right for
    guidance at inference); the perceptual loss and LoRA need gradients through the frozen
    backbone, so this calls the undecorated forward. Other callables are returned unchanged.

    Example:
        >>> f = differentiable(lambda x: [x * 2])
        >>> x = torch.ones(1, 3, 2, 2, requires_grad=True)
        >>> f(x)[0].requires_grad
        True
    """
    forward = getattr(type(dino).forward, "__wrapped__", None) if isinstance(dino, nn.Module) else None
    return functools.partial(forward, dino) if forward is not None else dino


class DinoContrastiveLoss(nn.Module):
    """DINO-IR perceptual contrastive loss in a frozen DINO feature space.

    For each chosen map ``l`` of ``dino(x)`` (a list of (B, C, h, w) maps, e.g. from
    :class:`vidllie.models.dino.DinoBackbone`) with weight ``w_l``::

        loss = sum_l w_l * L1(f_l(out), f_l(target)) / (L1(f_l(out), f_l(low)) + eps)

    i.e. the output is pulled towards the normal-light target and pushed away from the low-light
    input. Target and input features are computed without gradients; the output's features carry
    gradients back through the (frozen or LoRA-adapted) backbone (see :func:`differentiable`).

    Example:
        >>> feats = lambda x: [x.mean(1, keepdim=True), x[:, :1]]   # any callable with the contract
        >>> loss = DinoContrastiveLoss(feats, layers=(0, 1), weights=(1.0, 0.5))
        >>> x = torch.rand(1, 3, 16, 16)
        >>> loss(x, x, torch.zeros_like(x)).item()
        0.0
    """

    def __init__(self, dino: DinoFn, layers: Sequence[int] = (-1,), weights: Sequence[float] | None = None,
                 eps: float = 1e-7) -> None:
        super().__init__()
        self.dino = differentiable(dino)
        self.layers = tuple(int(i) for i in layers)
        self.weights = tuple(float(w) for w in (weights if weights is not None else [1.0] * len(self.layers)))
        if len(self.weights) != len(self.layers) or not self.layers:
            raise ValueError(f"{len(self.layers)} layers but {len(self.weights)} weights")
        self.eps = float(eps)

    def _select(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        n = len(feats)
        for i in self.layers:
            if not -n <= i < n:
                raise ValueError(f"DINO map index {i} out of range: the backbone returns {n} maps")
        return [feats[i] for i in self.layers]

    def forward(self, pred: torch.Tensor, target: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        _check_pair(pred, target)
        _check_pair(pred, low)
        pred, target, low = _flat(pred), _flat(target), _flat(low)
        with torch.no_grad():
            f_target = self._select(self.dino(target))
            f_low = self._select(self.dino(low))
        f_pred = self._select(self.dino(pred.clamp(0.0, 1.0)))
        total = pred.new_zeros(())
        for w, fp, ft, fl in zip(self.weights, f_pred, f_target, f_low):
            pos = (fp - ft).abs().mean()
            neg = (fp - fl.detach()).abs().mean()
            total = total + w * pos / (neg + self.eps)
        return total


@dataclass
class LossConfig:
    """Weights of the loss terms (0 turns a term off)."""

    charbonnier: float = 1.0
    l1: float = 0.0
    ssim: float = 0.2
    dino: float = 0.0
    dino_layers: tuple[int, ...] = (-2, -1)  # indices into the list ``dino(x)`` returns
    dino_weights: tuple[float, ...] = (0.5, 1.0)
    temporal: float = 0.0
    # Distillation from the training config's `teacher` model (see :func:`distillation`): weight,
    # and the teacher's per-sample PSNR against the target below which a sample is not distilled.
    teacher: float = 0.0
    teacher_min_psnr: float = 0.0

    @classmethod
    def from_dict(cls, data: dict | None) -> LossConfig:
        data = dict(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown loss keys: {sorted(unknown)}")
        for key in ("dino_layers", "dino_weights"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


class RestorationLoss(nn.Module):
    """The weighted sum of the configured terms; ``forward`` returns ``(total, {name: value})``.

    ``low`` is needed for the DINO term, ``teacher`` (the teacher's output) for the distillation
    term; clips (B, T, 3, H, W) enable the temporal term.

    Example:
        >>> crit = RestorationLoss(LossConfig(charbonnier=1.0, ssim=0.5))
        >>> x = torch.rand(2, 3, 16, 16)
        >>> total, parts = crit(x, x)
        >>> sorted(parts), total.item() < 1e-5
        (['charbonnier', 'ssim'], True)
    """

    def __init__(self, config: LossConfig | None = None, dino: DinoFn | None = None) -> None:
        super().__init__()
        self.config = config or LossConfig()
        self.dino_loss = None
        if self.config.dino > 0:
            if dino is None:
                raise ValueError("the DINO loss weight is > 0 but no DINO backbone was given")
            self.dino_loss = DinoContrastiveLoss(dino, self.config.dino_layers, self.config.dino_weights)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, low: torch.Tensor | None = None,
                teacher: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        parts: dict[str, torch.Tensor] = {}
        if c.charbonnier > 0:
            parts["charbonnier"] = c.charbonnier * charbonnier(pred, target)
        if c.l1 > 0:
            _check_pair(pred, target)
            parts["l1"] = c.l1 * (pred - target).abs().mean()
        if c.ssim > 0:
            parts["ssim"] = c.ssim * ssim_loss(pred.clamp(0.0, 1.0), target)
        if self.dino_loss is not None:
            if low is None:
                raise ValueError("the DINO contrastive loss needs the low-light input")
            parts["dino"] = c.dino * self.dino_loss(pred, target, low)
        if c.teacher > 0:
            if teacher is None:
                raise ValueError("the distillation loss weight is > 0 but no teacher output was given")
            parts["teacher"] = c.teacher * distillation(pred, teacher, target, c.teacher_min_psnr)
        if c.temporal > 0 and pred.ndim == 5:
            parts["temporal"] = c.temporal * temporal_consistency(pred, target)
        if not parts:
            raise ValueError("all loss weights are 0")
        total = torch.stack(list(parts.values())).sum()
        return total, {k: float(v.detach()) for k, v in parts.items()}
