"""Write synthetic low-light pairs to a folder in the LOL layout (low/, high/), to look at them or
to evaluate on them (``vidllie eval --model M OUT``).

    python scripts/make_pairs.py ../shared/images runs/pairs/val --split val        # held-out split
    python scripts/make_pairs.py ../shared/images runs/pairs/train --split train --limit 50
    python scripts/make_pairs.py ../shared/frames/davis2016_urban_480p/car-shadow runs/pairs/clip --clip 8

    # held-out split with spatially varying night light (today's held-out pairs, lit by lamps)
    python scripts/make_pairs.py ../shared/images runs/heldout-nightlight --split val \
        --degradation configs/train/default.yaml --light-prob 1
    # a contact sheet of samples for the docs (input | input ** 0.4 | target per row)
    python scripts/make_pairs.py ../shared/images runs/pairs/sheet --split val --limit 8 --max-side 320 \
        --light-prob 1 --mono-prob 0.25 --grid docs/images/nightlight_samples.jpg

Each image's degradation is fixed by (its path relative to the input folder, --seed), so the same
command writes the same pairs on any machine. ``params.json`` records every sample's settings.
The high/ images are the training targets (the photo, grey for monochrome samples, with the
visible light sources of night-light samples; see vidllie/train/degrade.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from vidllie.train.datasets import fixed_pair, list_images, load_image, name_seed, save_image, split_images, to_float
from vidllie.train.degrade import DegradeConfig, degrade_pair, sample_degradation


def contact_sheet(pairs: list[tuple[torch.Tensor, torch.Tensor]], path: Path, height: int = 150) -> Path:
    """One row per pair: the input, the input brightened by a plain gamma 0.4 (to show where the
    light falls) and the target, each resized to ``height`` px tall; written as .jpg or .png."""
    import kornia

    rows = []
    for low, high in pairs:
        tiles = [low, kornia.enhance.adjust_gamma(low, 0.4), high]
        tiles = [kornia.geometry.transform.resize(t[None], (height, round(t.shape[-1] * height / t.shape[-2])), antialias=True)[0] for t in tiles]
        rows.append(torch.cat([torch.cat([t, torch.ones(3, height, 4)], -1) for t in tiles], -1)[..., :-4])
    width = max(r.shape[-1] for r in rows)
    rows = [torch.nn.functional.pad(r, (0, width - r.shape[-1]), value=1.0) for r in rows]
    grid = torch.cat([torch.cat([r, torch.ones(3, 4, width)], -2) for r in rows], -2)[:, :-4]
    path.parent.mkdir(parents=True, exist_ok=True)
    kornia.io.write_image(str(path), (grid.clamp(0, 1) * 255).round().to(torch.uint8).contiguous())
    return path


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
    ap.add_argument("--light-prob", type=float, default=None, help="override the degradation's light_prob (night light: lamp pools, cones, windows)")
    ap.add_argument("--mono-prob", type=float, default=None, help="override the degradation's mono_prob (grey IR-like samples)")
    ap.add_argument("--grid", type=Path, default=None, help="also write a contact sheet of the pairs (input | input ** 0.4 | target), .jpg or .png")
    ap.add_argument("--grid-height", type=int, default=150, help="row height of the contact sheet in pixels")
    args = ap.parse_args(argv)

    config = DegradeConfig()
    if args.degradation is not None:
        import yaml

        data = yaml.safe_load(args.degradation.read_text()) or {}
        if "data" in data:  # a training config: use its data.degradation section
            data = (data.get("data") or {}).get("degradation") or {}
        config = DegradeConfig.from_dict(data)
    overrides = {k: v for k, v in (("light_prob", args.light_prob), ("mono_prob", args.mono_prob)) if v is not None}
    if overrides:
        config = DegradeConfig.from_dict({**config.to_dict(), **overrides})
    (args.out / "low").mkdir(parents=True, exist_ok=True)
    (args.out / "high").mkdir(parents=True, exist_ok=True)
    record: dict = {"degradation": config.to_dict(), "seed": args.seed, "pairs": {}}
    sheet: list[tuple[torch.Tensor, torch.Tensor]] = []

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
        low, high = degrade_pair(high, params, g)  # one parameter set (and light layout) for the clip, noise per frame, one H.264 stream
        for t, p in enumerate(frames):
            save_image(args.out / "low" / p.stem, low[0, t])
            save_image(args.out / "high" / p.stem, high[0, t])
            sheet.append((low[0, t], high[0, t]))
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
            if args.grid is not None:
                sheet.append((low, high))
            g = torch.Generator().manual_seed(name_seed(name, args.seed))
            record["pairs"][stem] = sample_degradation(1, g, config).to_dict()
    (args.out / "params.json").write_text(json.dumps(record, indent=1))
    if args.grid is not None:
        print(f"wrote {contact_sheet(sheet, args.grid, args.grid_height)}")
    print(f"wrote {len(record['pairs']) if not args.clip else args.clip} pair(s) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
