"""Train, export and check the `fast` model on night-light data.

    python scripts/train_fast.py train --stage N [--resume]  # N = 1-6: configs/train/fast.yaml, fast-detail.yaml, fast-stage3.yaml ... fast-stage6.yaml
    python scripts/train_fast.py pairs                 # held-out pairs: runs/heldout (global) and runs/heldout-nightlight
    python scripts/train_fast.py export [--stage N] [--out F]  # stage N's final EMA (default: the last stage) -> vidllie/weights/fast.safetensors
    python scripts/train_fast.py evaluate [--model M] [--no-reference]  # both held-out splits, M (default: the export) and `quality`
    python scripts/train_fast.py realclip [--model M]  # ../shared/media/night_dashcam.mp4 through the whole pipeline, per-frame figures
    python scripts/train_fast.py greys [--model M ...]   # flat and textured greys at 3-60 codes: the colour each model gives them
    python scripts/train_fast.py smoke [--steps 30]    # a short run on small crops: s/step, loss, exact resume
    python scripts/train_fast.py exposure [--model M]  # how much of the global split's PSNR is exposure, and can it be predicted

Making it the default is then one line: ``BUNDLED_MODELS["default"] = "fast.safetensors"`` in
vidllie/models/checkpoint.py. Reads ../shared at run time; nothing from it is copied into the repo.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

import torch

from vidllie.train.config import load_train_config
from vidllie.train.realclip import frame_stats

REPO = Path(__file__).resolve().parents[1]
STAGES = {1: REPO / "configs" / "train" / "fast.yaml", 2: REPO / "configs" / "train" / "fast-detail.yaml",
          3: REPO / "configs" / "train" / "fast-stage3.yaml", 4: REPO / "configs" / "train" / "fast-stage4.yaml",
          5: REPO / "configs" / "train" / "fast-stage5.yaml", 6: REPO / "configs" / "train" / "fast-stage6.yaml"}
FINAL = STAGES[max(STAGES)]
WEIGHTS = REPO / "vidllie" / "weights" / "fast.safetensors"
# ../shared beside the repo (VIDLLIE_SHARED elsewhere, e.g. from a git worktree)
SHARED = Path(os.environ.get("VIDLLIE_SHARED", REPO.parent / "shared"))
IMAGES = SHARED / "images"
DASHCAM = SHARED / "media" / "night_dashcam.mp4"
# The two held-out splits of docs/synthesis.md: today's degradation, global exposure / night light.
SPLITS = {"heldout": [], "heldout-nightlight": ["--light-prob", "1"]}
HELDOUT_DEGRADATION = REPO / "configs" / "train" / "default.yaml"


def cmd_train(args) -> int:
    from vidllie.train.trainer import train

    overrides = {"init_from": args.init_from} if args.init_from else None
    print(json.dumps(train(STAGES[args.stage], resume=args.resume, overrides=overrides), indent=2))
    return 0


def cmd_pairs(args) -> int:
    sys.path.insert(0, str(REPO / "scripts"))
    import make_pairs

    for split, extra in SPLITS.items():
        out = REPO / "runs" / split
        if (out / "params.json").is_file():
            print(f"{out} exists, kept")
            continue
        make_pairs.main([str(IMAGES), str(out), "--split", "val", "--degradation", str(HELDOUT_DEGRADATION), *extra])
    return 0


def _recorded_stages(config_path: Path) -> list[dict]:
    """The stages recorded in the checkpoint a run started from (its ``init_from``)."""
    from vidllie.models.checkpoint import read_checkpoint_metadata, resolve_checkpoint

    init_from = json.loads(config_path.read_text()).get("init_from")
    if not init_from:
        raise SystemExit(f"{config_path}: no init_from, and the earlier stage's summary is missing")
    return json.loads(read_checkpoint_metadata(resolve_checkpoint(init_from)).get("stages", "[]"))


def cmd_export(args) -> int:
    from vidllie.models import load_model, save_model

    last = args.stage
    run = REPO / load_train_config(STAGES[last]).output_dir
    if not (run / "final_ema.safetensors").is_file():
        raise SystemExit(f"stage {last} has not finished ({run / 'final_ema.safetensors'} is missing): "
                         f"train it (--resume continues it) or export an earlier one with --stage")
    model = load_model(run / "final_ema.safetensors")
    stages, recorded = [], None
    for stage, path in sorted(STAGES.items()):
        if stage > last:
            break
        config = str(path.relative_to(REPO))
        summary_path = REPO / load_train_config(path).output_dir / "summary.json"
        if not summary_path.is_file() and stage < last:
            # An earlier stage trained in another session (runs/ is not kept): its record travels in
            # the exported weights the final stage started from.
            if recorded is None:
                recorded = {s["config"]: s for s in _recorded_stages(run / "config.json")}
            if config not in recorded:
                raise SystemExit(f"no record of {config}: neither {summary_path} nor the weights the final stage started from")
            stages.append(recorded[config])
            continue
        summary = json.loads(summary_path.read_text())
        stages.append({"config": config, "steps": summary["step"],
                       "train_time_s": summary["train_time_s"], "hardware": summary["hardware"]})
    out = Path(args.out) if args.out else WEIGHTS
    save_model(model, out, {"description": "vidllie fast: small Restormer at 1/8 resolution + affine colour head "
                                           "+ detail branch at 1/2 resolution, EMA weights, trained on synthetic "
                                           "night pairs with night light",
                            "stages": stages, "steps": sum(s["steps"] for s in stages)})
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


def cmd_evaluate(args) -> int:
    from vidllie.train.evaluate import evaluate, format_table

    out_dir = REPO / load_train_config(FINAL).output_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    for model in (args.model or str(WEIGHTS), *(() if args.no_reference else ("quality",))):
        for split in SPLITS:
            tag = Path(model).stem if model != "quality" else "quality"
            results = evaluate(model, REPO / "runs" / split, progress=True, json_path=out_dir / f"eval_{split}_{tag}.json")
            table = format_table(results)
            (out_dir / f"eval_{split}_{tag}.txt").write_text(table + "\n")
            print(f"{model} on {split}:\n{table}\n")
    return 0


def cmd_realclip(args) -> int:
    """The real dashcam clip through the whole pipeline (decode, model, smoothing, encode) with the
    given model; per-frame luma, blown highlights and colour cast of the output against the input."""
    from vidllie.jobs.video_job import enhance_video_file
    from vidllie.pipeline.enhancer import Enhancer
    from vidllie.video.reader import VideoReader

    model = args.model or str(WEIGHTS)
    tag = Path(model).stem if model not in ("quality", "default") else model
    out_dir = REPO / "runs" / "realclip"
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / f"dashcam_{tag}.mkv"
    stats = enhance_video_file(Enhancer(model), DASHCAM, dst, overwrite=True, end=args.end, crf=12)

    def read(path):
        with VideoReader(path, passthrough=False) as r:
            return torch.stack([torch.from_numpy(f.image).permute(2, 0, 1) for f in r])

    src, out = read(DASHCAM), read(dst)
    src = src[: len(out)]
    a, b = frame_stats(src), frame_stats(out)
    report = {"model": model, "frames": len(out), "fps": stats["fps"],
              "input": {k: round(float(v.mean()), 4) for k, v in a.items()},
              "output": {k: round(float(v.mean()), 4) for k, v in b.items()},
              "output_min_frame": {"luma": round(float(b["luma"].min()), 2), "darker_half": round(float(b["darker_half"].min()), 2)},
              "frames_blown_over_1pct": int((b["blown"] >= 0.01).sum()),
              # the mean colour's move in the CIELAB a*b* plane; ~2.3 is one just-noticeable difference
              "cast_shift_ab": round(float(torch.hypot(b["a"].mean() - a["a"].mean(), b["b"].mean() - a["b"].mean())), 2),
              "input_max_blown": round(float(a["blown"].max()), 5)}
    for i in args.frames:
        if i < len(out):
            import kornia

            for name, frames in (("before", src), ("after", out)):
                kornia.io.write_image(str(out_dir / f"dashcam_{tag}_frame{i}_{name}.png"), frames[i].contiguous())
    print(json.dumps(report, indent=2))
    (out_dir / f"dashcam_{tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


GREY_LEVELS = (3, 6, 12, 30, 60)  # 8-bit codes: the dashcam's shadows sit at 2-5


def grey_probe(model, level: float, texture: float, seed: int = 0) -> torch.Tensor:
    """Mean output RGB (0-255) of ``model`` on a 320x192 grey frame at ``level`` codes: flat
    (``texture`` 0) or with luma-only texture of that relative size and 1 code of noise per
    channel (seeded), 8-bit quantised like a decoded video. A neutral model keeps it grey."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((1, 3, 192, 320), level / 255)
    if texture:
        x = x * (1 + texture * torch.randn(1, 1, 192, 320, generator=g).clamp(-2, 2))
        x = x + torch.randn(1, 3, 192, 320, generator=g) / 255
    x = (x.clamp(0, 1) * 255).round() / 255
    with torch.no_grad():
        return model(x).clamp(0, 1).mean(dim=(0, 2, 3)) * 255


def cmd_greys(args) -> int:
    """Grey frames at 3-60 codes through each model (torch, fp32): the colour its prior gives
    areas whose chroma the input does not show. Reports RGB and CIELAB a*, b* (grey: 0, 0)."""
    import kornia

    from vidllie.models import load_model

    torch.set_num_threads(2)
    report = {}
    for name in args.model or [str(WEIGHTS), "quality"]:
        model = load_model(name).eval()
        rows = {}
        for level in GREY_LEVELS:
            for kind, texture in (("flat", 0.0), ("textured", 0.3)):
                rgb = grey_probe(model, level, texture)
                lab = kornia.color.rgb_to_lab((rgb / 255).view(1, 3, 1, 1)).flatten()
                rows[f"{level} {kind}"] = {"rgb": [round(float(v), 1) for v in rgb],
                                           "a": round(float(lab[1]), 2), "b": round(float(lab[2]), 2)}
        chroma = [(r["a"] ** 2 + r["b"] ** 2) ** 0.5 for r in rows.values()]
        rows["mean |a*b*|"] = round(sum(chroma) / len(chroma), 2)
        report[name] = rows
    print(json.dumps(report, indent=1))
    return 0


def _log_exposure_error(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) natural log of the output's mean luma over the target's: 0 = right exposure."""
    from vidllie.ops import mean_luma

    return torch.log(mean_luma(out).reshape(-1).clamp(min=1e-4) / mean_luma(target).reshape(-1))


def _global_statistics(model, low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model`` on ``low`` -> (output, (B, F) frame-wide statistics): the latent map's per-channel
    mean and std, the input's log mean colour and log luma quantiles, the output's log mean luma. What
    a global exposure correction could see, beyond what the network already turned into its output."""
    from vidllie.ops import luma, mean_luma

    seen = {}
    hook = model.restormer.latent.register_forward_hook(lambda _m, _i, o: seen.__setitem__("latent", o.float()))
    try:
        with torch.no_grad():
            out = model(low).float().clamp(0, 1)
    finally:
        hook.remove()
    lat = seen["latent"]
    quantiles = torch.quantile(luma(low).flatten(1), torch.tensor([0.1, 0.5, 0.9, 0.99]), dim=1).T
    stats = [lat.mean((2, 3)), lat.std((2, 3)), torch.log(low.mean((2, 3)) + 1e-3), torch.log(quantiles + 1e-3),
             torch.log(mean_luma(out).reshape(-1, 1) + 1e-3)]
    return out, torch.cat(stats, dim=1)


def _with_bias(x: torch.Tensor) -> torch.Tensor:
    """(N, F) -> (N, F + 1): a column of ones for the intercept."""
    return torch.cat([x, torch.ones(len(x), 1)], dim=1)


def _ridge(x: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """Weights (F + 1,) of a ridge regression ``_with_bias(x) @ w ~ y`` (x standardised by the caller)."""
    a = _with_bias(x)
    return torch.linalg.solve(a.T @ a + lam * torch.eye(a.shape[1]), a.T @ y)


def cmd_exposure(args) -> int:
    """Where the global split's PSNR goes: the model's exposure error per held-out image, its PSNR at
    the ground truth's mean luma and at the reference model's, and whether frame-wide statistics
    predict the error (a ridge probe fitted on synthetic training pairs, lambda chosen on a fifth of
    them, applied to the held-out split as a gain)."""
    import math

    from vidllie.models import load_model
    from vidllie.train.datasets import PairedFolder
    from vidllie.train.evaluate import model_fn, psnr
    from vidllie.train.parts import TrainingData

    torch.set_num_threads(2)
    model = load_model(args.model or str(WEIGHTS)).eval()
    reference = model_fn(args.reference)
    held = PairedFolder(REPO / "runs" / "heldout")
    outs, targets, feats, errors, ref_errors = [], [], [], [], []
    for i in range(len(held)):
        low, high, _ = held[i]
        out, f = _global_statistics(model, low[None])
        outs.append(out)
        targets.append(high[None])
        feats.append(f)
        errors.append(_log_exposure_error(out, high[None]))
        ref_errors.append(_log_exposure_error(reference(low[None]), high[None]))
    errors, ref_errors, feats = torch.cat(errors), torch.cat(ref_errors), torch.cat(feats)

    def mean_psnr(log_gains) -> float:
        return statistics.mean(psnr((o * math.exp(float(g))).clamp(0, 1), t) for o, t, g in zip(outs, targets, log_gains))

    report = {"model": args.model or str(WEIGHTS), "reference": args.reference, "images": len(held),
              "psnr": round(mean_psnr(torch.zeros(len(outs))), 3),
              "psnr_at_gt_mean_luma": round(mean_psnr(-errors), 3),
              "psnr_at_reference_mean_luma": round(mean_psnr(ref_errors - errors), 3),
              "mean_abs_log2_error": round(float(errors.abs().mean()) / math.log(2), 4),
              "reference_mean_abs_log2_error": round(float(ref_errors.abs().mean()) / math.log(2), 4),
              "error_correlation_with_reference": round(float(torch.corrcoef(torch.stack([errors, ref_errors]))[0, 1]), 3)}

    # The probe: synthetic pairs of the last stage's data (training images only), seeded.
    data = TrainingData(load_train_config(FINAL).data)
    g = torch.Generator().manual_seed(args.seed)
    xs, ys = [], []
    for _ in range(args.probe_batches):
        low, high = data.source.batch(g)
        out, f = _global_statistics(model, low)
        xs.append(f)
        ys.append(-_log_exposure_error(out, high))
    x, y = torch.cat(xs), torch.cat(ys)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    x, held_x = (x - mu) / sd, (feats - mu) / sd
    fit, val = slice(len(x) // 5, None), slice(0, len(x) // 5)
    lams = [1.0, 10.0, 100.0, 1000.0, 10000.0]
    val_err = [float((_with_bias(x[val]) @ _ridge(x[fit], y[fit], lam) - y[val]).std()) for lam in lams]
    lam = lams[val_err.index(min(val_err))]
    w = _ridge(x, y, lam)
    predicted = _with_bias(held_x) @ w
    report["probe"] = {"training_pairs": len(x), "lambda": lam, "target_std": round(float(y.std()), 4),
                       "validation_residual_std": round(min(val_err), 4),
                       "held_out_error_std": round(float(errors.std()), 4),
                       "held_out_residual_std": round(float((predicted + errors).std()), 4),
                       "held_out_psnr_with_predicted_gain": round(mean_psnr(predicted), 3)}
    print(json.dumps(report, indent=1))
    return 0


def cmd_smoke(args) -> int:
    """Each stage for a few steps on small crops, interrupted halfway and resumed: prints s/step and
    the loss at the start and the end; fails unless the resumed run equals the straight one."""
    from safetensors.torch import load_file

    from vidllie.train.trainer import train

    root = REPO / "runs" / "fast-smoke"
    shutil.rmtree(root, ignore_errors=True)
    report = {}
    for stage, path in sorted(STAGES.items()):
        cfg = load_train_config(path)
        crop = args.crop or cfg.data.crop
        over = {"steps": args.steps, "log_every": 1, "threads": args.threads or cfg.threads, "val_every": 10**9, "checkpoint_every": 10**9, "progress": False,
                "optim": {"warmup_steps": 5}, "data": {"images": str(IMAGES), "crop": crop, "val_limit": 2, "val_crop": 128}}
        if cfg.init_from:
            over["init_from"] = str(root / f"stage{stage - 1}-a" / "final_ema.safetensors")
        a = train(path, overrides={**over, "output_dir": str(root / f"stage{stage}-a")})
        train(path, overrides={**over, "output_dir": str(root / f"stage{stage}-b")}, stop_after=args.steps // 2)
        b = train(path, resume=True, overrides={**over, "output_dir": str(root / f"stage{stage}-b")})
        ta = load_file(str(root / f"stage{stage}-a" / "checkpoint.safetensors"))
        tb = load_file(str(root / f"stage{stage}-b" / "checkpoint.safetensors"))
        exact = ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
        rows = [json.loads(x) for x in (root / f"stage{stage}-a" / "log.jsonl").read_text().splitlines()]
        rows = [r for r in rows if r["kind"] == "train"]
        k = max(1, len(rows) // 4)
        report[f"stage {stage}"] = {
            "config": str(path.relative_to(REPO)), "crop": crop, "batch": cfg.data.batch_size, "steps": a["step"],
            "s_per_step": round(a["train_time_s"] / a["step"], 3),
            "s_per_step_median": round(statistics.median(r["s_per_step"] for r in rows[1:]), 3),
            "threads": over["threads"], "loss_first_quarter": round(statistics.mean(r["loss"] for r in rows[:k]), 4),
            "loss_last_quarter": round(statistics.mean(r["loss"] for r in rows[-k:]), 4),
            "resume_exact": exact, "resumed_step": b["step"], "hardware": a["hardware"],
            "planned_steps": cfg.steps,
            "estimated_full_run_h": round(cfg.steps * statistics.median(r["s_per_step"] for r in rows[1:]) / 3600, 2),
        }
        if not exact:
            raise SystemExit(f"stage {stage}: the resumed run differs from the straight one")
    print(json.dumps(report, indent=2))
    (root / "smoke.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train")
    p.add_argument("--stage", type=int, choices=sorted(STAGES), default=max(STAGES))
    p.add_argument("--resume", action="store_true")
    p.add_argument("--init-from", default=None, help="the previous stage's weights (default: the config's init_from)")
    sub.add_parser("pairs")
    p = sub.add_parser("export")
    p.add_argument("--stage", type=int, choices=sorted(STAGES), default=max(STAGES),
                   help="the stage whose final EMA weights are exported, with the record of it and the stages before")
    p.add_argument("--out", default=None)
    p = sub.add_parser("evaluate")
    p.add_argument("--model", default=None, help="checkpoint (default: the exported weights)")
    p.add_argument("--no-reference", action="store_true", help="skip `quality` (its scores are in README/docs)")
    p = sub.add_parser("realclip")
    p.add_argument("--model", default=None, help="checkpoint or bundled name (default: the exported weights)")
    p.add_argument("--end", type=float, default=None, help="stop after this many seconds of the clip")
    p.add_argument("--frames", type=int, nargs="*", default=[300], help="frames saved as PNG (before/after)")
    p = sub.add_parser("greys")
    p.add_argument("--model", nargs="*", default=None, help="models (default: the exported weights and `quality`)")
    p = sub.add_parser("exposure")
    p.add_argument("--model", default=None, help="checkpoint or bundled name (default: the exported weights)")
    p.add_argument("--reference", default="quality", help="the model whose exposure judgement is compared")
    p.add_argument("--probe-batches", type=int, default=800, help="synthetic training batches the probe is fitted on")
    p.add_argument("--seed", type=int, default=7)
    p = sub.add_parser("smoke")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--crop", type=int, default=None, help="crop size (default: each stage's own)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: each stage's own)")
    args = ap.parse_args(argv)
    return {"train": cmd_train, "pairs": cmd_pairs, "export": cmd_export, "evaluate": cmd_evaluate,
            "realclip": cmd_realclip, "greys": cmd_greys, "smoke": cmd_smoke,
            "exposure": cmd_exposure}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
