#!/usr/bin/env python
"""Peak host RSS of `vidllie bench` for a short and a long run of the same input.

Streaming must keep host memory flat: the two peaks should differ by < 10 %. Each run is its own
process (peak RSS is per process). Example:

    python scripts/bench_rss.py --synthetic 640x360 --frames 300 1200 --model default
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input")
    src.add_argument("--synthetic")
    p.add_argument("--frames", nargs=2, type=int, default=[300, 1200])
    p.add_argument("--model", default="default")
    p.add_argument("--batch-size", type=int, default=4)
    args = p.parse_args()

    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic:
            from vidllie.pipeline.options import parse_size
            from vidllie.video.synthetic import write_synthetic_clip

            w, h = parse_size(args.synthetic)
            source = str(write_synthetic_clip(Path(tmp) / "synthetic.mp4", w, h, max(args.frames)))
        else:
            source = args.input
        for n in args.frames:
            out = Path(tmp) / f"r{n}.json"
            cmd = [sys.executable, "-m", "vidllie", "bench", source, "--model", args.model, "--frames", str(n),
                   "--batch-size", str(args.batch_size), "--json", str(out), "--quiet"]
            subprocess.run(cmd, check=True)
            r = json.loads(out.read_text())
            peaks[n] = r["peak_host_rss_mb"]
            print(f"{r['frames']} frames: peak host RSS {r['peak_host_rss_mb']} MB, "
                  f"end-to-end {r['end_to_end']['fps']} fps, efficiency {r['pipeline_efficiency']}")
    a, b = (peaks[n] for n in args.frames)
    diff = abs(b - a) / a
    print(f"peak RSS {a} MB vs {b} MB: {100 * diff:.1f} % apart ({'flat' if diff < 0.10 else 'NOT flat'})")
    sys.exit(0 if diff < 0.10 else 1)


if __name__ == "__main__":
    main()
