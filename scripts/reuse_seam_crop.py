"""A crop across a recomputed tile's edge, for docs: no-reuse | reuse | |difference| x 8.

    python scripts/reuse_seam_crop.py runs/static/traffic_night_b.mp4 runs/reuse docs/images/reuse_seam_crop.png

Replays the reuse planner on the input (same batches of 4 as the run, so the same decisions),
picks the first frame recomputed in tiles, and crops ``--size`` px centred on the right edge of
its first tile's core (where the tile's output fades into the reused one).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import kornia
import numpy as np
import torch

from vidllie.pipeline.reuse import RegionReuse
from vidllie.pipeline.scene import SceneCutDetector, luma_thumbnails
from vidllie.video import VideoReader


def frames(path: Path, n: int) -> np.ndarray:
    with VideoReader(path, max_frames=n, passthrough=False) as r:
        return np.stack([f.image for f in r])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clip", type=Path)
    ap.add_argument("outputs", type=Path, help="folder with <stem>_reuse.mp4 and <stem>_noreuse.mp4")
    ap.add_argument("png", type=Path)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--full-share", type=float, default=0.35, help="as in the run that made the outputs")
    args = ap.parse_args(argv)
    x = torch.from_numpy(frames(args.clip, args.frames)).permute(0, 3, 1, 2).float() / 255.0
    reuse, cuts = RegionReuse(full_share=args.full_share), SceneCutDetector()
    pick = None
    for i in range(0, len(x), 4):
        plan = reuse.plan(x[i : i + 4], cuts(luma_thumbnails(x[i : i + 4])))
        for k, tiles in enumerate(plan.tiles):
            if tiles and not plan.full[k] and pick is None and i + k > 4:
                pick = (i + k, tiles[0])
    if pick is None:
        print("no tile frame")
        return 1
    t, (_, core) = pick
    h, w = x.shape[-2:]
    s = args.size
    cy = min(max(0, (core[0] + core[1]) // 2 - s // 2), h - s)
    cx = min(max(0, core[3] - s // 2), w - s)
    a = frames(args.outputs / f"{args.clip.stem}_noreuse.mp4", t + 1)[t]
    b = frames(args.outputs / f"{args.clip.stem}_reuse.mp4", t + 1)[t]
    crop = np.s_[cy : cy + s, cx : cx + s]
    diff = np.clip(np.abs(a[crop].astype(int) - b[crop].astype(int)) * 8, 0, 255).astype(np.uint8)
    sep = np.full((s, 4, 3), 255, np.uint8)
    sheet = np.concatenate([a[crop], sep, b[crop], sep, diff], axis=1)
    sheet = np.repeat(np.repeat(sheet, 2, 0), 2, 1)  # 2x nearest: seams would show as lines
    args.png.parent.mkdir(parents=True, exist_ok=True)
    kornia.io.write_image(str(args.png), torch.from_numpy(sheet).permute(2, 0, 1).contiguous())
    print(f"frame {t}, core {core}, crop y {cy} x {cx} ({s} px): core edge at x = {core[3] - cx} in the crop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
