"""Show that video I/O memory does not grow with video length.

Generates two 720p clips (10 s and 2 min, 30 fps, AAC audio) in a temp folder, runs the identity
round trip (VideoReader -> VideoWriter, audio stream copy) on each in a fresh subprocess, and
prints each child's peak RSS. Streaming means both figures should be about the same.

    python scripts/io_memory.py [--seconds 10 120] [--preset ultrafast]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
from vidllie.video import transcode
t = time.time()
stats = transcode(sys.argv[1], sys.argv[2], preset=sys.argv[3])
stats["seconds"] = time.time() - t
stats["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
print(json.dumps(stats))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, nargs="+", default=[10, 120])
    ap.add_argument("--preset", default="ultrafast", help="x264 preset for the round trip")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    from media import make_clip  # the test clip generator (moving square + AAC sine)

    rows = []
    with tempfile.TemporaryDirectory(prefix="vidllie-mem-") as tmp:
        for secs in args.seconds:
            src = Path(tmp) / f"in_{secs:g}s.mp4"
            t = time.time()
            make_clip(src, width=1280, height=720, frames=int(secs * 30), fps=30, crf=23)
            made = time.time() - t
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(src), str(Path(tmp) / f"out_{secs:g}s.mp4"),
                 args.preset], capture_output=True, text=True, cwd=REPO)
            if out.returncode != 0:
                sys.exit(f"round trip failed for {secs:g} s: {out.stderr.strip()[-500:]}")
            stats = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((secs, stats))
            print(f"{secs:6g} s 720p: {stats['frames']:5d} frames, "
                  f"{stats['passthrough_packets']:5d} audio packets, round trip "
                  f"{stats['seconds']:.1f} s (input made in {made:.1f} s), "
                  f"peak RSS {stats['peak_rss_mib']:.0f} MiB", flush=True)
    if len(rows) >= 2:
        a, b = rows[0][1]["peak_rss_mib"], rows[-1][1]["peak_rss_mib"]
        print(f"peak RSS {rows[0][0]:g} s -> {rows[-1][0]:g} s: {a:.0f} MiB -> {b:.0f} MiB "
              f"({(b - a) / a * 100:+.1f} %)")


if __name__ == "__main__":
    main()
