"""Held-out pairs through the scene-exposure stage with its parameters varied (each image a
one-frame scene, as ``vidllie eval --model default`` runs it), against the network alone.

    python scripts/exposure_pairs.py                                   # the stage as shipped
    python scripts/exposure_pairs.py --variant max_mean=1.0 --variant floor=0,ramp=1e-6

The network's outputs are computed once per split (torch, fp32) and kept in ``--cache``; each
variant is a set of :class:`vidllie.pipeline.exposure.SceneExposure` keyword arguments. Prints
PSNR / SSIM / GT-mean PSNR per split (means over the images, as ``vidllie eval``).
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import torch

from vidllie.pipeline.exposure import SceneExposure
from vidllie.train.datasets import PairedFolder
from vidllie.train.evaluate import gt_mean_align, model_fn, psnr, ssim

REPO = Path(__file__).resolve().parents[1]


def parse_variant(text: str) -> dict:
    """``"max_mean=1.0, veil_from=(0, 0)"`` -> keyword arguments (values are Python literals)."""
    call = ast.parse(f"f({text})", mode="eval").body
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def cached_outputs(split: Path, cache: Path, model: str) -> list[dict[str, torch.Tensor]]:
    """Per image: low, high and the network's output (fp16 on disk, float32 in memory)."""
    folder = cache / f"{split.name}_{model}"
    data = PairedFolder(split)
    if not folder.is_dir() or len(list(folder.glob("*.pt"))) != len(data):
        folder.mkdir(parents=True, exist_ok=True)
        run = model_fn(model, scene_exposure=False)
        for i in range(len(data)):
            low, high, _ = data[i]
            torch.save({"low": low.half(), "high": high.half(), "out": run(low[None])[0].half()}, folder / f"{i:04d}.pt")
    return [{k: v.float()[None] for k, v in torch.load(f).items()} for f in sorted(folder.glob("*.pt"))]


def score(items: list[dict[str, torch.Tensor]], variant: dict | None) -> dict[str, float]:
    sums = {"psnr": 0.0, "ssim": 0.0, "psnr_gt_mean": 0.0}
    for it in items:
        out = it["out"] if variant is None else SceneExposure(**variant)(it["out"], it["low"])
        sums["psnr"] += psnr(out, it["high"])
        sums["ssim"] += ssim(out, it["high"])
        sums["psnr_gt_mean"] += psnr(gt_mean_align(out, it["high"]), it["high"])
    return {k: v / len(items) for k, v in sums.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", action="append", type=Path, help="paired folder (repeatable; default: runs/heldout and runs/heldout-nightlight)")
    ap.add_argument("--variant", action="append", default=[], help="SceneExposure keyword arguments, e.g. max_mean=1.0,floor=0 (repeatable)")
    ap.add_argument("--model", default="fast", help="the network (default: fast, the network of default)")
    ap.add_argument("--cache", type=Path, default=REPO / "runs" / "exposure_pairs")
    args = ap.parse_args()
    splits = args.split or [REPO / "runs" / "heldout", REPO / "runs" / "heldout-nightlight"]
    variants = [("network alone", None), ("stage", {})] + [(v, parse_variant(v)) for v in args.variant]
    for split in splits:
        items = cached_outputs(split, args.cache, args.model)
        print(f"{split} ({len(items)} pairs): PSNR / SSIM / GT-mean PSNR")
        for name, variant in variants:
            r = score(items, variant)
            print(f"  {name:40s} {r['psnr']:6.2f}  {r['ssim']:.3f}  {r['psnr_gt_mean']:6.2f}", flush=True)


if __name__ == "__main__":
    main()
