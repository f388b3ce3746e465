"""What the DINO cache saves, with DINO at its real size: a randomly initialised DINOv3 ViT-S/16
(timing only, :func:`vidllie.jobs.bench.random_dinov3_vits16`) behind the pipeline's own
decision path (scene cuts, reuse planner, :class:`DinoCache`), without the restoration network.

    python scripts/bench_dino_cache.py runs/static/traffic_night_b.mp4 ../shared/media/night_dashcam.mp4 --frames 40

Per clip and mode (no cache; key-frame cache by threshold; reuse on = keys are the full
refreshes): DINO runs, hit rate, DINO seconds, and the time saved against no cache. DINO runs at
the ``tiny`` variant's short side (224) unless ``--short-side`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vidllie.models.configuration import DinoConfig
from vidllie.models.dino import DinoBackbone
from vidllie.jobs.bench import random_dinov3_vits16
from vidllie.pipeline.dino_cache import DinoCache
from vidllie.pipeline.options import DEFAULTS
from vidllie.pipeline.reuse import RegionReuse
from vidllie.pipeline.scene import SceneCutDetector, luma_thumbnails
from vidllie.video import VideoReader


def run(frames: torch.Tensor, backbone, mode: str, batch: int = 4) -> dict:
    seconds = [0.0]

    def dino(x):
        t0 = time.perf_counter()
        maps = backbone(x)
        seconds[0] += time.perf_counter() - t0
        return maps

    cache = DinoCache(dino, enabled=mode != "off", threshold=DEFAULTS.cache_threshold, max_age=DEFAULTS.cache_max_age)
    cuts = SceneCutDetector(DEFAULTS.scene_cut_threshold)
    reuse = RegionReuse(max_age=DEFAULTS.cache_max_age) if mode == "reuse" else None
    with torch.inference_mode():
        for i in range(0, len(frames), batch):
            x = frames[i : i + batch]
            thumbs = luma_thumbnails(x)
            flags = cuts(thumbs)
            refresh = None
            if reuse is not None:
                plan = reuse.plan(x, flags)
                refresh = [r if f else None for f, r in zip(plan.full, plan.reasons)]
            cache(x, thumbs, flags, refresh)
    s = cache.stats()
    return {"mode": mode, "dino_runs": s["misses"], "hit_rate": s["hit_rate"], "dino_seconds": round(seconds[0], 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clips", type=Path, nargs="+")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--short-side", type=int, default=224)
    args = ap.parse_args(argv)
    backbone = DinoBackbone(DinoConfig(backbone=None, short_side=args.short_side), backbone=random_dinov3_vits16())
    results = []
    for clip in args.clips:
        with VideoReader(clip, max_frames=args.frames, passthrough=False) as r:
            x = torch.from_numpy(np.stack([f.image for f in r])).permute(0, 3, 1, 2).float() / 255.0
        backbone(x[:1])  # warm-up
        rows = [run(x, backbone, mode) for mode in ("off", "cache", "reuse")]
        per_frame = rows[0]["dino_seconds"] / max(1, rows[0]["dino_runs"])
        for row in rows:
            row["saved_seconds"] = round(rows[0]["dino_seconds"] - row["dino_seconds"], 2)
            row["saved_share"] = round(row["saved_seconds"] / rows[0]["dino_seconds"], 3)
        out = {"clip": str(clip), "frames": len(x), "size": list(x.shape[-2:]), "short_side": args.short_side,
               "dino_ms_per_run": round(1000 * per_frame, 1), "modes": rows}
        print(json.dumps(out), flush=True)
        results.append(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
