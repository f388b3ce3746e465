#!/usr/bin/env python
"""Sweep `vidllie bench` over a matrix and write a markdown table.

Each cell runs in its own process (`vidllie bench ... --json`), so peak memory figures are per
cell and nothing is warm from the previous one. Example (GPU):

    python scripts/bench_sweep.py --model small.safetensors --sizes 360p 720p 1080p 4k \\
        --batch-sizes 1 4 8 --precisions fp16 bf16 fp32 --cache on off --out docs/bench_gpu.md

4K cells run in exact chunks (--chunk 1024) unless --chunk is given. A failing cell is recorded with its
error and the sweep goes on.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

COLUMNS = ("size", "batch", "precision", "cache", "e2e fps", "model-only fps", "efficiency",
           "bound by", "DINO hit rate", "GMAC/frame", "TFLOP/s", "peak RSS MB", "peak GPU MB")


def run_cell(args, size: str, batch: int, precision: str, cache: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        cmd = [sys.executable, "-m", "vidllie", "bench", "--model", args.model, "--frames", str(args.frames),
               "--batch-size", str(batch), "--precision", precision, "--dino-cache", cache,
               "--device", args.device, "--json", str(out), "--quiet"]
        cmd += ["--synthetic", size] if args.input is None else [args.input]
        chunk = args.chunk if args.chunk is not None else (1024 if size.lower() in ("4k", "2160p", "3840x2160") else None)
        if chunk:
            cmd += ["--chunk", str(chunk)]
        if args.dino:
            cmd += ["--dino", args.dino]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
        return json.loads(out.read_text())


def row(size, batch, precision, cache, r: dict) -> list[str]:
    if "error" in r:
        return [size, str(batch), precision, cache, "error: " + r["error"]] + [""] * (len(COLUMNS) - 5)
    f = lambda v, fmt: "n/a" if v is None else format(v, fmt)  # noqa: E731
    return [f"{r['width']}x{r['height']}", str(batch), r["settings"]["precision"], cache,
            f(r["end_to_end"]["fps"], ".2f"), f(r["model_only"]["fps"], ".2f"),
            f(r["pipeline_efficiency"], ".3f"), r["bound_by"], f(r["dino_cache_hit_rate"], ".2f"),
            f(r["macs_per_frame"] / 1e9 if r["macs_per_frame"] else None, ".1f"),
            f(r["achieved_tflops"], ".3f"), f(r["peak_host_rss_mb"], ".0f"), f(r["peak_device_memory_mb"], ".0f")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", help="a video instead of synthetic clips (then --sizes is ignored)")
    p.add_argument("--model", default="default")
    p.add_argument("--dino", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--sizes", nargs="+", default=["360p", "720p", "1080p", "4k"])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4])
    p.add_argument("--precisions", nargs="+", default=["auto"])
    p.add_argument("--cache", nargs="+", default=["on"], choices=["on", "off"])
    p.add_argument("--chunk", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="write the markdown table here (else stdout)")
    args = p.parse_args()

    sizes = [Path(args.input).name] if args.input else args.sizes
    rows, device = [], None
    for size, batch, precision, cache in itertools.product(sizes, args.batch_sizes, args.precisions, args.cache):
        r = run_cell(args, size, batch, precision, cache)
        device = device or r.get("device_name")
        rows.append(row(size, batch, precision, cache, r))
        print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    table = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    text = f"Device: {device}; model {args.model}; {args.frames} frames per cell.\n\n" + "\n".join(table) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
