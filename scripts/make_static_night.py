"""Night versions of fixed-camera day clips, made with the project's own degradation, for the
change-driven inference (reuse) and steadiness measurements of docs/benchmarks.md.

    python scripts/make_static_night.py ../shared/media/day_traffic_msmpeg4_mp3.avi runs/static/traffic_night.mp4
    python scripts/make_static_night.py ../shared/media/day_road_above_intel.mp4 runs/static/road_night.mp4

One parameter set per clip (:func:`vidllie.train.degrade.sample_degradation` with a fixed seed,
no blur, exposure and noise drawn from the night ranges below), sensor noise drawn per frame and a
real H.264 pass over the clip as one stream (P-frames), exactly as the trainer degrades clips.
The result is written near-losslessly (CRF 4) so the stored file is what the degradation made; the
clean frames go beside it (``*_clean.mp4``) as the reference. ``params.json``-style settings are
printed as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from vidllie.train.degrade import DegradeConfig, degrade, sample_degradation
from vidllie.video import VideoReader, VideoWriter


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="a fixed-camera day clip")
    ap.add_argument("out", type=Path, help="output .mp4 (the clean reference goes to *_clean.mp4)")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--skip", type=int, default=0, help="drop this many frames first")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--exposure", type=float, nargs=2, default=(1 / 40, 1 / 20), help="exposure factor range")
    ap.add_argument("--crf", type=int, nargs=2, default=(20, 23), help="H.264 CRF range of the degradation")
    args = ap.parse_args(argv)

    with VideoReader(args.src, max_frames=args.skip + args.frames, passthrough=False) as reader:
        info = reader.info
        frames = [f for f in reader][args.skip :]
    clip = torch.from_numpy(np.stack([f.image for f in frames])).permute(0, 3, 1, 2).float() / 255.0
    config = DegradeConfig(
        exposure=tuple(args.exposure), cast_prob=1.0, cast_strength=(0.2, 0.4), photons=(1500.0, 3000.0),
        read_noise=(5e-4, 1e-3), defocus_prob=0.0, motion_prob=0.0, chroma_bias_prob=1.0,
        h264_prob=1.0, crf=tuple(args.crf),
    )
    g = torch.Generator().manual_seed(args.seed)
    params = sample_degradation(1, g, config)  # one parameter set for the whole clip
    low = degrade(clip[None], params, g)[0]  # per-frame noise, H.264 over the clip
    low8 = (low * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    clean = args.out.with_name(args.out.stem + "_clean" + args.out.suffix)
    for path, images in ((args.out, low8), (clean, np.stack([f.image for f in frames]))):
        with VideoReader(args.src, max_frames=1, passthrough=False) as reader:  # writer needs the open reader
            with VideoWriter(path, reader.info, crf=4, preset="fast", audio=False, overwrite=True) as writer:
                for img, f in zip(images, frames):
                    writer.write(np.ascontiguousarray(img), pts=f.pts, time_base=f.time_base)
    summary = {
        "src": str(args.src), "out": str(args.out), "clean": str(clean), "frames": len(frames),
        "size": [info.width, info.height], "mean_luma_in": round(float(low8.mean()), 2),
        "params": {k: v for k, v in params.to_dict().items()},
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
