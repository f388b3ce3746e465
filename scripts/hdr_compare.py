"""HDR input against a standard HDR -> SDR tone map (docs/benchmarks.md, "HDR input").

From the first ``--seconds`` of an SDR clip (default: the shared night dashcam clip) this makes HLG
and PQ clips (10-bit HEVC, BT.2020) with FFmpeg's zscale, then for each:

- enhances it with vidllie (default ``hdr="sdr"``: converted in linear light before the model);
- tone-maps it to SDR with FFmpeg (zscale to linear, npl=100, BT.709 primaries, tonemap=hable,
  desat=0, BT.709) and enhances that;
- compares the mean luma of the two outputs (the issue asks for them within 15 %), checks that
  every frame is kept, and writes ``hdr="keep"`` output and probes its tags.

The FFmpeg binary is imageio-ffmpeg's (it has zscale; PyAV's libavfilter does not); it is only
used here, never by vidllie. Re-run::

    HF_HUB_OFFLINE=1 python scripts/hdr_compare.py --model fast --seconds 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import av
import numpy as np

from vidllie import Enhancer
from vidllie.jobs.video_job import enhance_video_file
from vidllie.video import VideoReader

ROOT = Path(__file__).resolve().parents[1]
TO_HDR = {
    "HLG": "zscale=t=arib-std-b67:m=bt2020nc:p=bt2020:r=tv:npl=100",
    "PQ": "zscale=t=smpte2084:m=bt2020nc:p=bt2020:r=tv:npl=100",
}
X265_TAGS = {"HLG": "arib-std-b67", "PQ": "smpte2084"}
TONEMAP = ("zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=tonemap=hable:desat=0,"
           "zscale=t=bt709:m=bt709:r=tv,format=yuv420p")


def ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args]
    subprocess.run(cmd, check=True)


def make_hdr(src: Path, dst: Path, kind: str, seconds: float) -> None:
    tags = f"colorprim=bt2020:transfer={X265_TAGS[kind]}:colormatrix=bt2020nc:log-level=error"
    ffmpeg("-i", str(src), "-t", str(seconds), "-vf",
           f"zscale=tin=bt709:min=bt709:pin=bt709:rin=tv,{TO_HDR[kind]},format=yuv420p10le",
           "-c:v", "libx265", "-crf", "12", "-preset", "fast", "-x265-params", tags,
           "-c:a", "copy", str(dst))


def luma_stats(path: Path) -> tuple[float, int]:
    """Mean BT.709 luma (0..1) of the decoded RGB frames, and the frame count."""
    total, n = 0.0, 0
    with VideoReader(path, allow_hdr="convert") as r:
        for f in r:
            img = f.image.astype(np.float32) / (65535.0 if f.image.dtype == np.uint16 else 255.0)
            total += float((img @ np.array([0.2126, 0.7152, 0.0722], np.float32)).mean())
            n += 1
    return total / max(n, 1), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, default=ROOT.parent / "shared/media/night_dashcam.mp4")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--model", default="fast")
    ap.add_argument("--work", type=Path, default=None, help="keep the clips here (default: temp)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="vidllie-hdr-"))
    work.mkdir(parents=True, exist_ok=True)
    enhancer = Enhancer(args.model, device="cpu")
    results = {"input": str(args.input), "seconds": args.seconds, "model": args.model}
    for kind in ("HLG", "PQ"):
        hdr = work / f"{kind.lower()}.mp4"
        ref = work / f"{kind.lower()}_tonemapped.mp4"
        make_hdr(args.input, hdr, kind, args.seconds)
        ffmpeg("-i", str(hdr), "-vf", TONEMAP, "-c:v", "libx264", "-crf", "12", "-c:a", "copy", str(ref))
        ours, theirs = work / f"{kind.lower()}_enhanced.mp4", work / f"{kind.lower()}_ref_enhanced.mp4"
        stats = enhance_video_file(enhancer, hdr, ours, overwrite=True)
        enhance_video_file(enhancer, ref, theirs, overwrite=True)
        keep = work / f"{kind.lower()}_keep.mp4"
        enhance_video_file(enhancer, hdr, keep, overwrite=True, hdr="keep")
        with av.open(str(keep)) as c:
            cc = c.streams.video[0].codec_context
            keep_tags = {"codec": cc.name, "pix_fmt": cc.pix_fmt, "primaries": int(cc.color_primaries),
                         "trc": int(cc.color_trc), "matrix": int(cc.colorspace)}
        (l_in, n_in), (l_ours, n_ours) = luma_stats(hdr), luma_stats(ours)
        (l_ref_in, _), (l_ref, n_ref) = luma_stats(ref), luma_stats(theirs)
        (l_keep, n_keep) = luma_stats(keep)
        results[kind] = {
            "frames": {"input": n_in, "sdr_out": n_ours, "ref_out": n_ref, "keep_out": n_keep},
            "mean_luma": {"hdr_codes": round(l_in, 4), "ffmpeg_tonemapped": round(l_ref_in, 4),
                          "enhanced_ours": round(l_ours, 4), "enhanced_ffmpeg_tonemapped": round(l_ref, 4),
                          "keep_hlg_codes": round(l_keep, 4)},
            "relative_difference": round(abs(l_ours - l_ref) / l_ref, 4),
            "keep_tags": keep_tags, "stats_hdr": stats["hdr"],
        }
        print(kind, json.dumps(results[kind], indent=1), flush=True)
    (work / "hdr_compare.json").write_text(json.dumps(results, indent=1))
    print(f"written {work / 'hdr_compare.json'}")


if __name__ == "__main__":
    main()
