"""Hostile use: special files as outputs, B-frame AVI sync, temp files left by kill -9, encoder
settings, cut streams, and the smaller one-line and progress items. One test per defect."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from media import make_clip, video_times
from vidllie.cli import app
from vidllie.errors import OutputError
from vidllie.video import VideoReader, VideoWriter

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def cli(*args) -> object:
    return CliRunner().invoke(app, ["enhance", *map(str, args)])


def vidllie(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vidllie", *map(str, args)], env=ENV, **kw)


# ---------------------------------------------------------------- 1. special files as outputs
def test_fifo_output_is_written_as_a_stream_never_replaced(micro_path, tmp_path):
    src = make_clip(tmp_path / "in.mkv", width=64, height=48, frames=6)
    fifo = tmp_path / "sink"
    os.mkfifo(fifo)
    got = bytearray()

    def drain() -> None:
        with open(fifo, "rb") as f:
            got.extend(f.read())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    result = cli(src, "-o", fifo, "--model", micro_path, "--preset", "ultrafast", "-y", "-q")
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still the FIFO, not a regular file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv", "sink"]  # no temp file left
    out = tmp_path / "got.mkv"
    out.write_bytes(bytes(got))
    with VideoReader(out) as r:  # a whole Matroska stream went through the FIFO
        assert r.info.container.startswith("matroska") and len(list(r)) == 6


def test_fifo_output_needs_no_y_and_refuses_mp4(micro_path, tmp_path):
    src = make_clip(tmp_path / "in.mkv", width=64, height=48, frames=4)
    fifo = tmp_path / "sink.mp4"
    os.mkfifo(fifo)
    result = cli(src, "-o", fifo, "--model", micro_path, "-q")
    assert result.exit_code == 3
    assert "cannot write mp4" in result.output and "pass -y" not in result.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_character_device_output_is_written_into_not_renamed_over(micro_path, tmp_path):
    src = make_clip(tmp_path / "in.mkv", width=64, height=48, frames=4)
    sink = tmp_path / "null"  # a node of its own: a regression must never replace /dev/null
    try:
        os.mknod(sink, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    result = cli(src, "-o", sink, "--format", "matroska", "--model", micro_path, "-y", "-q")
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(os.stat(sink).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv", "null"]


def test_writer_never_renames_over_a_special_file(tmp_path):
    src = make_clip(tmp_path / "in.mkv", width=64, height=48, frames=3)
    fifo = tmp_path / "pipe.mkv"
    os.mkfifo(fifo)
    threading.Thread(target=lambda: open(fifo, "rb").read(), daemon=True).start()
    with VideoReader(src) as r, VideoWriter(fifo, r.info, overwrite=True, preset="ultrafast") as w:
        for f in r:
            w.write(f.image, f.pts)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    sock = tmp_path / "s"
    import socket

    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    with VideoReader(src) as r, pytest.raises(OutputError, match="socket"):
        VideoWriter(sock, r.info, overwrite=True)
    server.close()
    assert stat.S_ISSOCK(os.stat(sock).st_mode)


# ---------------------------------------------------------------- 2. B-frame AVI stays in sync
def ffmpeg_frame_times(path: Path) -> list[float]:
    """Frame times as FFmpeg's own command line reads them (showinfo), the reference."""
    import re

    import imageio_ffmpeg

    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map",
                          "0:v", "-vf", "showinfo", "-f", "null", "-"], capture_output=True,
                         text=True).stderr
    return [float(t) for t in re.findall(r"pts_time:\s*([-\d.]+)", out)]


def first_audio_time(path: Path) -> float:
    with av.open(str(path)) as c:
        p = next(p for p in c.demux(c.streams.audio[0]) if p.pts is not None)
        return float(p.pts * p.time_base)


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_bframe_avi_keeps_ffmpegs_times_in_sync_with_audio(codec, micro_path, tmp_path):
    src = tmp_path / "b.avi"
    make_clip(src, width=96, height=64, frames=40, fps=25, codec=codec, bframes=2, audio_codec="mp3")
    with VideoReader(src) as r:
        times = [f.time for f in r]
    reference = ffmpeg_frame_times(src)
    assert len(times) == len(reference) == 40
    assert np.allclose(times, reference, atol=1e-6), (times[:6], reference[:6])
    assert np.allclose(np.diff(times)[1:], 0.04, atol=1e-6)  # evenly spaced: no hole, no pile-up
    for out in (tmp_path / "out.mkv", tmp_path / "out.avi"):
        result = cli(src, "-o", out, "--model", micro_path, "--preset", "ultrafast", "-q")
        assert result.exit_code == 0, result.output
        assert "repeated or backward" not in result.output
        v = ffmpeg_frame_times(out)
        # AVI keeps no start time: FFmpeg reads the first frame of an AVI whose video starts
        # after 0 at slot 0, so there the times are compared from the second frame on.
        k = 1 if out.suffix == ".avi" else 0
        assert len(v) == 40 and np.allclose(np.diff(v)[k:], np.diff(reference)[k:], atol=1.5e-3), v[:6]
        # the A/V offset is the input's (within the output's 1 ms tick)
        offset = (v[k] - first_audio_time(out)) - (reference[k] - first_audio_time(src))
        assert abs(offset) <= 0.0015, (out.suffix, offset)


# ---------------------------------------------------------------- 3. kill -9 temp files
def test_stale_temp_file_of_a_killed_run_is_removed_by_the_next(micro_path, tmp_path):
    src = make_clip(tmp_path / "long.mkv", width=256, height=160, frames=400, fps=25)
    dst = tmp_path / "f.mp4"
    proc = vidllie("enhance", src, "-o", dst, "--model", micro_path, "--preset", "ultrafast",
                   "--batch-size", "1", "--threads", "1", stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not any(n.startswith(".f.") for n in os.listdir(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.kill()
    proc.wait(timeout=30)
    stale = [n for n in os.listdir(tmp_path) if n.startswith(".f.")]
    assert stale, "the killed run left no temp file to test with"
    # a live run's temp file for the same output is never touched
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    live_tmp = tmp_path / f".f.{live.pid}-0123abcd.part.mp4"
    live_tmp.write_bytes(b"busy")
    short = make_clip(tmp_path / "short.mkv", width=64, height=48, frames=3)
    result = cli(short, "-o", dst, "--model", micro_path, "--preset", "ultrafast", "-q")
    live.kill()
    assert result.exit_code == 0, result.output
    left = sorted(n for n in os.listdir(tmp_path) if n.startswith(".f."))
    assert left == [live_tmp.name]


# ---------------------------------------------------------------- 4. encoder settings
@pytest.mark.parametrize("args,words", [
    (["--preset", "warp"], ["--preset", "'warp'", "libx264", "ultrafast", "veryslow"]),
    (["--crf", "99"], ["--crf", "99", "libx264", "0", "51"]),
    (["--pix-fmt", "rgb9000"], ["--pix-fmt", "'rgb9000'", "libx264", "yuv420p"]),
    (["--pix-fmt", "pal8"], ["--pix-fmt", "'pal8'", "libx264", "yuv420p"]),
])
def test_bad_encoder_settings_are_one_line_naming_the_option(args, words, micro_path, tmp_path):
    src = make_clip(tmp_path / "in.mkv", width=64, height=48, frames=3)
    proc = vidllie("enhance", src, "-o", tmp_path / "out.mp4", "--model", micro_path, "-q", *args,
                   stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err  # an output setting: exit 3, as for an unknown --codec
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("vidllie: error: ") and "None" not in lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert not (tmp_path / "out.mp4").exists()


# ---------------------------------------------------------------- 5. a cut stream says so
def test_sigterm_on_a_stream_says_how_much_went_out(micro_path, tmp_path):
    src = make_clip(tmp_path / "long.mkv", width=256, height=160, frames=400, fps=25)
    out = tmp_path / "cut.mkv"
    with open(out, "wb") as sink:
        proc = vidllie("enhance", src, "-o", "-", "--model", micro_path, "--preset", "ultrafast",
                       "--batch-size", "1", "--threads", "1", stdout=sink, stderr=subprocess.PIPE,
                       text=True)
        deadline = time.monotonic() + 120
        while out.stat().st_size < 2000 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "nothing was written" not in err
    size = out.stat().st_size
    line = next(line for line in err.splitlines() if "interrupted (SIGTERM)" in line)
    assert "stream" in line and "cut" in line and f"{size:,} bytes" in line, (line, size)


# ---------------------------------------------------------------- smaller items
@pytest.mark.parametrize("args,option", [
    (["--batch-size", "0"], "--batch-size"),
    (["--threads", "0"], "--threads"),
    (["--temporal", "2"], "--temporal"),
])
def test_range_errors_are_one_line(args, option, tmp_path):
    src = make_clip(tmp_path / "in.mkv", width=64, height=48, frames=2)
    proc = vidllie("enhance", src, *args, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vidllie: error: ") and option in lines[0], err


def test_bad_precision_is_an_input_error(micro_path, tmp_path):
    src = make_clip(tmp_path / "in.mkv", width=64, height=48, frames=2)
    result = cli(src, "--model", micro_path, "--precision", "fp8")
    assert result.exit_code == 2, result.output
    assert "--precision" in result.output or "precision" in result.output


def test_output_equal_to_input_suggests_o_not_y(micro_path, tmp_path):
    src = make_clip(tmp_path / "in.mkv", width=64, height=48, frames=2)
    for extra in ([], ["-y"]):
        result = cli(src, "-o", src, "--model", micro_path, *extra)
        assert result.exit_code == 3, result.output
        assert "-o" in result.output and "-y" not in result.output, result.output


def test_progress_total_of_a_mkv_is_its_frame_count(micro_path, tmp_path):
    src = make_clip(tmp_path / "in.mkv", width=64, height=48, frames=40, fps=25)
    with VideoReader(src) as r:
        assert r.info.estimated_frames == 40


def test_warnings_go_on_their_own_line_above_the_bar(micro_path, tmp_path):
    from vidllie.cli_common import Progress, user_errors
    import io
    import warnings

    err = io.StringIO()
    bar = Progress("x", quiet=False)
    old = sys.stderr
    sys.stderr = err
    try:
        with user_errors():
            bar(3, 10)
            warnings.warn("something odd", UserWarning)
            bar(5, 10)
        bar.close()
    finally:
        sys.stderr = old
    text = err.getvalue().replace("\r", "\n")
    assert "\nvidllie: warning: something odd\n" in "\n" + text


def test_missing_input_beside_an_existing_output_is_one_line(tmp_path):
    out = tmp_path / "out.mkv"
    out.write_bytes(b"x")
    result = cli(tmp_path / "missing.mkv", "-o", out)
    assert result.exit_code in (2, 3) and isinstance(result.exception, SystemExit), result.exception
    assert result.output.count("\n") == 1, result.output
