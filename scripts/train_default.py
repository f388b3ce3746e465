"""Train, export and check the bundled `quality` model (vidllie/weights/quality.safetensors).

    python scripts/train_default.py train                 # stage 1 = vidllie train --config configs/train/default.yaml
    python scripts/train_default.py train --stage 2       # stage 2 = vidllie train --config configs/train/default-finetune.yaml
    python scripts/train_default.py train --stage 3       # stage 3 = vidllie train --config configs/train/default-stage3.yaml
    python scripts/train_default.py pairs                 # held-out synthetic pairs -> runs/heldout (scripts/make_pairs.py)
    python scripts/train_default.py export                # EMA weights of the final stage's run -> vidllie/weights/quality.safetensors
    python scripts/train_default.py evaluate              # table + JSON on runs/heldout -> runs/default-stage3/eval_heldout.{json,txt}
    python scripts/train_default.py realclip              # frame 300 of ../shared/media/night_dashcam.mp4, before/after
    python scripts/train_default.py card                  # vidllie/weights/quality.json from the weights + the two above

Reads ../shared at run time; nothing from it is copied into the repo.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import torch

from vidllie.train.config import load_train_config

REPO = Path(__file__).resolve().parents[1]
# The bundled model is trained in stages; each stage after the first starts from the previous
# stage's final EMA weights (its config's init_from).
STAGES = {1: REPO / "configs" / "train" / "default.yaml", 2: REPO / "configs" / "train" / "default-finetune.yaml",
          3: REPO / "configs" / "train" / "default-stage3.yaml"}
CONFIG = STAGES[1]  # the degradation of the held-out pairs (all stages use the same)
FINAL = STAGES[max(STAGES)]
RUN = REPO / load_train_config(FINAL).output_dir  # the final stage's run: exported, evaluated
HELDOUT = REPO / "runs" / "heldout"
WEIGHTS = REPO / "vidllie" / "weights" / "quality.safetensors"
CLIP = REPO.parent / "shared" / "media" / "night_dashcam.mp4"


def cmd_train(args) -> int:
    from vidllie.train.trainer import train

    print(json.dumps(train(STAGES[args.stage], resume=args.resume), indent=2))
    return 0


def cmd_pairs(args) -> int:
    sys.path.insert(0, str(REPO / "scripts"))
    import make_pairs

    return make_pairs.main([str(REPO.parent / "shared" / "images"), str(HELDOUT), "--split", "val",
                            "--degradation", str(CONFIG)])


def _stage_record(config: Path) -> dict:
    """What one stage's run did, from its config and its last checkpoint."""
    from safetensors import safe_open

    cfg = load_train_config(config)
    if cfg.data.degradation != load_train_config(CONFIG).data.degradation:
        # the held-out pairs are made with CONFIG's degradation; the card states one for all stages
        raise SystemExit(f"{config.relative_to(REPO)}: degradation differs from {CONFIG.relative_to(REPO)}")
    with safe_open(str(REPO / cfg.output_dir / "checkpoint.safetensors"), "pt") as f:
        meta = f.metadata()
    info = json.loads(meta["info"])
    return {"config": str(config.relative_to(REPO)), "init_from": cfg.init_from,
            "crop": cfg.data.crop, "batch_size": cfg.data.batch_size,
            "lr": cfg.optim.lr, "steps": int(meta["step"]), "steps_planned": cfg.steps,
            "train_time_s": round(float(info["elapsed_s"]), 1),
            "device": info["device"], "hardware": info["hardware"]}


def cmd_export(args) -> int:
    """EMA weights from the final stage's last checkpoint (no selection on the held-out split)."""
    from safetensors import safe_open

    from vidllie.models import ModelConfig, build_model, save_model
    from vidllie.train.datasets import split_images

    cfg = load_train_config(FINAL)
    with safe_open(str(RUN / "checkpoint.safetensors"), "pt") as f:
        meta = f.metadata()
        ema = {k[4:]: f.get_tensor(k) for k in f.keys() if k.startswith("ema.")}
    model = build_model(ModelConfig.from_dict(json.loads(meta["model_config"])))
    model.load_state_dict(ema)
    stages = [_stage_record(STAGES[k]) for k in sorted(STAGES)]
    train_paths, held_out = split_images(REPO.parent / "shared" / "images", cfg.data.val_fraction)
    evaluation = json.loads((RUN / "eval_heldout.json").read_text()) if (RUN / "eval_heldout.json").is_file() else None
    metadata = {
        "description": "vidllie bundled quality model: tiny-unguided Restormer (no DINO guidance: no DINO weights were available), "
                       "EMA weights, trained on synthetic low-light pairs in "
                       f"{len(stages)} stages",
        "data": f"synthetic pairs on the fly from ../shared/images (BSDS500 train+test, CamVid, CSun_Hays80, road): "
                f"{len(train_paths)} training images; {len(held_out)} held out (MD5 of the relative path < 10 %), never trained on",
        "degradation": cfg.data.degradation.to_dict(),
        "stages": stages,
        "steps": sum(st["steps"] for st in stages),
        "train_time_s": round(sum(st["train_time_s"] for st in stages), 1),
        "exported": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
    }
    if evaluation is not None:
        m = evaluation["methods"]["model"]
        metadata["val_heldout"] = {"images": evaluation["count"], "psnr": round(m["psnr"], 3), "ssim": round(m["ssim"], 4),
                                   "psnr_gt_mean": round(m["psnr_gt_mean"], 3), "ssim_gt_mean": round(m["ssim_gt_mean"], 4)}
    out = Path(args.out) if args.out else WEIGHTS
    save_model(model.eval(), out, metadata)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB), final stage {max(STAGES)} at step {meta['step']}")
    return 0


def cmd_evaluate(args) -> int:
    from vidllie.train.evaluate import evaluate, format_table

    model = args.model or str(WEIGHTS)
    results = evaluate(model, HELDOUT, progress=True, json_path=RUN / "eval_heldout.json")
    table = format_table(results)
    (RUN / "eval_heldout.txt").write_text(table + "\n")
    print(table)
    breakdown = _breakdown(results, json.loads((HELDOUT / "params.json").read_text())["pairs"])
    (RUN / "eval_breakdown.json").write_text(json.dumps(breakdown, indent=2) + "\n")
    print(json.dumps(breakdown, indent=2))
    return 0


def _breakdown(results: dict, params: dict) -> dict:
    """The model's mean plain PSNR on the held-out pairs grouped by exposure, by whether the H.264
    step ran, and by source folder (each pair's degradation parameters are in params.json)."""
    groups: dict[str, dict[str, list[float]]] = {"exposure": {}, "h264": {}, "source": {}}
    for row in results["per_image"]:
        p = params[row["name"]]
        exposure = p["exposure"][0]
        band = "below 1/33" if exposure < 1 / 33 else "1/33-1/12.5" if exposure < 1 / 12.5 else "1/12.5 and above"
        keys = {"exposure": band, "h264": "with" if p["crf"][0] >= 0 else "without", "source": row["name"].split("__")[0]}
        for group, key in keys.items():
            groups[group].setdefault(key, []).append(row["model"]["psnr"])
    return {group: {k: {"count": len(v), "psnr": round(sum(v) / len(v), 2)} for k, v in sorted(d.items())}
            for group, d in groups.items()}


def cmd_card(args) -> int:
    """vidllie/weights/quality.json: the bundled model's training stages, held-out table and real-clip
    figures, from the exported weights' metadata and this run's eval_heldout.json / realclip.json."""
    from vidllie.models.checkpoint import read_checkpoint_metadata
    from vidllie.train.evaluate import format_table

    meta = read_checkpoint_metadata(WEIGHTS)
    evaluation = json.loads((RUN / "eval_heldout.json").read_text())
    card = {
        "model": f"{WEIGHTS.relative_to(REPO)} ({json.loads(meta['config'])['name']}, EMA, {meta['steps']} steps in all)",
        "description": meta["description"],
        "data": meta["data"],
        "degradation": json.loads(meta["degradation"]),
        "stages": json.loads(meta["stages"]),
        "train_time_s": json.loads(meta["train_time_s"]),
        "training_configs": [str(STAGES[k].relative_to(REPO)) for k in sorted(STAGES)],
        "evaluation_table": format_table(evaluation).splitlines(),
        "evaluation": evaluation,
    }
    if (RUN / "eval_breakdown.json").is_file():
        card["evaluation_breakdown"] = json.loads((RUN / "eval_breakdown.json").read_text())
    if (RUN / "realclip.json").is_file():
        card["real_clip"] = json.loads((RUN / "realclip.json").read_text())
    out = WEIGHTS.with_suffix(".json")
    out.write_text(json.dumps(card, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


def _frames(path: Path, indices: set[int]) -> dict[int, torch.Tensor]:
    """Selected frames of a video as (3, H, W) float RGB, BT.709 limited range -> full-range RGB."""
    import av
    from av.video.reformatter import ColorRange, Colorspace

    out = {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in indices:
                rgb = frame.reformat(format="rgb24", src_colorspace=Colorspace.ITU709, src_color_range=ColorRange.MPEG).to_ndarray()
                out[i] = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
            if i >= max(indices):
                break
    return out


def cmd_realclip(args) -> int:
    import kornia

    from vidllie.models import load_model
    from vidllie.ops import linear_to_srgb, luma, srgb_to_linear
    from vidllie.train.datasets import save_image

    model = load_model(args.model or str(WEIGHTS))
    indices = set(range(290, 311))
    frames = _frames(CLIP, indices)
    stats = {"clip": CLIP.name, "frame": 300, "model": str(args.model or WEIGHTS.relative_to(REPO))}
    outs = {}
    with torch.inference_mode():
        for i in sorted(frames):
            outs[i] = model(frames[i][None]).clamp(0, 1)[0]
    before, after = frames[300][None], outs[300][None]
    stats["mean_luma_before"] = round(float(luma(before).mean()) * 255, 2)
    stats["mean_luma_after"] = round(float(luma(after).mean()) * 255, 2)
    stats["mean_rgb_before"] = [round(float(v) * 255, 2) for v in before.mean(dim=(0, 2, 3))]
    stats["mean_rgb_after"] = [round(float(v) * 255, 2) for v in after.mean(dim=(0, 2, 3))]
    for name, img in (("before", before), ("after", after)):
        q = torch.quantile(luma(img).flatten(), torch.tensor([0.01, 0.05, 0.5]))
        stats[f"luma_p1_p5_p50_{name}"] = [round(float(v) * 255, 2) for v in q]
    dark = luma(after) < 0.25
    stats["mean_rgb_after_shadows"] = [round(float(after[:, c : c + 1][dark].mean()) * 255, 2) for c in range(3)]
    # the same in CIELAB: at luma ~15/255 a few RGB levels are a large ratio but a small perceptual
    # difference; a*/b* near 0 and chroma ~2.3 (one just-noticeable difference) mean no visible cast
    lab = kornia.color.rgb_to_lab(after)
    for name, mask in (("all", torch.ones_like(lab[:, 0], dtype=torch.bool)), ("L_below_10", lab[:, 0] < 10), ("L_10_30", (lab[:, 0] >= 10) & (lab[:, 0] < 30))):
        stats[f"lab_after_{name}"] = {"fraction": round(float(mask.float().mean()), 3),
                                      "a": round(float(lab[:, 1][mask].mean()), 2), "b": round(float(lab[:, 2][mask].mean()), 2),
                                      "chroma": round(float(lab[:, 1:].pow(2).sum(1).sqrt()[mask].mean()), 2)}
    # noise: high-frequency energy of the output vs the input brightened by a plain linear-light gain to the same mean
    lin = srgb_to_linear(before)
    target = float(luma(after).mean())
    lo, hi = 1.0, 256.0
    for _ in range(40):  # bisection on the gain so the gained input has the output's mean luma
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if float(luma(linear_to_srgb((lin * mid).clamp(0, 1))).mean()) < target else (lo, mid)
    gained = linear_to_srgb((lin * lo).clamp(0, 1))
    hf = lambda x: float(kornia.filters.laplacian(luma(x), 3).abs().mean()) * 255
    stats["gain_matched_input_gain"] = round(lo, 2)
    stats["highfreq_gained_input"] = round(hf(gained), 3)
    stats["highfreq_model"] = round(hf(after), 3)
    series = [float(luma(outs[i][None]).mean()) * 255 for i in sorted(outs)]
    diffs = [b - a for a, b in zip(series, series[1:])]
    stats["frames_290_310_mean_luma_after"] = [round(v, 2) for v in series]
    stats["frames_290_310_std_of_luma_change"] = round(float(torch.tensor(diffs).std()), 3)
    docs = REPO / "docs" / "images"
    save_image(docs / "night_frame300_before", before[0])
    save_image(docs / "night_frame300_after", after[0])
    stats["png_bytes"] = {p.name: p.stat().st_size for p in sorted(docs.glob("night_frame300_*.png"))}
    (RUN / "realclip.json").write_text(json.dumps(stats, indent=2))
    print(json.dumps(stats, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train")
    p.add_argument("--stage", type=int, choices=sorted(STAGES), default=1, help="1: from scratch; N > 1: fine-tune stage N-1")
    p.add_argument("--resume", action="store_true")
    sub.add_parser("pairs")
    sub.add_parser("card")
    p = sub.add_parser("export")
    p.add_argument("--out", default=None)
    for name in ("evaluate", "realclip"):
        p = sub.add_parser(name)
        p.add_argument("--model", default=None, help="checkpoint (default: the bundled weights)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    return {"train": cmd_train, "pairs": cmd_pairs, "export": cmd_export, "evaluate": cmd_evaluate,
            "realclip": cmd_realclip, "card": cmd_card}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
