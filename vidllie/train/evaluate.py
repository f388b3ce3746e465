"""Evaluation on paired folders (LOL layout): PSNR/SSIM per image and mean, plain and GT-mean,
for a model and two fixed reference baselines (gamma curve, CLAHE), as a table and JSON. This
module owns the metrics protocol and the baselines.

Metrics (kornia):

* PSNR: ``kornia.metrics.psnr(out, gt, 1.0)`` per image on RGB in [0, 1] (MSE over all pixels and
  channels), then the mean over images.
* SSIM: ``kornia.metrics.ssim(out, gt, 11)`` (11x11 Gaussian window, sigma 1.5, RGB, 'same'
  padding), the mean of the map per image, then the mean over images.
* GT-mean: before the metric the output is multiplied by ``mean_luma(gt) / mean_luma(out)``
  (BT.709 luma of the sRGB values) and clipped to [0, 1] — the usual LLIE protocol that factors
  out the global exposure choice. "Plain" is the output as is (clipped to [0, 1]).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kornia
import torch

from vidllie.ops.color import check_image, mean_luma

GAMMA = 0.4  # the fixed gamma baseline: out = low ** 0.4
CLAHE_CLIP = 2.0  # the CLAHE baseline: kornia equalize_clahe on Lab L, 8x8 tiles
CLAHE_GRID = (8, 8)

METHOD_NOTES = {
    "input": "the low-light input unchanged",
    "gamma": f"fixed gamma curve, kornia adjust_gamma(low, {GAMMA})",
    "clahe": f"kornia equalize_clahe(clip_limit={CLAHE_CLIP}, grid_size={CLAHE_GRID}) on the L channel of Lab",
    "model": "the model's output, clipped to [0, 1]",
}


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of one image pair (1, 3, H, W) in [0, 1] (kornia)."""
    return float(kornia.metrics.psnr(pred.clamp(0, 1), target, 1.0))


def ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean SSIM of one image pair (1, 3, H, W) in [0, 1] (kornia, 11x11 Gaussian window)."""
    return float(kornia.metrics.ssim(pred.clamp(0, 1), target, 11, max_val=1.0).mean())


def gt_mean_align(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Scale ``pred`` so its mean BT.709 luma equals the target's, clipped to [0, 1].

    Example:
        >>> gt_mean_align(torch.full((1, 3, 2, 2), 0.2), torch.full((1, 3, 2, 2), 0.4)).mean().item()  # doctest: +ELLIPSIS
        0.4...
    """
    check_image(pred, "prediction")
    ratio = mean_luma(target) / mean_luma(pred).clamp(min=eps)
    return (pred * ratio.view(-1, 1, 1, 1)).clamp(0.0, 1.0)


def gamma_baseline(low: torch.Tensor, gamma: float = GAMMA) -> torch.Tensor:
    """The fixed-curve reference: ``low ** gamma`` (kornia ``adjust_gamma``)."""
    check_image(low, "low")
    return kornia.enhance.adjust_gamma(low.clamp(0, 1), gamma)


def clahe_baseline(low: torch.Tensor, clip_limit: float = CLAHE_CLIP, grid_size: tuple[int, int] = CLAHE_GRID) -> torch.Tensor:
    """The CLAHE reference: kornia ``equalize_clahe`` on the lightness of Lab, chroma kept."""
    check_image(low, "low")
    lab = kornia.color.rgb_to_lab(low.clamp(0, 1))
    lightness = kornia.enhance.equalize_clahe(lab[:, :1] / 100.0, clip_limit=clip_limit, grid_size=grid_size)
    lab = torch.cat([lightness * 100.0, lab[:, 1:]], dim=1)
    return kornia.color.lab_to_rgb(lab).clamp(0, 1)


def model_fn(model, device: str | torch.device = "cpu", dino=None,
             scene_exposure: bool | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap a model (or a checkpoint name/path, ``default`` included) as ``low -> output``.

    ``dino`` as for :func:`vidllie.models.dino.load_dino`: ``None`` loads the backbone a guided
    model's config names, a hub id/folder loads that one, ``"none"`` runs unguided, or a module.
    ``scene_exposure`` as in the pipeline (``None``: on for the bundled ``default``): each image
    is a one-frame scene, so the stage's veil cap and noise-floor restraint apply to it.
    """
    from vidllie.models.checkpoint import scene_exposure_default
    from vidllie.pipeline.exposure import SceneExposure

    use_exposure = scene_exposure_default(model) if scene_exposure is None else bool(scene_exposure)
    if isinstance(model, (str, Path)):
        from vidllie.models import load_model

        model = load_model(model)
    model = model.to(device).eval()
    guided = bool(getattr(model.config, "guided", False))
    from vidllie.models.dino import load_dino  # WeightsError (one line) when DINO is unavailable

    backbone, _ = load_dino(model.config.dino, dino, needed=guided)
    if backbone is not None:
        backbone = backbone.to(device)

    @torch.inference_mode()
    def run(low: torch.Tensor) -> torch.Tensor:
        x = low.to(device)
        maps = backbone(x) if backbone is not None else None
        y = model(x, dino_maps=maps).float().clamp(0, 1)
        if use_exposure:
            y = SceneExposure()(y, x)
        return y.cpu()

    return run


def _scores(out: torch.Tensor, high: torch.Tensor) -> dict[str, float]:
    aligned = gt_mean_align(out, high)
    return {
        "psnr": psnr(out, high),
        "ssim": ssim(out, high),
        "psnr_gt_mean": psnr(aligned, high),
        "ssim_gt_mean": ssim(aligned, high),
    }


def evaluate(model, data_dir: str | Path, *, device: str | torch.device = "cpu", dino=None,
             scene_exposure: bool | None = None, baselines: bool = True, limit: int | None = None, progress: bool = False,
             json_path: str | Path | None = None) -> dict[str, Any]:
    """Score ``model`` (a network, a checkpoint path or ``"default"``; ``None`` = baselines only)
    on a paired folder ``data_dir`` (``low/`` + ``high/``).

    Returns ``{"data", "count", "metrics", "methods": {method: means}, "per_image": [...]}`` where
    each method's means are ``psnr, ssim, psnr_gt_mean, ssim_gt_mean``; methods are ``model`` and,
    with ``baselines``, ``input``, ``gamma`` and ``clahe``. Written as JSON to ``json_path`` too.

    Example:
        >>> results = evaluate("default", "pairs/val")        # doctest: +SKIP
        >>> print(format_table(results))                      # doctest: +SKIP
    """
    from vidllie.train.datasets import PairedFolder

    data = PairedFolder(data_dir)
    methods: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    if model is not None:
        methods["model"] = model_fn(model, device, dino, scene_exposure)
    if baselines:
        methods.update({"input": lambda x: x, "gamma": gamma_baseline, "clahe": clahe_baseline})
    if not methods:
        raise ValueError("nothing to evaluate: no model and baselines=False")
    n = len(data) if limit is None else min(limit, len(data))
    indices = range(n)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="eval", unit="img")
    per_image = []
    for i in indices:
        low, high, name = data[i]
        low, high = low[None], high[None]
        row: dict[str, Any] = {"name": name, "size": [int(high.shape[-1]), int(high.shape[-2])]}
        for method, fn in methods.items():
            row[method] = _scores(fn(low), high)
        per_image.append(row)
    means = {
        method: {k: sum(r[method][k] for r in per_image) / n for k in ("psnr", "ssim", "psnr_gt_mean", "ssim_gt_mean")}
        for method in methods
    }
    results = {
        "data": str(data_dir),
        "count": n,
        "metrics": {
            "psnr": "kornia.metrics.psnr on RGB in [0, 1], per image, mean over images (dB)",
            "ssim": "kornia.metrics.ssim, 11x11 Gaussian window, RGB, mean per image, mean over images",
            "gt_mean": "output scaled so its mean BT.709 luma equals the ground truth's, clipped, then scored",
            "methods": {m: METHOD_NOTES[m] for m in methods},
        },
        "methods": means,
        "per_image": per_image,
    }
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(results, indent=2))
    return results


def format_table(results: dict[str, Any]) -> str:
    """A fixed-width text table of the mean scores of :func:`evaluate`'s result.

    Example:
        >>> r = {"data": "d", "count": 1, "methods": {"model": {"psnr": 25.0, "ssim": 0.8,
        ...      "psnr_gt_mean": 27.0, "ssim_gt_mean": 0.82}}}
        >>> print("\\n".join(format_table(r).splitlines()[1:]))
        method     PSNR    SSIM  PSNR-GTm  SSIM-GTm
        model     25.00  0.8000     27.00    0.8200
    """
    lines = [
        f"{results['data']}: {results['count']} image pairs (GT-mean = output rescaled to the GT's mean luma)",
        f"{'method':<8} {'PSNR':>6} {'SSIM':>7} {'PSNR-GTm':>9} {'SSIM-GTm':>9}",
    ]
    for method, m in results["methods"].items():
        fmt = lambda v, w, d: f"{v:>{w}.{d}f}" if math.isfinite(v) else f"{'inf':>{w}}"
        lines.append(f"{method:<8} {fmt(m['psnr'], 6, 2)} {fmt(m['ssim'], 7, 4)} {fmt(m['psnr_gt_mean'], 9, 2)} {fmt(m['ssim_gt_mean'], 9, 4)}")
    return "\n".join(lines)
