"""``vidllie enhance`` end to end: in-process (typer's CliRunner) and as the installed console
script in a subprocess; the real night clip from ../shared when present."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import micro_config
from media import audio_packets, make_clip, make_two_camera_clip, video_packet_times, video_times
from vidllie.cli import app
from vidllie.models import build_model, save_model

FAST = ["--preset", "ultrafast"]


def micro(path: Path, unshuffle: int = 2) -> Path:
    torch.manual_seed(0)
    return save_model(build_model(micro_config(unshuffle)), path)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return micro(tmp_path_factory.mktemp("m") / "micro.safetensors")


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("src") / "clip.mp4", frames=30)


@pytest.fixture
def clip(source, tmp_path) -> Path:
    return Path(shutil.copy(source, tmp_path / "clip.mp4"))


def run(*args: str):
    return CliRunner().invoke(app, ["enhance", *map(str, args)])


def test_default_output_keeps_frames_and_audio(model, clip):
    result = run(clip, "--model", model, *FAST)
    assert result.exit_code == 0, result.output
    out = clip.with_name("clip_enhanced.mp4")
    assert video_times(out) == pytest.approx(video_times(clip), abs=1e-6) and len(video_times(out)) == 30
    assert audio_packets(out) == audio_packets(clip)
    assert "clip_enhanced.mp4: 30 frames" in result.stderr  # summary line (not --quiet)


def test_default_output_of_a_non_video_suffix_is_mkv(model, tmp_path):
    """An animated GIF (or any input whose name is not a video container) comes out as .mkv
    beside it: the GIF muxer cannot hold the encoded video."""
    from PIL import Image

    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 60, (48, 64, 3), np.uint8)) for _ in range(5)]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    result = run(gif, "--model", model, *FAST)
    assert result.exit_code == 0, result.output
    assert len(video_times(tmp_path / "anim_enhanced.mkv")) == 5


def test_video_stream_picks_the_rear_camera(model, tmp_path):
    """A dual-channel dashcam file: --video-stream 1 enhances the second camera (every frame);
    the default enhances the first, and the other is named, not dropped in silence."""
    src = make_two_camera_clip(tmp_path / "dual.mkv")
    result = run(src, "--model", model, "--video-stream", "1", "-o", tmp_path / "rear.mkv", *FAST)
    assert result.exit_code == 0, result.output
    with av.open(str(tmp_path / "rear.mkv")) as c:
        assert [(s.codec_context.width, s.codec_context.height) for s in c.streams.video] == [(48, 24)]
    assert len(video_times(tmp_path / "rear.mkv")) == 6
    assert "#0 video (h264 64x48)" in result.stderr
    result = run(src, "--model", model, "--video-stream", "3", "-o", tmp_path / "x.mkv", *FAST)
    assert result.exit_code == 2 and "not a video stream" in result.stderr
    assert not (tmp_path / "x.mkv").exists()


def test_refuses_to_overwrite_without_y(model, clip):
    out = clip.with_name("clip_enhanced.mp4")
    out.write_bytes(b"precious")
    result = run(clip, "--model", model, "-q", *FAST)
    assert result.exit_code == 3
    assert result.stderr.splitlines() == [f"vidllie: error: {out} exists; pass -y to overwrite"]
    assert out.read_bytes() == b"precious"
    result = run(clip, "--model", model, "-q", "-y", *FAST)
    assert result.exit_code == 0 and len(video_times(out)) == 30


def test_start_end_trims(model, clip, tmp_path):
    out = tmp_path / "trim.mp4"
    result = run(clip, "-o", out, "--model", model, "--start", "0.2", "--end", "0:00.5", "-q", *FAST)
    assert result.exit_code == 0, result.output
    times = video_times(out)
    assert len(times) == 9  # frames 6..14 of a 30 fps clip: [0.2 s, 0.5 s)
    assert times == pytest.approx([i / 30 for i in range(9)], abs=1e-6)  # rebased to 0
    with av.open(str(clip)) as c:
        a = c.streams.audio[0]
        want = [bytes(p) for p in c.demux(a) if p.size and 0.2 <= float(p.pts * a.time_base) < 0.5]
    assert audio_packets(out) == [want]


def test_stats_json(model, clip, tmp_path):
    stats_path = tmp_path / "stats.json"
    result = run(clip, "--model", model, "-q", "--stats-json", stats_path, "--temporal", "0.5", *FAST)
    assert result.exit_code == 0, result.output
    stats = json.loads(stats_path.read_text())
    assert stats["frames"] == 30 and stats["temporal"] == 0.5 and stats["fps"] > 0
    assert set(stats["stages"]) >= {"decode", "upload", "model", "smoothing", "download", "encode"}
    assert stats["versions"]["av"] == av.__version__ and stats["device"] == "cpu"


def test_folder_input_processes_every_video(model, source, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.mp4", "b.mkv"):
        shutil.copy(source, folder / name)
    (folder / "notes.txt").write_text("not a video")
    result = run(folder, "--model", model, "-q", "--temporal", "0", *FAST)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["a.mp4", "a_enhanced.mp4", "b.mkv", "b_enhanced.mkv", "notes.txt"]
    out = tmp_path / "out"
    result = run(folder, "-o", out, "--model", model, "-q", "--temporal", "0", *FAST)  # skips *_enhanced
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a_enhanced.mp4", "b_enhanced.mkv"]


def _bad_cases(tmp: Path, clip: Path, model: Path):
    text = tmp / "text.mp4"
    text.write_text("hello, I am not a video\n")
    empty_dir = tmp / "empty"
    empty_dir.mkdir()
    return {
        "missing input": ([tmp / "nope.mp4", "--model", model], 2, "input not found"),
        "text named .mp4": ([text, "--model", model], 2, "cannot read"),
        "folder without videos": ([empty_dir, "--model", model], 2, "no video files"),
        "missing model": ([clip, "--model", tmp / "missing.safetensors"], 4, "model checkpoint not found"),
        "bad device": ([clip, "--model", model, "--device", "cuda:7"], 5, "cuda"),
        "bad start": ([clip, "--model", model, "--start", "soon"], 2, "cannot read time"),
        "output folder missing": ([clip, "--model", model, "-o", tmp / "no" / "such" / "x.mp4"], 3, "does not exist"),
        "start after end": ([clip, "--model", model, "--start", "0.5", "--end", "0.2"], 2, "end must be after start"),
    }


@pytest.mark.parametrize("case", ["missing input", "text named .mp4", "folder without videos", "missing model",
                                  "bad device", "bad start", "output folder missing", "start after end"])
def test_bad_input_is_one_line_and_no_file(case, model, clip, tmp_path):
    args, code, text = _bad_cases(tmp_path, clip, model)[case]
    before = set(tmp_path.rglob("*"))
    result = run(*args, *FAST)
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vidllie: error: ") and text in lines[0], lines
    assert "Traceback" not in result.output
    assert set(tmp_path.rglob("*")) == before  # no output, no temp file


def _console_script() -> list[str]:
    exe = shutil.which("vidllie") or str(Path(sys.executable).with_name("vidllie"))
    return [exe] if os.path.exists(exe) else [sys.executable, "-c", "from vidllie.cli import app; app()"]


def test_console_script_in_a_subprocess(model, clip):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [*_console_script(), "enhance", str(clip), "--model", str(model), "-q", *FAST]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert len(video_times(clip.with_name("clip_enhanced.mp4"))) == 30
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 3
    assert again.stderr.strip().splitlines() == [f"vidllie: error: {clip.with_name('clip_enhanced.mp4')} exists; pass -y to overwrite"]


def test_real_night_clip(night_clip, tmp_path):
    """The real dashcam clip: a playable MP4 with all 1118 frames and byte-identical audio."""
    fast_model = micro(tmp_path / "micro8.safetensors", unshuffle=8)  # I/O is under test: ~25 fps on 2 busy cores
    out = tmp_path / "night_enhanced.mp4"
    stats_path = tmp_path / "stats.json"
    result = run(night_clip, "-o", out, "--model", fast_model, "-q", "--stats-json", stats_path, *FAST)
    assert result.exit_code == 0, result.output
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.codec_context.name == "h264" and v.frames == 1118
    assert video_packet_times(out) == pytest.approx(video_packet_times(night_clip), abs=1e-6)
    assert len(video_packet_times(out)) == 1118
    # Playable: every frame decodes. The source starts with 39 frames before its edit list
    # (negative pts), which a plain decoder/player hides (1079 shown); the output is the same.
    assert len(video_times(out)) == len(video_times(night_clip))
    assert audio_packets(out) == audio_packets(night_clip)
    stats = json.loads(stats_path.read_text())
    print(f"night clip: {stats['frames']} frames at {stats['fps']:.1f} fps; stages "
          + ", ".join(f"{k} {v['ms_per_frame']} ms" for k, v in stats["stages"].items()))


def test_info_prints_parameters_macs_dino_and_levels():
    result = CliRunner().invoke(app, ["info", "tiny", "--dino", "none", "--size", "640x360"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "1.46 M trainable" in out and "Restormer 1.37 M" in out  # tiny stays <= 1.5 M
    assert "MACs/frame" in out and "640x360" in out
    assert "facebook/dinov3-vits16-pretrain-lvd1689m" in out and "latent" in out

    result = CliRunner().invoke(app, ["info", "restormer", "--dino", "none", "--json"])
    data = json.loads(result.output)
    assert result.exit_code == 0 and abs(data["params_restormer"] - 26.13e6) / 26.13e6 < 0.005
    assert data["injection_levels"] == ["enc2", "enc3", "latent", "dec3", "dec2"] and data["macs_model"] > 5e11


def test_info_unknown_model_is_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["info", str(tmp_path / "nope.safetensors")])
    assert result.exit_code == 4
    assert result.output.count("vidllie: error:") == 1 and "not found" in result.output


def test_grey_clip_in_grey_clip_out(tmp_path):
    """An IR camera's clip (every pixel R = G = B) comes out exactly grey with the bundled model,
    which on its own tints grey input (the decoded output is checked, after the encoder)."""
    def grey_noise(i: int) -> np.ndarray:
        rng = np.random.default_rng(i)
        level = np.clip(rng.normal(14, 6, (72, 128, 1)), 0, 255).astype(np.uint8)  # dark, noisy
        return np.repeat(level, 3, axis=2)

    src = make_clip(tmp_path / "ir.mp4", width=128, height=72, frames=6, frame_fn=grey_noise)
    with av.open(str(src)) as c:
        assert all(_spread(f) == 0 for f in c.decode(video=0))  # the input really is grey
    result = run(src, "-o", tmp_path / "out.mp4", "--model", "default", *FAST)
    assert result.exit_code == 0, result.output
    with av.open(str(tmp_path / "out.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 6
    assert max(_spread(f) for f in frames) == 0
    assert np.mean([f.mean() for f in frames]) > 14 + 5  # it was enhanced, not passed through


def _spread(frame) -> int:
    img = frame if isinstance(frame, np.ndarray) else frame.to_ndarray(format="rgb24")
    return int((img.max(axis=2).astype(int) - img.min(axis=2)).max())
