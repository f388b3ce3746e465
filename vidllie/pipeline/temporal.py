"""Causal, motion-adaptive temporal smoothing of enhanced frames (kornia ops).

Per-frame enhancement flickers: the global brightness pumps and the noise crawls. Three stages fix
that without the failures of the usual filters (a moving-average deflicker adds flicker on a
steady source; a fixed temporal denoiser leaves ghost trails behind moving objects):

1. Brightness stabiliser: the frame's brightness relative to the previous output is measured as
   the *median* log-ratio over a coarse luma grid (moving objects in less than half the cells do
   not move it), and the frame is scaled so its brightness follows a slow exponential average. A
   steady source gets a gain of 1 (nothing added), and frame-to-frame jitter is damped more than
   the enhancement's gain amplifies it. A real change (a light switched on, auto-exposure) is
   told from jitter by persistence: once the ratio has stayed beyond ``step`` with one sign for
   ``persist`` frames the brightness jumps to the input's, so it is followed within a few frames.
2. Brightness-change limiter (when the source frames are given): the output's mean luma may
   move from frame to frame by at most ``follow`` times the *source's* change plus ``pull``
   times its own. The enhancement multiplies the brightness several times over, so without it a
   dashcam's content changes (headlights entering the frame) come out as larger brightness swings
   than the input has; with it the output flickers less than its source, and still settles at
   the enhanced brightness (a gap closes by ``pull`` per frame). A persisting change (stage 1's
   detector) is followed at once.
3. Recursive blending with the previous output, per pixel: where the (Gaussian-blurred) luma
   difference is below ``low`` the pixel is averaged over the frames it has been static (weight
   n / (n + 1) after n static frames, capped: the noise falls like a running mean), 0 above
   ``high`` (motion: the count restarts), linear between. Moving content therefore takes the
   current frame and leaves no trail.

State (previous output, frame size) carries across batches; a scene cut resets it::

    smoother = TemporalSmoother(strength=0.8)
    out = smoother(frames, cuts=[False] * len(frames), source=inputs)   # (T, 3, H, W) in [0, 1]
"""

from __future__ import annotations

from collections.abc import Sequence

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from vidllie.ops import apply_gain, luma, mean_luma

# Grid on which the brightness ratio is measured (cells along the long side).
_GRID = 32
# Floor added to luma before taking log-ratios: keeps near-black cells from dominating.
_EPS = 0.02
# Brightness-change limiter: the output's mean luma may change by FOLLOW x the source's change
# + PULL x its own change per frame (docs/benchmarks.md, flicker).
FOLLOW = 0.7
PULL = 0.05


def motion_weight(
    current: torch.Tensor,
    previous: torch.Tensor,
    max_weight: float,
    *,
    sigma: float = 2.0,
    low: float = 0.02,
    high: float = 0.06,
    previous_luma: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-pixel weight of ``previous`` in the blend: ``max_weight`` where static, 0 where moving.

    The *signed* luma difference is blurred before taking its magnitude, so sensor noise averages
    out (a 2-px Gaussian cuts it about 7x) while a real change survives. ``previous_luma``:
    ``luma(previous)`` when the caller has it already.

    Example:
        >>> a = torch.rand(1, 3, 64, 64)
        >>> round(motion_weight(a, a, 0.7).max().item(), 6)
        0.7
    """
    if current.shape != previous.shape or current.ndim != 4 or current.shape[1] != 3:
        raise ValueError(f"need two (B, 3, H, W) tensors of one shape, got {tuple(current.shape)} and {tuple(previous.shape)}")
    k = 2 * int(3 * sigma + 0.5) + 1
    # Reflect padding needs the half kernel below the frame size: frames under 7 px (thumbnails,
    # tests) get a shorter kernel along that axis (same sigma, truncated tails).
    h, w = current.shape[-2:]
    kh, kw = min(k, 2 * (h - 1) + 1), min(k, 2 * (w - 1) + 1)
    diff = luma(current) - (luma(previous) if previous_luma is None else previous_luma)
    if kh > 1 or kw > 1:
        diff = kornia.filters.gaussian_blur2d(diff, (kh, kw), (sigma, sigma))
    diff = diff.abs()
    moving = ((diff - low) / (high - low)).clamp(0.0, 1.0)
    return max_weight * (1.0 - moving)


def log_brightness_ratio(
    current: torch.Tensor, reference: torch.Tensor, reference_luma: torch.Tensor | None = None
) -> torch.Tensor:
    """Median over a coarse grid of ``log(luma(current) / luma(reference))``: (B,) tensor.

    The median makes it a global exposure measure that local motion does not move.
    ``reference_luma``: ``luma(reference)`` when the caller has it already.
    """
    h, w = current.shape[-2:]
    scale = _GRID / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    # Area means per cell (cheap at any frame size, unlike an anti-aliased resize).
    a = F.adaptive_avg_pool2d(luma(current), size)
    b = F.adaptive_avg_pool2d(luma(reference) if reference_luma is None else reference_luma, size)
    ratio = torch.log((a + _EPS) / (b + _EPS))
    return ratio.flatten(1).median(dim=1).values


class TemporalSmoother(nn.Module):
    """Stateful wrapper: brightness stabiliser + motion-adaptive recursive blend.

    ``strength`` in [0, 1]: 0 passes frames through. Static pixels are averaged over up to
    ``1 / (1 - cap)`` frames, ``cap = 1 - (1 - 0.9 * strength) / (1 + 5 * strength)`` (0.94 at
    0.8); brightness follows its average with rate ``0.25 * (1 - 0.9 * strength)`` and jumps after
    ``persist`` frames beyond ``step`` (log-ratio) with one sign.
    """

    def __init__(
        self, strength: float = 0.8, *, sigma: float = 2.0, low: float = 0.02, high: float = 0.06,
        step: float = 0.15, persist: int = 3, follow: float = FOLLOW, pull: float = PULL,
    ) -> None:
        super().__init__()
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"temporal strength must be in [0, 1], got {strength}")
        if not 0.0 <= low < high:
            raise ValueError(f"need 0 <= low < high, got {low}, {high}")
        self.strength = float(strength)
        self.sigma, self.low, self.high = sigma, low, high
        self.step, self.persist = step, persist
        self.follow, self.pull = follow, pull
        self.reset()

    @property
    def enabled(self) -> bool:
        return self.strength > 0

    def reset(self) -> None:
        """Forget the previous output (new stream, scene cut)."""
        self.previous: torch.Tensor | None = None
        self._previous_luma: torch.Tensor | None = None  # luma(previous): each frame needs it twice
        self.static_frames: torch.Tensor | None = None  # (1, 1, H, W) frames each pixel stayed static
        self._run = 0  # consecutive frames beyond ``step`` (signed: + brighter, - darker)
        self._mean: torch.Tensor | None = None  # the limiter's last output mean luma (device scalar)
        self._source_mean: torch.Tensor | None = None  # ... and its source frame's

    def forward(
        self, frames: torch.Tensor, cuts: Sequence[bool] | None = None, source: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(T, 3, H, W) consecutive frames in [0, 1] -> smoothed frames (float32).

        ``cuts[i]`` True means frame i starts a new scene: smoothing restarts there. ``source``:
        the frames before enhancement (same shape; any float dtype), for the brightness-change
        limiter; without it the limiter is off.
        """
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be (T, 3, H, W), got {tuple(frames.shape)}")
        if source is not None and (source.shape[0] != frames.shape[0] or source.shape[1] != 3):
            raise ValueError(f"source must be (T, 3, H, W) like frames, got {tuple(source.shape)} for {tuple(frames.shape)}")
        if cuts is not None and len(cuts) != frames.shape[0]:
            raise ValueError(f"got {len(cuts)} cut flags for {frames.shape[0]} frames")
        frames = frames.float()
        if not self.enabled:
            return frames
        cap = 1.0 - (1.0 - 0.9 * self.strength) / (1.0 + 5.0 * self.strength)
        rate = 0.25 * (1.0 - 0.9 * self.strength)  # how fast brightness follows the input
        out = torch.empty_like(frames)
        for i in range(frames.shape[0]):
            frame = frames[i : i + 1]
            prev = self.previous
            if prev is None or prev.shape != frame.shape or (cuts is not None and cuts[i]):
                prev = None
                self._run = 0
                self._mean = self._source_mean = None
                self.static_frames = torch.zeros_like(frame[:, :1])
            jump = None
            if prev is not None:
                # Exposure: out brightness = rate * input + (1 - rate) * previous (log domain),
                # or the input's once a change has persisted (a real change, not jitter).
                # Counted on the device (tensors, no float()): no device->host sync per frame.
                ratio = log_brightness_ratio(frame, prev, self._previous_luma)
                sign = (ratio[0] > self.step).float() - (ratio[0] < -self.step).float()
                same_way = (sign != 0) & (sign * self._run >= 0)
                self._run = torch.where(same_way, self._run + sign, sign)
                jump = (self._run.abs() >= self.persist).float()
                follow = rate + (1.0 - rate) * jump
                gain = torch.exp(-(1.0 - follow) * ratio)
                # Raising brightness must not blow what the model left unclipped (a headlit
                # surface while the exposure is held up from darker frames): no plain clamp.
                frame = apply_gain(frame, gain)
                still = motion_weight(frame, prev, 1.0, sigma=self.sigma, low=self.low, high=self.high,
                                      previous_luma=self._previous_luma)
                # Running mean over the frames a pixel has been static; motion restarts it.
                n = torch.where(still >= 0.5, self.static_frames + 1.0, torch.zeros_like(still))
                self.static_frames = n
                weight = still * (n / (n + 1.0)).clamp(max=cap)
                # frame + weight (prev - frame): lerp's broadcast of a 1-channel weight over a
                # channels-last frame is ~2x slower on the CPU
                frame = torch.addcmul(frame, weight, prev - frame)
            if source is not None:
                frame = self._limit_brightness_change(frame, source[i : i + 1], jump)
            out[i : i + 1] = frame
            self.previous = frame.clone()  # own copy: the caller may reuse or modify `frames`
            self._previous_luma = luma(frame)
            if source is not None:
                self._mean = self._previous_luma.mean(dim=(1, 2, 3))  # what the frame now has
        return out

    def _limit_brightness_change(self, frame: torch.Tensor, source: torch.Tensor, jump: torch.Tensor | None) -> torch.Tensor:
        """Scale ``frame`` (1, 3, H, W) so its mean luma changes by at most ``follow`` x the
        source's change plus ``pull`` x its own change; ``jump`` (0/1 tensor) lifts the bound.
        All on the device (no host sync)."""
        mean = mean_luma(frame)  # (1,)
        source_mean = mean_luma(source.float())
        if self._mean is not None:
            change = mean - self._mean
            bound = self.follow * (source_mean - self._source_mean).abs() + self.pull * change.abs()
            limited = torch.minimum(torch.maximum(change, -bound), bound)
            if jump is not None:
                limited = torch.lerp(limited, change, jump)
            # A gain, not an offset: blacks stay black. Bounded so that a black frame cannot blow up;
            # above 1 it rolls off towards white instead of clipping (apply_gain).
            gain = ((self._mean + limited) / mean.clamp(min=1e-4)).clamp(0.25, 4.0)
            frame = apply_gain(frame, gain)
        # The output's mean luma (after clipping and the gain's bounds) is set by forward, which
        # computes the frame's luma map anyway.
        self._source_mean = source_mean
        return frame
