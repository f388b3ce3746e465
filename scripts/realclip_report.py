"""Per-clip bars for a model through the real pipeline (Enhancer: scene check, model,
temporal stage as configured, grey in -> grey out), and again with the temporal stage off.

    python scripts/realclip_report.py --model fast --model quality   # all clips, both settings
    python scripts/realclip_report.py --model default --clips dashcam lamp --png /tmp/rc
    python scripts/realclip_report.py --model fast --scene-exposure     # any model with vidllie/pipeline/exposure.py

Clips: ``dashcam`` (the first 90 frames of ../shared/media/night_dashcam.mp4, 640x360, real) and
the night clips of :data:`vidllie.train.realclip.CLIPS` (72 frames, 480x270, made with the
project's degradation with a fixed seed: ``still`` a fixed camera, ``lamp`` a lamp-lit street
with real motion, ``grey`` an IR-like camera). Bars per clip: pop (largest frame-to-frame change
of mean luma <= the input's + 1 level), flicker (std of that change <= 1.5x the input's + 0.03),
mean luma 30..130, near-black areas (7x7 input neighbourhood <= 3/255: output mean <= 45, std <=
10; reported where >= 5 % of the input is nearly black), lamp (darker half >= 25, <= 1.5 %
blown), grey (|R-G| + |G-B| <= 1). Reads ../shared (VIDLLIE_SHARED elsewhere) at run time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vidllie.pipeline.enhancer import Enhancer
from vidllie.train.realclip import CLIPS, clip_bars, night_clip, read_clip

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDLLIE_SHARED", REPO.parent / "shared"))
DASHCAM_FRAMES = 90


def load_clip(name: str, dashcam_frames: int = DASHCAM_FRAMES) -> tuple[torch.Tensor, str]:
    if name == "dashcam":
        return read_clip(SHARED / "media" / "night_dashcam.mp4", dashcam_frames), "dashcam"
    return night_clip(name, SHARED)


def run(enhancer: Enhancer, clip: torch.Tensor) -> torch.Tensor:
    frames = [np.ascontiguousarray(f) for f in clip.permute(0, 2, 3, 1).numpy()]
    out = list(enhancer.enhance_frames(frames))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", help="model name or path (repeatable; default: default)")
    ap.add_argument("--clips", nargs="+", default=["dashcam", *CLIPS], choices=["dashcam", *CLIPS])
    ap.add_argument("--temporal", type=float, nargs="+", default=None,
                    help="temporal strengths to run (default: as configured, then 0)")
    ap.add_argument("--png", type=Path, help="save frames 30-32 of input and outputs here")
    ap.add_argument("--json", type=Path, help="write all figures here")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dashcam-frames", type=int, default=DASHCAM_FRAMES, help="frames of the dashcam clip (1118: all)")
    ap.add_argument("--scene-exposure", action=argparse.BooleanOptionalAction, default=None,
                    help="the scene-exposure stage on/off (default: the model's own: on for default)")
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        print(f"realclip_report: {SHARED} not found (set VIDLLIE_SHARED)", file=sys.stderr)
        return 2
    clips = {name: load_clip(name, args.dashcam_frames) for name in args.clips}
    settings = [None, 0.0] if args.temporal is None else args.temporal
    report, failures = {}, 0
    for model in args.model or ["default"]:
        for temporal in settings:
            opts = {} if temporal is None else {"temporal": temporal}
            if args.threads:
                opts["threads"] = args.threads
            enhancer = Enhancer(model, scene_exposure=args.scene_exposure, **opts)
            label = f"{model}{'+scene' if enhancer.exposure.enabled else ''} temporal={enhancer.smoother.strength:g}"
            for name, (clip, kind) in clips.items():
                t0 = time.perf_counter()
                out = run(enhancer, clip)
                seconds = time.perf_counter() - t0
                bars = clip_bars(clip, out, kind)
                report.setdefault(label, {})[name] = {k: [round(v, 3), lim, ok] for k, (v, lim, ok) in bars.items()}
                failed = [k for k, (_, _, ok) in bars.items() if not ok]
                failures += len(failed)
                cells = "  ".join(f"{k}={v:.2f}{'' if ok else '!'}" for k, (v, _, ok) in bars.items())
                print(f"{label:28s} {name:8s} {len(clip) / seconds:5.1f} f/s  {'PASS' if not failed else 'FAIL'}  {cells}", flush=True)
                if args.png:
                    import kornia

                    args.png.mkdir(parents=True, exist_ok=True)
                    tag = f"{Path(model).stem}{'+scene' if enhancer.exposure.enabled else ''}_t{enhancer.smoother.strength:g}"
                    for i in (30, 31, 32):
                        if i < len(clip):
                            kornia.io.write_image(str(args.png / f"{name}_{i}_input.png"), clip[i].contiguous())
                            kornia.io.write_image(str(args.png / f"{name}_{i}_{tag}.png"), out[i].contiguous())
    print("limits: " + json.dumps({n: {k: v[1] for k, v in c.items()} for n, c in next(iter(report.values())).items()}))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
