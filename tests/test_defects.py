"""Awkward inputs and stops: each case ends with a clear outcome, no traceback, and nothing
processed is lost (one test per defect)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from media import audio_packets, make_clip, video_times
from vidllie.cli import app
from vidllie.errors import OutputError
from vidllie.video import VideoReader, VideoWarning, VideoWriter, transcode

REPO = Path(__file__).resolve().parents[1]
FAST = {"preset": "ultrafast"}


def only_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def caught(fn) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        result = fn()
    return result, [str(w.message) for w in got if issubclass(w.category, VideoWarning)]


def cli(*args) -> object:
    return CliRunner().invoke(app, ["enhance", *map(str, args)])


# ---------------------------------------------------------------- 2. SIGTERM / SIGHUP
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_sighup_leave_no_part_file_and_say_so_on_their_own_line(sig, code, micro_path, tmp_path):
    src = make_clip(tmp_path / "long.mkv", width=256, height=160, frames=400, fps=25)
    dst = tmp_path / "out.mp4"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidllie", "enhance", str(src), "-o", str(dst), "--model", str(micro_path),
         "--preset", "ultrafast", "--batch-size", "1", "--threads", "1"],
        stderr=subprocess.PIPE, env=env, text=True)
    deadline = time.monotonic() + 120
    while not any(n.startswith(".out.") for n in only_files(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # a few batches in
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert only_files(tmp_path) == ["long.mkv"]  # no hidden .part file, no output
    lines = err.split("\n")
    assert f"vidllie: interrupted ({signal.Signals(sig).name}); nothing was written to {dst}" in lines, err
    assert "Traceback" not in err


# ---------------------------------------------------------------- 3. resolution change mid-stream
def two_size_ts(tmp_path: Path) -> Path:
    a = make_clip(tmp_path / "a.ts", width=64, height=48, frames=12, fps=25)
    b = make_clip(tmp_path / "b.ts", width=96, height=64, frames=10, fps=25)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(a.read_bytes() + b.read_bytes())  # what `cat seg1.ts seg2.ts` gives
    return joined


def test_resolution_change_mid_stream_scales_to_the_first_size(tmp_path):
    src = two_size_ts(tmp_path)
    dst = tmp_path / "out.ts"  # TS keeps the ADTS AAC bytes as they are (MKV strips the headers)
    stats, said = caught(lambda: transcode(src, dst, **FAST))
    assert stats["frames"] == 22
    assert any("resolution changed from 64x48 to 96x64" in m and "scaled to 64x48" in m for m in said), said
    with av.open(str(dst)) as c:
        sizes = {(f.width, f.height) for f in c.decode(video=0)}
    assert sizes == {(64, 48)}
    times = video_times(dst)
    assert len(times) == 22 and all(b > a for a, b in zip(times, times[1:]))  # 2nd segment follows on
    assert times[12] - times[11] == pytest.approx(0.04, abs=0.002)
    ins = audio_packets(tmp_path / "a.ts")[0] + audio_packets(tmp_path / "b.ts")[0]
    assert audio_packets(dst)[0] == ins  # both segments' audio, unchanged


def test_resolution_change_through_the_enhancer(micro_path, tmp_path):
    from vidllie.jobs.video_job import enhance_video_file
    from vidllie.pipeline.enhancer import Enhancer

    src = two_size_ts(tmp_path)
    stats, _ = caught(lambda: enhance_video_file(Enhancer(micro_path, device="cpu", batch_size=4),
        src, tmp_path / "out.mp4", preset="ultrafast"))
    assert stats["frames"] == 22 and len(video_times(tmp_path / "out.mp4")) == 22


# ---------------------------------------------------------------- 4. AVI with B-frames
def test_avi_output_with_bframe_encoder_keeps_frame_times(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=16, fps=25, bframes=2)
    dst = tmp_path / "out.avi"
    transcode(src, dst, preset="medium")  # x264 "medium" uses B-frames
    times = video_times(dst)
    assert len(times) == 16 and all(b > a for a, b in zip(times, times[1:]))  # display order
    # Every step one frame (FFmpeg's AVI reader guesses the very last frame's time: not checked).
    assert np.diff(times[:-1]) == pytest.approx([0.04] * 14, abs=1e-3)


# ---------------------------------------------------------------- 5. tiny frames
@pytest.mark.parametrize("h,w", [(4, 6), (1, 1), (6, 32)])
def test_temporal_smoothing_of_frames_under_7_px(h, w):
    from vidllie.pipeline.temporal import TemporalSmoother, motion_weight

    x = torch.rand(3, 3, h, w)
    out = TemporalSmoother(0.8)(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert motion_weight(x[:1], x[:1], 0.7).min().item() == pytest.approx(0.7)


def test_tiny_clip_end_to_end(micro_path, tmp_path):
    src = make_clip(tmp_path / "tiny.mp4", width=6, height=4, frames=5)
    r = cli(src, "--model", micro_path, "--preset", "ultrafast")
    assert r.exit_code == 0, r.output
    assert len(video_times(tmp_path / "tiny_enhanced.mp4")) == 5


# ---------------------------------------------------------------- 6. no-overwrite at the rename
def test_file_created_during_the_run_is_not_replaced(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=6)
    dst = tmp_path / "out.mp4"
    with VideoReader(src) as r:
        w = VideoWriter(dst, r.info, **FAST)
        for f in r:
            w.write(f.image, f.pts, f.time_base)
        dst.write_bytes(b"someone else's file")
        with pytest.raises(OutputError, match="appeared during the run") as err:
            w.close()
    assert dst.read_bytes() == b"someone else's file"
    kept = [n for n in only_files(tmp_path) if n not in ("in.mp4", "out.mp4")]
    assert len(kept) == 1 and not kept[0].startswith(".") and kept[0] in str(err.value)
    assert len(video_times(tmp_path / kept[0])) == 6  # the work is not lost


def test_overwrite_true_still_replaces(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=3)
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"old")
    transcode(src, dst, overwrite=True, **FAST)
    assert len(video_times(dst)) == 3 and only_files(tmp_path) == ["in.mp4", "out.mp4"]


# ---------------------------------------------------------------- 7. .webm default output
def test_webm_output_gets_a_webm_encoder_and_audio(micro_path, tmp_path):
    src = make_clip(tmp_path / "clip.webm", width=64, height=48, frames=6, codec="libvpx-vp9",
                    audio_codec="libopus")
    r = cli(src, "--model", micro_path)
    assert r.exit_code == 0, r.output
    with av.open(str(tmp_path / "clip_enhanced.webm")) as c:
        assert c.streams.video[0].codec_context.name in ("vp9", "libvpx-vp9", "av1", "libdav1d")
        assert c.streams.audio[0].codec_context.name in ("opus", "libopus")
    assert audio_packets(tmp_path / "clip_enhanced.webm") == audio_packets(src)


def test_aac_audio_into_webm_is_reencoded_to_opus(tmp_path):
    src = make_clip(tmp_path / "in.mp4", width=64, height=48, frames=6)
    dst = tmp_path / "out.webm"
    _, said = caught(lambda: transcode(src, dst, codec=None))
    assert any("Opus" in m for m in said), said
    with av.open(str(dst)) as c:
        assert c.streams.audio[0].codec_context.name in ("opus", "libopus")
        assert sum(1 for _ in c.decode(audio=0)) > 0
    assert len(video_times(dst)) == 6


def test_codec_the_container_cannot_hold_is_one_clear_error(micro_path, tmp_path):
    src = make_clip(tmp_path / "in.mp4", width=64, height=48, frames=3)
    r = cli(src, "-o", tmp_path / "out.webm", "--model", micro_path, "--codec", "libx264")
    assert r.exit_code == 3 and "Traceback" not in r.output
    assert "libx264" in r.stderr and "libvpx-vp9" in r.stderr
    assert only_files(tmp_path) == ["in.mp4"]


# ---------------------------------------------------------------- 8. --stats-json checked first
@pytest.mark.parametrize("where", ["missing/dir/stats.json", "adir"])
def test_bad_stats_json_path_fails_before_the_run(where, micro_path, tmp_path):
    src = make_clip(tmp_path / "in.mp4", width=64, height=48, frames=3)
    (tmp_path / "adir").mkdir()
    r = cli(src, "--model", micro_path, "--stats-json", tmp_path / where)
    assert r.exit_code == 3 and "--stats-json" in r.stderr and "Traceback" not in r.output
    assert sorted(only_files(tmp_path)) == ["adir", "in.mp4"]  # no video was made


# ---------------------------------------------------------------- 9. all frames, one timestamp
def same_timestamp_mkv(tmp_path: Path) -> Path:
    src = make_clip(tmp_path / "in.mkv", width=64, height=48, frames=10, fps=25, audio_streams=0)
    dst = tmp_path / "dvr.mkv"
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        s = o.add_stream_from_template(i.streams.video[0])
        for p in i.demux(i.streams.video[0]):
            if p.size:
                p.pts = p.dts = 0  # a broken DVR export: every frame at 0
                p.stream = s
                o.mux(p)
    return dst


def test_frames_with_one_timestamp_get_times_from_the_frame_rate(tmp_path):
    src = same_timestamp_mkv(tmp_path)
    assert len(set(video_times(src))) == 1
    dst = tmp_path / "out.mp4"
    stats, said = caught(lambda: transcode(src, dst, **FAST))
    assert stats["frames"] == 10
    assert any("timestamps" in m and "synthesized" in m for m in said), said
    times = video_times(dst)
    assert len(times) == 10
    assert np.diff(times) == pytest.approx([0.04] * 9, abs=2e-3)


# ---------------------------------------------------------------- 10. minor ones
def test_mid_file_corruption_is_not_reported_as_a_cut(tmp_path):
    src = make_clip(tmp_path / "in.mp4", width=64, height=48, frames=40, keyint=10, audio_streams=0)
    data = bytearray(src.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 300] = bytes(300)
    bad = tmp_path / "damaged.mp4"
    bad.write_bytes(bytes(data))
    stats, said = caught(lambda: transcode(bad, tmp_path / "out.mkv", **FAST))
    assert any("could not be decoded" in m or "corrupt" in m for m in said), said
    assert not any("looks cut" in m or "ends early" in m for m in said), said
    assert stats["frames"] > 20


def test_mov_timecode_is_kept(tmp_path):
    base = make_clip(tmp_path / "base.mp4", width=64, height=48, frames=5)
    src = tmp_path / "tc.mov"
    with av.open(str(base)) as i, av.open(str(src), "w") as o:
        s = o.add_stream_from_template(i.streams.video[0])
        s.metadata["timecode"] = "01:02:03:04"
        for p in i.demux(i.streams.video[0]):
            if p.size:
                p.stream = s
                o.mux(p)
    for suffix in (".mov", ".mkv"):
        dst = tmp_path / f"out{suffix}"
        transcode(src, dst, **FAST)
        with av.open(str(dst)) as c:
            tags = [v for m in [*(s.metadata for s in c.streams), c.metadata]
                    for k, v in m.items() if k.lower() == "timecode"]
        assert "01:02:03:04" in tags, (suffix, tags)


def test_timecode_dropped_on_trim_says_so(tmp_path):
    base = make_clip(tmp_path / "base.mp4", width=64, height=48, frames=10)
    src = tmp_path / "tc.mov"
    with av.open(str(base)) as i, av.open(str(src), "w") as o:
        s = o.add_stream_from_template(i.streams.video[0])
        s.metadata["timecode"] = "01:02:03:04"
        for p in i.demux(i.streams.video[0]):
            if p.size:
                p.stream = s
                o.mux(p)
    _, said = caught(lambda: transcode(src, tmp_path / "out.mov", start=0.1, **FAST))
    assert any("timecode" in m for m in said), said
