"""Reuse on vs off, in ONE run (the machine may be shared: compare the ratios, not the fps):
end-to-end speed, PSNR between the two outputs, temporal std of static pixels, brightness flicker.

    python scripts/make_static_night.py ../shared/media/day_traffic_msmpeg4_mp3.avi runs/static/traffic_night_b.mp4 --skip 200
    python scripts/bench_reuse.py runs/static/traffic_night_b.mp4 ../shared/media/night_dashcam.mp4 --frames 40 --json runs/reuse.json

A clip with a ``*_clean.mp4`` beside it (from make_static_night.py) gets the static-pixel std:
pixels whose clean temporal std is under 1/255 (dilated by 8 px away from anything that moves).
Flicker = std of the frame-to-frame change of mean luma (/255), input vs output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from vidllie import Enhancer
from vidllie.jobs.video_job import enhance_video_file
from vidllie.video import VideoReader


def read(path: Path, n: int) -> np.ndarray:
    with VideoReader(path, max_frames=n, passthrough=False) as r:
        return np.stack([f.image for f in r])


def luma(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])


def flicker(frames: np.ndarray) -> float:
    return float(np.diff(luma(frames).mean(axis=(1, 2))).std())


def measure(clip: Path, frames: int, out_dir: Path, model: str = "default") -> dict:
    result: dict = {"clip": str(clip), "frames": frames, "model": model}
    outs = {}
    for reuse in (False, True):
        enhancer = Enhancer(model, device="cpu", reuse=reuse)
        dst = out_dir / f"{clip.stem}_{'reuse' if reuse else 'noreuse'}.mp4"
        stats = enhance_video_file(enhancer, clip, dst, max_frames=frames, crf=8, overwrite=True, audio=False)
        outs[reuse] = read(dst, frames)
        result["reuse" if reuse else "no_reuse"] = {
            "fps": stats["fps"], "seconds": stats["wall_seconds"], "model_ms_per_frame": stats["stages"]["model"]["ms_per_frame"],
            "recomputed_share": stats["recomputed_share"], "reuse": stats["reuse"],
        }
    result["speedup"] = round(result["reuse"]["fps"] / result["no_reuse"]["fps"], 3)
    a, b = (torch.from_numpy(outs[k]).float() for k in (False, True))
    mse = ((a - b) ** 2).flatten(1).mean(1)
    psnr = (10 * torch.log10(255.0**2 / mse.clamp(min=1e-10))).clamp(max=99.0)
    result["psnr_reuse_vs_no_reuse"] = {"mean": round(float(psnr.mean()), 2), "min": round(float(psnr.min()), 2),
                                        "per_frame": [round(float(v), 1) for v in psnr]}
    inp = read(clip, frames)
    result["mean_luma"] = {"input": round(float(luma(inp).mean()), 2),
                           **{("reuse" if k else "no_reuse"): round(float(luma(v).mean()), 2) for k, v in outs.items()}}
    result["flicker"] = {"input": round(flicker(inp), 4), **{("reuse" if k else "no_reuse"): round(flicker(v), 4) for k, v in outs.items()}}
    clean_path = clip.with_name(clip.stem + "_clean" + clip.suffix)
    if clean_path.is_file():
        clean = luma(read(clean_path, frames))
        moving = torch.from_numpy((clean.std(axis=0) >= 1.0).astype(np.float32))[None, None]
        static = (torch.nn.functional.max_pool2d(moving, 17, 1, 8)[0, 0] == 0).numpy()
        skip = 5  # warm-up of the smoothing
        result["static_share"] = round(float(static.mean()), 3)
        result["static_pixel_std"] = {
            "input": round(float(luma(inp[skip:]).std(axis=0)[static].mean()), 3),
            **{("reuse" if k else "no_reuse"): round(float(luma(v[skip:]).std(axis=0)[static].mean()), 3) for k, v in outs.items()},
        }
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clips", type=Path, nargs="+")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path("runs/reuse"))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--model", default="default", help="bundled name or checkpoint")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for clip in args.clips:
        r = measure(clip, args.frames, args.out, args.model)
        print(json.dumps({k: v for k, v in r.items() if k != "psnr_reuse_vs_no_reuse"} | {"psnr": {k: v for k, v in r["psnr_reuse_vs_no_reuse"].items() if k != "per_frame"}}), flush=True)
        results.append(r)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
