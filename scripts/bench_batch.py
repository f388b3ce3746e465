#!/usr/bin/env python
"""Files/hour and frames/s of a batch job (``enhance_many``) for several worker counts, in one run.

Generates ``--files`` night-like clips (with audio) and enhances them with each worker count in
turn (0 = in this process, no Ray), rounds interleaved so that a shared machine's load hits every
count alike. Job wall time includes starting Ray and loading the model in every worker.

    python scripts/bench_batch.py --files 8 --size 320x180 --frames 24 --workers 0 1 2 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from vidllie.jobs.batch import enhance_many
from vidllie.pipeline.options import parse_size
from vidllie.video.synthetic import write_synthetic_clip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--size", default="320x180")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--model", default="default")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--gpus-per-worker", type=float, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    w, h = parse_size(args.size)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        clips = Path(tmp) / "clips"
        clips.mkdir()
        for i in range(args.files):
            write_synthetic_clip(clips / f"clip{i:03d}.mp4", w, h, args.frames, seed=i)
        for r in range(args.rounds):
            for n in args.workers:
                summary: dict = {}
                enhance_many([clips], Path(tmp) / f"out{r}_{n}", workers=n, model=args.model, device=args.device,
                             gpus_per_worker=args.gpus_per_worker if n else None, preset="veryfast", summary=summary)
                row = {k: summary[k] for k in ("workers", "files", "done", "frames", "wall_seconds", "fps",
                                               "files_per_hour", "startup_seconds", "cpus_per_worker", "gpus_per_worker")}
                busy = [v["busy_seconds"] for v in summary["per_worker"].values()]
                row["steady_fps"] = round(summary["frames"] / (summary["wall_seconds"] - summary["startup_seconds"]), 3)
                row["worker_busy_seconds"] = busy
                results.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "frames_per_file": args.frames, "model": args.model,
                                         "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
