#!/usr/bin/env python
"""The GPU checks of docs/benchmarks.md § GPU, in one process: the pipeline's output on CUDA against
the CPU's, the first-call cost of new batch shapes, `vidllie bench` cells (models, precisions,
batch sizes, --reuse, 1080p, --load), a guided model with a random DINOv3 ViT-S/16, DINO timing and
a short training probe. Every cell is guarded and skipped when the time budget runs out; results
go to $OUT/gpu.json (default /tmp/vidllie-gpu) as they come.

    python scripts/gpu_check.py --clip ../shared/media/night_dashcam.mp4 --images ../shared/images --budget 450
"""

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

OUT = Path(os.environ.get("OUT", "/tmp/vidllie-gpu"))
T0 = time.time()
ARGS = argparse.Namespace(clip=None, images=None, budget=450.0)
results = {"cells": []}


def save():
    (OUT / "gpu.json").write_text(json.dumps(results, indent=1, default=str))


def cell(name, fn, min_left=20):
    left = ARGS.budget - (time.time() - T0)
    if left < min_left:
        print(f"SKIP {name} ({left:.0f} s left)", flush=True)
        results["cells"].append({"name": name, "skipped": True})
        save()
        return None
    t = time.time()
    try:
        r = fn()
        results["cells"].append({"name": name, "seconds": round(time.time() - t, 1), "result": r})
        print(f"OK {name} {time.time() - t:.1f}s {short(r)}", flush=True)
    except BaseException as e:  # noqa: BLE001
        tb = traceback.format_exc()
        results["cells"].append({"name": name, "error": repr(e), "traceback": tb[-3000:]})
        print(f"FAIL {name}: {e!r}\n{tb[-1500:]}", flush=True)
        r = None
    save()
    return r


def short(r):
    if isinstance(r, dict) and "end_to_end" in r:
        st = {k: v["ms_per_frame"] for k, v in r["stages"].items()}
        return (f"e2e {r['end_to_end']['fps']} fps, model-only {r['model_only']['fps']}, bound {r['bound_by']}, "
                f"stages {st}, gpu MB {r.get('peak_device_memory_mb')}")
    s = json.dumps(r, default=str)
    return s[:600]


def info():
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0),
            "cpus": os.cpu_count(), "bf16": torch.cuda.is_bf16_supported()}


def correctness():
    """Same frames through the pipeline on the CPU (torch runtime, fp32) and CUDA (fp32, bf16, fp16)."""
    from vidllie.pipeline.enhancer import Enhancer
    from vidllie.video.reader import VideoReader

    frames = []
    with VideoReader(ARGS.clip) as r:
        for f in r:
            frames.append(f.image)
            if len(frames) == 24:
                break
    out = {}
    for model in ("default", "fast", "quality"):
        ref = np.stack(list(Enhancer(model, device="cpu", runtime="torch", precision="fp32", batch_size=8).enhance_frames(frames)))
        for prec in ("fp32", "bf16", "fp16"):
            got = np.stack(list(Enhancer(model, device="cuda", precision=prec, batch_size=8).enhance_frames(frames)))
            d = np.abs(got.astype(np.int16) - ref.astype(np.int16))
            mse = float((d.astype(np.float64) ** 2).mean())
            out[f"{model}/{prec}"] = {"max_abs": int(d.max()), "mean_abs": round(float(d.mean()), 4),
                                      "psnr_vs_cpu": round(10 * np.log10(255**2 / max(mse, 1e-12)), 2),
                                      "mean_luma_cpu": round(float(ref.mean()), 2), "mean_luma_gpu": round(float(got.mean()), 2)}
    return out


def guided(cache):
    from vidllie.models import build_model
    from vidllie.models.dino import DinoBackbone
    from vidllie.jobs.bench import random_dinov3_vits16, run_bench

    model = build_model("tiny")
    dino = DinoBackbone(model.config.dino, backbone=random_dinov3_vits16())
    return run_bench(ARGS.clip, model=model, dino=dino, device="cuda", precision="bf16", batch_size=8,
                     frames=400, dino_cache=cache)


def dino_timing():
    from vidllie.jobs.bench import time_dino

    return time_dino(("360p", "720p", "1080p", "4k"), device="cuda", frames=10, short_sides=(224, 448, None))


def train_probe():
    """The trainer on CUDA for ~60 s: s/step with batches made in the loop (``data.workers: 0``)
    and in 12 worker processes, and how long making one batch takes on one CPU thread."""
    import yaml

    from vidllie.train.config import load_train_config
    from vidllie.train.trainer import train

    runs = {}
    for workers, seconds in ((0, 20), (12, 25)):
        cfg = yaml.safe_load(Path("configs/train/fast-stage6.yaml").read_text())
        cfg.update(device="cuda", amp="bf16", output_dir=f"/tmp/gpu-train-{workers}", time_limit_s=seconds,
                   steps=100000, init_from="vidllie/weights/fast.safetensors", val_every=100000,
                   checkpoint_every=100000, log_every=50)
        cfg["data"].update(images=ARGS.images, val_limit=4, workers=workers)
        p = Path(f"/tmp/gpu-train-{workers}.yaml")
        p.write_text(yaml.safe_dump(cfg))
        t = time.time()
        r = train(p)
        runs[f"workers {workers}"] = {**r, "wall_s": round(time.time() - t, 1),
                                      "s_per_step": round(r["train_time_s"] / max(1, r["step"]), 4)}
    # the batch alone, on one CPU thread as in the loop
    from vidllie.train.datasets import SyntheticPairs
    from vidllie.train.parts import images_split

    c = load_train_config(p)
    paths, _ = images_split(c.data.images, float(c.data.val_fraction))
    src = SyntheticPairs(paths, crop=c.data.crop, batch_size=c.data.batch_size, degradation=c.data.degradation,
                         scale=tuple(c.data.scale))
    g = torch.Generator().manual_seed(0)
    src.batch(g)
    t = time.time()
    for _ in range(10):
        src.batch(g)
    data_s = (time.time() - t) / 10
    return {"train": runs, "data_s_per_batch": round(data_s, 4)}


def shapes(cudnn=True):
    """First, second and third call of the default network at new batch shapes (bf16)."""
    from vidllie.models import load_model

    torch.backends.cudnn.enabled = cudnn
    m = load_model("default").cuda().eval().to(memory_format=torch.channels_last)
    rows = []
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for k, h, w in [(8, 360, 640), (1, 360, 640), (2, 360, 640), (3, 360, 640), (5, 360, 640), (7, 360, 640), (4, 256, 256), (6, 256, 256)]:
            x = torch.rand(k, 3, h, w, device="cuda").contiguous(memory_format=torch.channels_last)
            ts = []
            for _ in range(3):
                torch.cuda.synchronize()
                t = time.perf_counter()
                m(x)
                torch.cuda.synchronize()
                ts.append(round(1000 * (time.perf_counter() - t), 1))
            rows.append({"shape": [k, 3, h, w], "ms_first_second_third": ts})
    return rows


def sub(options: dict, name: str, frames: int = 600) -> dict:
    """One `vidllie bench` in a fresh process (first-call costs included, as a user's run has them)."""
    out = OUT / (name.replace(" ", "_").replace("-", "") + ".json")
    options = dict(options)
    cmd = [sys.executable, "-m", "vidllie", "bench", "--device", "cuda", "--json", str(out), "--quiet",
           "--frames", str(frames)]
    synthetic = options.pop("synthetic", None)
    cmd += ["--synthetic", synthetic] if synthetic else [ARGS.clip]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        cmd += [flag if value else "--no-" + key] if isinstance(value, bool) else [flag, str(value)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-1500:])
    return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", required=True, help="a real clip (the dashcam clip in the docs)")
    p.add_argument("--images", help="normal-light images for the training probe (skipped without)")
    p.add_argument("--budget", type=float, default=450.0, help="seconds; cells that would start later are skipped")
    p.parse_args(namespace=ARGS)
    OUT.mkdir(parents=True, exist_ok=True)
    cell("info", info)
    cell("correctness", correctness)
    cell("shapes", shapes)
    for name, kw in [
        ("default bf16 b8", dict(model="default", precision="bf16", batch_size=8)),
        ("default bf16 b8 --reuse", dict(model="default", precision="bf16", batch_size=8, reuse=True)),
        ("quality bf16 b8", dict(model="quality", precision="bf16", batch_size=8)),
        ("fast bf16 b8", dict(model="fast", precision="bf16", batch_size=8)),
        ("default fp16 b8", dict(model="default", precision="fp16", batch_size=8)),
        ("default fp32 b8", dict(model="default", precision="fp32", batch_size=8)),
        ("default bf16 b1", dict(model="default", precision="bf16", batch_size=1)),
        ("default bf16 b32", dict(model="default", precision="bf16", batch_size=32)),
        ("default bf16 b8 --load 12", dict(model="default", precision="bf16", batch_size=8, load=12)),
    ]:
        cell(name, lambda kw=kw: sub(kw, name), 40)
    for size in ("1080p", "4k"):
        for model in ("default", "quality"):
            cell(f"{model} bf16 b4 {size}", lambda m=model, s=size: sub(dict(synthetic=s, model=m, precision="bf16", batch_size=4), f"{m}_{s}", frames=96), 40)
    cell("guided tiny + random ViT-S/16, cache on", lambda: guided(True), 40)
    cell("guided tiny + random ViT-S/16, cache off", lambda: guided(False), 40)
    cell("dino timing", dino_timing, 25)
    if ARGS.images:
        cell("train probe", train_probe, 80)
    print(f"total {time.time() - T0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
