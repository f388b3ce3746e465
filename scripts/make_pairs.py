"""Write synthetic low-light pairs to a folder in the LOL layout (low/, high/), to look at them or
to evaluate on them (``vidllie eval --model M OUT``).

    python scripts/make_pairs.py ../shared/images runs/pairs/val --split val        # held-out split
    python scripts/make_pairs.py ../shared/images runs/pairs/train --split train --limit 50
    python scripts/make_pairs.py ../shared/frames/davis2016_urban_480p/car-shadow runs/pairs/clip --clip 8

Each image's degradation is fixed by (its path relative to the input folder, --seed), so the same
command writes the same pairs on any machine. ``params.json`` records every sample's settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from vidllie.train.datasets import fixed_pair, list_images, load_image, name_seed, save_image, split_images, to_float
from vidllie.train.degrade import DegradeConfig, degrade, sample_degradation


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", type=Path, help="folder of normal-light images (searched recursively), or frames with --clip")
    ap.add_argument("out", type=Path, help="output folder (low/ and high/ are created)")
    ap.add_argument("--split", choices=("val", "train", "all"), default="val", help="held-out split, training split, or all")
    ap.add_argument("--fraction", type=float, default=0.1, help="held-out fraction (by file name)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--limit", type=int, default=None, help="at most this many images")
    ap.add_argument("--max-side", type=int, default=None, help="downscale so the long side is at most this")
    ap.add_argument("--degradation", type=Path, default=None, help="YAML/JSON file with DegradeConfig fields, or a training config (its data.degradation)")
    ap.add_argument("--clip", type=int, default=0, help="treat IMAGES as consecutive frames: write one clip of N frames")
    args = ap.parse_args(argv)

    config = DegradeConfig()
    if args.degradation is not None:
        import yaml

        data = yaml.safe_load(args.degradation.read_text()) or {}
        if "data" in data:  # a training config: use its data.degradation section
            data = (data.get("data") or {}).get("degradation") or {}
        config = DegradeConfig.from_dict(data)
    (args.out / "low").mkdir(parents=True, exist_ok=True)
    (args.out / "high").mkdir(parents=True, exist_ok=True)
    record: dict = {"degradation": config.to_dict(), "seed": args.seed, "pairs": {}}

    if args.clip:
        frames = list_images(args.images)[: args.clip]
        if len(frames) < 2:
            print(f"error: {args.images}: fewer than 2 frames", file=sys.stderr)
            return 2
        high = torch.stack([to_float(load_image(p)) for p in frames])
        h, w = high.shape[-2] // 2 * 2, high.shape[-1] // 2 * 2
        high = high[..., :h, :w][None]
        g = torch.Generator().manual_seed(name_seed(args.images.name, args.seed))
        params = sample_degradation(1, g, config)
        low = degrade(high, params, g)  # one parameter set for the clip, noise per frame, one H.264 stream
        for t, p in enumerate(frames):
            save_image(args.out / "low" / p.stem, low[0, t])
            save_image(args.out / "high" / p.stem, high[0, t])
        record["pairs"][args.images.name] = params.to_dict()
    else:
        train, val = split_images(args.images, args.fraction)
        paths = {"val": val, "train": train, "all": sorted(train + val)}[args.split][: args.limit]
        for p in paths:
            name = p.relative_to(args.images).as_posix()
            low, high = fixed_pair(load_image(p), name, args.seed, config, args.max_side)
            stem = name.rsplit(".", 1)[0].replace("/", "__")
            save_image(args.out / "low" / stem, low)
            save_image(args.out / "high" / stem, high)
            g = torch.Generator().manual_seed(name_seed(name, args.seed))
            record["pairs"][stem] = sample_degradation(1, g, config).to_dict()
    (args.out / "params.json").write_text(json.dumps(record, indent=1))
    print(f"wrote {len(record['pairs']) if not args.clip else args.clip} pair(s) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
