"""Are two encoded videos the same, frame for frame? Compares decoded pictures, frame timestamps
and the audio packets' bytes and timestamps of every stream, with PyAV alone.

    python scripts/compare_outputs.py a.mp4 b.mp4

Exit 0 and "identical" when every decoded frame (as stored, full bit depth), every frame's pts
and every audio/subtitle packet match; exit 1 with the first difference otherwise. Used to check
that a change which should not touch the output (a refactor, a thread setting) did not.
"""

from __future__ import annotations

import hashlib
import sys
from itertools import zip_longest

import av
import numpy as np


def _video_frames(path: str):
    with av.open(path) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            plane_bytes = b"".join(bytes(p) for p in frame.planes)
            yield frame.pts, frame.format.name, (frame.width, frame.height), hashlib.sha256(plane_bytes).hexdigest(), frame


def _other_packets(path: str) -> list[tuple[int, int | None, str]]:
    with av.open(path) as container:
        streams = [s for s in container.streams if s.type != "video"]
        if not streams:
            return []
        return [(p.stream.index, p.pts, hashlib.sha256(bytes(p)).hexdigest())
                for p in container.demux(*streams) if p.size]


def compare(a: str, b: str) -> str | None:
    """None when `a` and `b` decode to the same frames, times and audio; else the first difference."""
    count = 0
    for fa, fb in zip_longest(_video_frames(a), _video_frames(b)):
        if fa is None or fb is None:
            return f"frame count differs: one file ends after {count} frames"
        if fa[:4] != fb[:4]:
            if fa[0] != fb[0]:
                return f"frame {count}: pts {fa[0]} vs {fb[0]}"
            if fa[1:3] != fb[1:3]:
                return f"frame {count}: format/size {fa[1:3]} vs {fb[1:3]}"
            da = fa[4].to_ndarray().astype(np.int32)
            db = fb[4].to_ndarray().astype(np.int32)
            diff = np.abs(da - db)
            return (f"frame {count} (pts {fa[0]}): pictures differ, max |diff| {diff.max()}, "
                    f"{(diff > 0).mean() * 100:.3f} % of samples")
        count += 1
    pa, pb = _other_packets(a), _other_packets(b)
    if pa != pb:
        for i, (x, y) in enumerate(zip_longest(pa, pb)):
            if x != y:
                return f"non-video packet {i} differs: {x} vs {y}"
    print(f"{count} frames, {len(pa)} other packets")
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    difference = compare(*args)
    if difference is None:
        print("identical")
        return 0
    print(difference)
    return 1


if __name__ == "__main__":
    sys.exit(main())
