"""Scene-level exposure: the model's tone judgement taken on key frames and reused across the
frames of one scene, and restraint where the input holds no signal (kornia/torch ops).

A per-frame model judges exposure afresh on every frame, so a still scene's brightness pops from
frame to frame, and it lifts near-black read noise and H.264 blocks into grey blotches. This
stage sits between the model and the temporal stage:

1. **Tone curve of the scene.** On a key frame, the model's output is summarised as a tone curve
   indexed by input intensity: the mean log gain (output luma / input luma) in ``BINS`` bins of the
   input's gamma-corrected luma. Coefficients indexed by intensity (not by pixel position) survive
   motion. Every frame of the scene is then corrected per pixel so that its gain at each input
   intensity equals the scene's: the model's detail stays, its per-frame exposure swing goes.
   A new key frame is taken at a scene cut, when the input's mean luma has moved by more than
   ``light_step`` (log ratio) from the key frame's (a light change), or after ``max_age`` frames.
   At a cut the curve is replaced; at a light change it moves to the new key frame's over
   ``SETTLE`` frames; between key frames it is filtered slowly (``rate``).
2. **Held brightness.** The scene's overall gain (output over input mean luma) is held like the
   curve, and the input's level is low-passed (``LEVEL_RATE``): the per-bin correction reads the
   bins through the input's noise, and a still scene's brightness would otherwise move with it.
3. **Restraint.** Where the input's local mean (a 3x3 box at 1/``SCALE`` resolution) is at the
   noise floor (<= ``floor`` codes, full output from ``floor + ramp``), there is no signal to
   lift: the output fades to the input, low-passed and no brighter than that local mean, times at
   most ``dark_gain``. The `fast` network would lift read noise and flat black to a smooth grey
   near 80 codes, and an H.264 block edge of one code into a blotch (docs/benchmarks.md).
4. **No veil on a visible scene.** Once the scene's input is already visible (its mean luma from
   ``veil_from[0]`` codes, fully at ``veil_from[1]``), the curve's gains are scaled down where they
   would lift the frame's mean luma above ``max_mean`` of the range; a dark scene keeps the
   model's exposure.

The stage follows light changes itself, so the temporal stage's persistence jump (its
brightness snapping to the input's after ``persist`` frames beyond ``step``) is turned off with
it (``smoother.step = inf``); with the jump on, the whole dashcam clip still pops by 6 levels
(scripts/realclip_report.py)::

    exposure = SceneExposure()
    y = exposure(y, x, cuts)   # (T, 3, H, W) model output and input in [0, 1]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import kornia
import torch
import torch.nn.functional as F

from vidllie.ops import luma

BINS = 16
_EPS = 1.0 / 255.0


def _bins(y: torch.Tensor) -> torch.Tensor:
    """Luma in [0, 1] -> fractional bin position in [0, BINS - 1] (gamma 0.4: night codes spread)."""
    return y.clamp(0.0, 1.0).pow(0.4) * (BINS - 1)


def _curve(x_luma: torch.Tensor, log_gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean log gain per input bin of one frame (linear binning weights): (BINS,), weights (BINS,)."""
    pos = _bins(x_luma).flatten()
    lo = pos.floor().long().clamp(0, BINS - 1)
    hi = (lo + 1).clamp(max=BINS - 1)
    w_hi = pos - lo.float()
    g = log_gain.flatten()
    zeros = torch.zeros(BINS, device=g.device)
    weight = zeros.clone().index_add_(0, lo, 1 - w_hi).index_add_(0, hi, w_hi)
    total = zeros.index_add_(0, lo, (1 - w_hi) * g).index_add_(0, hi, w_hi * g)
    return total / weight.clamp_min(1e-6), weight


def _fill(curve: torch.Tensor, weight: torch.Tensor, min_weight: float) -> torch.Tensor:
    """Bins with too few pixels take their nearest populated neighbour's value."""
    ok = weight >= min_weight
    if not bool(ok.any()):
        return torch.zeros_like(curve)
    idx = torch.arange(BINS, device=curve.device)
    good = idx[ok]
    nearest = good[(idx[:, None] - good[None, :]).abs().argmin(dim=1)]
    return curve[nearest]


def _lookup(curve: torch.Tensor, x_luma: torch.Tensor) -> torch.Tensor:
    pos = _bins(x_luma)
    lo = pos.floor().long().clamp(0, BINS - 1)
    hi = (lo + 1).clamp(max=BINS - 1)
    w = pos - lo.float()
    return curve[lo] * (1 - w) + curve[hi] * w


class SceneExposure:
    """Stateful across batches; ``reset()`` for a new stream. ``keys`` counts key frames taken."""

    def __init__(self, enabled: bool = True, *, light_step: float = 0.2, rate: float = 0.02, max_age: int = 300,
                 floor: float = 3.0, ramp: float = 6.0, dark_gain: float = 10.0,
                 max_mean: float = 0.42, veil_from: tuple[float, float] = (30.0, 60.0)) -> None:
        self.enabled = enabled
        self.light_step, self.rate, self.max_age = light_step, rate, max_age
        self.floor, self.ramp, self.dark_gain, self.max_mean = floor / 255.0, ramp / 255.0, dark_gain, max_mean
        self.veil_from = (veil_from[0] / 255.0, veil_from[1] / 255.0)
        self.keys = 0
        self.reset()

    def reset(self) -> None:
        self.curve: torch.Tensor | None = None  # the scene's log gain per input bin
        self.key_mean: float | None = None  # log mean luma of the key frame's input
        self.scene_mean: float | None = None  # log mean luma of the scene's input, filtered like the curve
        self.ratio: float | None = None  # log of the scene's output / input mean luma, filtered like the curve
        self.level: float | None = None  # log mean luma of the input, low-passed
        self.age = 0
        self.settle = 0  # frames left to move the curve to a new key frame's

    def __call__(self, y: torch.Tensor, x: torch.Tensor, cuts: Sequence[bool] | None = None) -> torch.Tensor:
        """(T, 3, H, W) model output ``y`` and input ``x`` (same size, [0, 1]) -> corrected output."""
        if not self.enabled:
            return y
        out = torch.empty_like(y)
        cuts = [False] * y.shape[0] if cuts is None else cuts
        for i in range(y.shape[0]):
            out[i : i + 1] = self._frame(y[i : i + 1].float(), x[i : i + 1].float(), bool(cuts[i]))
        return out

    def _frame(self, y: torch.Tensor, x: torch.Tensor, cut: bool) -> torch.Tensor:
        # Everything but the final blend runs on 1/SCALE-resolution luma (the curve, the signal
        # test and the correction are smooth), then two maps are upsampled: out = y * A + B, where
        # B is the grey near-black fill made from the input.
        size = y.shape[-2:]
        xl = F.adaptive_avg_pool2d(luma(x), _small(size))
        yl = F.adaptive_avg_pool2d(luma(y), xl.shape[-2:])
        # the input's local mean: what the curve is indexed by (noise averaged) and the signal test
        local = kornia.filters.box_blur(xl, 3)
        log_gain = torch.log(yl + _EPS) - torch.log(local + _EPS)
        curve, weight = _curve(local, log_gain)
        curve = _fill(curve, weight, 1e-3 * local.numel())
        mean_in = float(torch.log(xl.mean() + _EPS))
        light_change = self.key_mean is not None and abs(mean_in - self.key_mean) > self.light_step
        if self.curve is None or cut:
            self.curve, self.key_mean, self.scene_mean, self.age, self.settle = curve, mean_in, mean_in, 0, 0
            self.keys += 1
        elif light_change or self.age >= self.max_age:
            # a new key frame; the curve moves to it over a few frames (no pop) instead of jumping
            self.key_mean, self.age, self.settle = mean_in, 0, SETTLE
            self.keys += 1
        rate = self.rate if self.settle == 0 else 1.0 / (self.settle + 1)
        self.settle = max(0, self.settle - 1)
        if self.age or rate < 1:
            self.curve = self.curve + rate * (curve - self.curve)
            self.scene_mean += rate * (mean_in - self.scene_mean)
        self.age += 1
        scene = self.curve
        # no veil on a scene already visible (veil: 0 below veil_from[0], 1 from veil_from[1]):
        # scale the scene's log gains so the frame's mean luma stays <= max_mean
        predicted = (torch.exp(_lookup(scene, local)) * (local + _EPS) - _EPS).mean()
        base = local.mean() + _EPS
        lo, hi = self.veil_from
        level = math.exp(self.scene_mean) - _EPS
        veil = min(1.0, max(0.0, (level - lo) / (hi - lo))) if hi > lo else float(level >= lo)
        if veil > 0 and float(predicted) > self.max_mean and float(predicted) > float(base):
            scale = (torch.log(base.new_tensor(self.max_mean)) - torch.log(base)) / torch.log(predicted / base)
            scene = scene * (1.0 - veil * (1.0 - scale.clamp(0.0, 1.0)))
        scene_gain = _lookup(scene, local)
        corr = torch.exp(scene_gain - _lookup(curve, local))
        # restraint: where the input's local mean is at the noise floor there is no detail to lift:
        # the output there is the input low-passed (noise and blocks averaged away) times at most
        # dark_gain, so what little light there is (sky glow) stays, smooth and dark
        w = ((local - self.floor) / self.ramp).clamp(0.0, 1.0)
        # neutral: near black, the input's colour is its noise and bias; no brighter than the local
        # mean, so a light beside the fill does not spread a lifted glow into it
        low = torch.minimum(kornia.filters.gaussian_blur2d(xl, (5, 5), (1.5, 1.5)), local)
        fill = (1 - w) * torch.exp(scene_gain).clamp(max=self.dark_gain) * low  # grey: one channel
        gain_map = w * corr
        # The scene's overall gain (output over input mean luma) is held like its curve. The
        # per-bin correction reads the bins through the input's noise, which would otherwise move
        # the output's brightness a little on every frame of a still scene. The input's level is
        # low-passed too (LEVEL_RATE): frame-to-frame jitter of a still scene's input mean is not
        # passed on, a real change is followed within a few frames. Measured on the 1/SCALE maps
        # (the output's mean luma is the mean of yl * A + B there), applied to them.
        log_out = float(torch.log(torch.addcmul(fill, yl, gain_map).mean() + _EPS))
        if self.ratio is None or cut:
            self.ratio, self.level = log_out - mean_in, mean_in
        else:
            self.ratio += rate * (log_out - mean_in - self.ratio)
            self.level += max(rate, LEVEL_RATE) * (mean_in - self.level)
        hold = math.exp(min(max(self.ratio + self.level - log_out, -HOLD), HOLD))
        maps = F.interpolate(torch.cat([gain_map, fill], dim=1) * hold, size=size, mode="bilinear", align_corners=False)
        return torch.addcmul(maps[:, 1:], y, maps[:, :1]).clamp_(0.0, 1.0)  # y * A + B


SCALE = 4
# the largest correction (log) of the held overall gain in one frame
HOLD = 0.1
# how fast the held brightness follows the input's mean luma, per frame
LEVEL_RATE = 0.25
# frames over which the curve moves to a light change's new key frame
SETTLE = 8


def _small(size: torch.Size) -> tuple[int, int]:
    return max(1, size[0] // SCALE), max(1, size[1] // SCALE)
