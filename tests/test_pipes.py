"""vidllie in a pipeline: standard input/output through real pipes (the ``vidllie`` command in a
subprocess), raw frames in and out, a reader downstream that closes early, and file objects in
the Python API."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from media import audio_packets, make_clip, rgb_frames, video_times
from vidllie.cli import app
from vidllie.errors import InputError, OutputError
from vidllie.jobs.plan import plan_jobs
from vidllie.jobs.video_job import enhance_video
from vidllie.pipeline.enhancer import Enhancer

# One torch thread: the subprocesses share 2 cores with the test runner.
FAST = ["--preset", "ultrafast", "--threads", "1", "-q"]
EBML = b"\x1a\x45\xdf\xa3"  # first bytes of a Matroska file
W, H, FRAMES = 160, 96, 24


def vidllie(*args: str) -> list[str]:
    exe = shutil.which("vidllie") or str(Path(sys.executable).with_name("vidllie"))
    base = [exe] if os.path.exists(exe) else [sys.executable, "-m", "vidllie"]
    return [*base, "enhance", *map(str, args)]


ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}  # PYTHONPATH inherited: the worktree's vidllie


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pipes")
    return {
        "mp4": make_clip(folder / "clip.mp4", frames=FRAMES),
        "mkv": make_clip(folder / "vfr.mkv", frames=FRAMES, vfr=True),  # uneven frame times
    }


def probe(data: bytes) -> tuple[list[float], float, list[list[bytes]]]:
    """Frame times, first audio time and audio packet payloads of a container in memory."""
    with av.open(io.BytesIO(data)) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    with av.open(io.BytesIO(data)) as c:
        first_audio = next(float(p.pts * p.time_base) for p in c.demux(audio=0) if p.size)
    with av.open(io.BytesIO(data)) as c:
        streams = list(c.streams.audio)
        audio = {s.index: [] for s in streams}
        for p in c.demux(*streams):
            if p.size:
                audio[p.stream_index].append(bytes(p))
        return times, first_audio, [audio[s.index] for s in streams]


def assert_same_timing(out: list[float], audio_out: float, src: Path, tol: float) -> None:
    """Every frame's time kept relative to the audio: the containers may shift the whole file
    to avoid the AAC priming's negative start (Matroska/NUT do, for a file as for a pipe)."""
    want = video_times(src)
    with av.open(str(src)) as c:
        audio_src = next(float(p.pts * p.time_base) for p in c.demux(audio=0) if p.size)
    assert len(out) == len(want)
    assert np.diff(out) == pytest.approx(np.diff(want), abs=tol)  # frame durations (VFR)
    assert out[0] - audio_out == pytest.approx(want[0] - audio_src, abs=tol)  # A/V sync


def test_stdin_to_file(clips, micro_path, tmp_path):
    src, out = clips["mkv"], tmp_path / "out.mkv"
    done = subprocess.run(vidllie("-", "-o", out, "--model", micro_path, *FAST),
                          input=src.read_bytes(), capture_output=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr.decode()
    times = video_times(out)
    assert len(times) == FRAMES and times == pytest.approx(video_times(src), abs=1e-6)  # VFR kept
    assert audio_packets(out) == audio_packets(src) and len(audio_packets(src)[0]) > 10


def test_file_to_stdout_is_clean_matroska(clips, micro_path):
    src = clips["mp4"]
    # Not quiet: the progress bar and the summary must go to stderr, never into the video.
    done = subprocess.run([*vidllie(src, "-o", "-", "--model", micro_path, *FAST[:-1])],
                          capture_output=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout[:4] == EBML  # default container for a pipe: Matroska, from byte 0
    assert f"<stdout>: {FRAMES} frames".encode() in done.stderr
    times, first_audio, audio = probe(done.stdout)
    assert len(times) == FRAMES
    assert_same_timing(times, first_audio, src, tol=1.1e-3)  # Matroska counts in ms
    assert audio == audio_packets(src)


def test_stdin_to_stdout_through_a_real_pipe(clips, micro_path, tmp_path):
    """Fed and drained concurrently, in chunks, as a pipeline does (NUT this time)."""
    src = clips["mkv"]
    with open(tmp_path / "stderr", "w+b") as err:
        proc = subprocess.Popen(vidllie("-", "-o", "-", "--format", "nut", "--model", micro_path,
                                        *FAST),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=ENV)
        data = src.read_bytes()

        def feed() -> None:
            for i in range(0, len(data), 4096):
                proc.stdin.write(data[i:i + 4096])
            proc.stdin.close()

        feeder = threading.Thread(target=feed)
        feeder.start()
        out = proc.stdout.read()
        feeder.join()
        assert proc.wait(timeout=300) == 0, (tmp_path / "stderr").read_text()
        assert (tmp_path / "stderr").read_bytes() == b""
    with av.open(io.BytesIO(out)) as c:
        assert c.format.name == "nut"
    times, first_audio, audio = probe(out)
    assert len(times) == FRAMES
    assert_same_timing(times, first_audio, src, tol=1e-6)  # VFR, ms time base both sides
    assert audio == audio_packets(src)


def test_rawvideo_in_and_out_byte_exact(clips, micro_path):
    src = clips["mp4"]
    frames = rgb_frames(src)  # (N, H, W, 3) uint8
    done = subprocess.run(
        vidllie("-", "--input-format", "rawvideo", "--size", f"{W}x{H}", "--rate", "30",
                "--pix-fmt", "rgb24", "-o", "-", "--format", "rawvideo", "--model", micro_path,
                *FAST),
        input=frames.tobytes(), capture_output=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""
    assert len(done.stdout) == W * H * 3 * FRAMES
    got = np.frombuffer(done.stdout, np.uint8).reshape(FRAMES, H, W, 3)
    # The same frames enhanced in-process: raw out is the model's output, in order (thread
    # counts may change float rounding by one step at a few pixels).
    want = np.stack(list(Enhancer(str(micro_path), device="cpu", threads=1).enhance_frames(frames)))
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01


def test_rawvideo_bgr_in_to_a_file(micro_path, clips, tmp_path):
    # Red > green > blue everywhere: a wrong channel order would show as blue > red.
    frames = (rgb_frames(clips["mp4"])[:8] * np.array([1.0, 0.6, 0.3])).astype(np.uint8)
    out = tmp_path / "raw.mkv"
    done = subprocess.run(
        vidllie("-", "--input-format", "rawvideo", "--size", f"{W}x{H}", "--rate", "12.5",
                "--pix-fmt", "bgr24", "-o", out, "--model", micro_path, *FAST),
        input=frames[..., ::-1].tobytes(), capture_output=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr.decode()
    assert video_times(out) == pytest.approx([i / 12.5 for i in range(8)], abs=6e-4)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"  # encoder default, not bgr24
    r, g, b = rgb_frames(out).reshape(-1, 3).mean(axis=0)
    assert r > g + 10 > b + 20, (r, g, b)


@pytest.mark.parametrize("fmt", ["rawvideo", "matroska"])
def test_reader_closing_early_ends_quietly(fmt, clips, micro_path):
    """``vidllie ... -o - | head -c 100000``: exit code 141, nothing on stderr, no traceback."""
    head = shutil.which("head")
    if head is None:
        pytest.skip("no head command")
    # Large output, so head stops mid-way; raw frames have no audio (said in a warning).
    extra = ["--codec", "ffv1"] if fmt == "matroska" else ["--no-audio"]
    proc = subprocess.Popen(vidllie(clips["mp4"], "-o", "-", "--format", fmt, *extra,
                                    "--model", micro_path, *FAST),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    reader = subprocess.Popen([head, "-c", "100000"], stdin=proc.stdout, stdout=subprocess.PIPE)
    proc.stdout.close()  # only head holds the read end now
    taken = reader.communicate(timeout=300)[0]
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141, err.decode()
    assert len(taken) == 100000
    assert err == b""
    if fmt == "matroska":
        assert taken[:4] == EBML


def test_mp4_to_a_pipe_is_refused_in_one_line(clips, micro_path):
    result = CliRunner().invoke(app, ["enhance", str(clips["mp4"]), "-o", "-", "--format", "mp4",
                                      "--model", str(micro_path), "-q"])
    assert result.exit_code == 3
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "cannot write mp4 to a pipe" in lines[0]
    assert "matroska, mpegts, nut, rawvideo" in lines[0]
    assert result.stdout == ""


def test_mp4_to_stdout_redirected_to_a_file_works(clips, micro_path, tmp_path):
    """``> out.mp4`` is a seekable regular file: MP4 is fine there."""
    out = tmp_path / "redirected.mp4"
    with open(out, "wb") as fh:
        done = subprocess.run(vidllie(clips["mp4"], "-o", "-", "--format", "mp4",
                                      "--model", micro_path, *FAST),
                              stdout=fh, stderr=subprocess.PIPE, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr.decode()
    assert len(video_times(out)) == FRAMES and audio_packets(out) == audio_packets(clips["mp4"])


def test_api_takes_file_objects_and_leaves_them_open(clips, micro_path):
    src = io.BytesIO(clips["mp4"].read_bytes())  # seekable, at its start: MP4 input is fine
    dst = io.BytesIO()
    stats = enhance_video(src, dst, model=str(micro_path), device="cpu", preset="ultrafast",
                          threads=1)
    assert not src.closed and not dst.closed  # vidllie never closes a caller's file object
    assert stats["frames"] == FRAMES and stats["output"] == "<BytesIO>"
    data = dst.getvalue()
    assert data[:4] == EBML
    times, first_audio, audio = probe(data)
    assert_same_timing(times, first_audio, clips["mp4"], tol=1.1e-3)
    assert len(times) == FRAMES and audio == audio_packets(clips["mp4"])


def test_api_rawvideo_options_and_bad_ones(micro_path):
    from vidllie.video.pipes import raw_video_options

    frames = np.random.default_rng(0).integers(0, 256, (5, 32, 48, 3), dtype=np.uint8)
    dst = io.BytesIO()
    stats = enhance_video(io.BytesIO(frames.tobytes()), dst, model=str(micro_path), device="cpu",
                          threads=1, format="rawvideo", input_format="rawvideo",
                          input_options=raw_video_options(48, 32, 25, "rgb24"))
    assert stats["frames"] == 5 and len(dst.getvalue()) == 5 * 32 * 48 * 3
    with pytest.raises(InputError, match="unknown pixel format"):
        raw_video_options(48, 32, 25, "rgb99")
    with pytest.raises(InputError, match="rate"):
        raw_video_options(48, 32, "fast")


def test_pipe_planning_errors(tmp_path):
    with pytest.raises(InputError, match="must be the only input"):
        plan_jobs(["-", "a.mp4"], None)
    with pytest.raises(OutputError, match="give the output with -o"):
        plan_jobs(["-"], None)
    with pytest.raises(OutputError, match="takes one input"):
        plan_jobs(["a.mp4", "b.mp4"], "-")
    assert [(j.src, str(j.dst)) for j in plan_jobs(["-"], "-")] == [("-", "-")]
    assert [(j.src, j.dst) for j in plan_jobs(["-"], tmp_path)] == [("-", tmp_path / "stdin_enhanced.mkv")]


@pytest.mark.parametrize("args, text", [
    (["--size", "64x48"], "add --input-format rawvideo"),
    (["--input-format", "rawvideo"], "needs the frame size"),
    (["--input-format", "rawvideo", "--size", "big"], "--size must look like"),
])
def test_raw_option_errors_are_one_line(args, text, micro_path, tmp_path):
    result = CliRunner().invoke(app, ["enhance", "-", "-o", str(tmp_path / "o.mkv"), *args,
                                      "--model", str(micro_path), "-q"], input=b"")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and text in lines[0], lines


class FullDisk:
    """A sink that fails (ENOSPC) once ``limit`` bytes are written, and records later writes."""

    def __init__(self, limit: int) -> None:
        self.data, self.limit, self.after_failure, self.failed = bytearray(), limit, 0, False

    def write(self, chunk: bytes) -> int:
        if self.failed:
            self.after_failure += 1
        if len(self.data) + len(chunk) > self.limit:
            self.failed = True
            raise OSError(28, "No space left on device")
        self.data += chunk
        return len(chunk)


def test_a_failure_leaves_the_stream_cut_without_trailer(clips, micro_path):
    sink = FullDisk(40_000)  # ffv1: ~0.5 MB in all, so the sink fails part-way
    with pytest.raises(OutputError, match="No space left on device"):
        enhance_video(str(clips["mp4"]), sink, model=str(micro_path), device="cpu", threads=1,
                      codec="ffv1")
    assert sink.failed and sink.after_failure == 0  # nothing written after the failure
    data = bytes(sink.data)
    assert 0 < len(data) <= 40_000 and data[:4] == EBML
    with av.open(io.BytesIO(data)) as c:  # what was written plays, up to the cut
        assert 0 < sum(1 for _ in c.decode(video=0)) < FRAMES


def test_empty_stdin_is_one_line(micro_path, tmp_path):
    done = subprocess.run(vidllie("-", "-o", tmp_path / "o.mkv", "--model", micro_path, *FAST),
                          input=b"", capture_output=True, timeout=300, env=ENV)
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == ["vidllie: error: input is empty (0 bytes): <stdin>"]
    assert list(tmp_path.iterdir()) == []


def test_video_is_never_written_to_a_terminal(clips, micro_path):
    pty = pytest.importorskip("pty")
    main, tty = pty.openpty()
    try:
        done = subprocess.run(vidllie(clips["mp4"], "-o", "-", "--model", micro_path, *FAST),
                              stdout=tty, stderr=subprocess.PIPE, timeout=300, env=ENV)
    finally:
        os.close(tty)
        os.close(main)
    assert done.returncode == 3
    assert done.stderr.decode().splitlines() == [
        "vidllie: error: standard output is a terminal: redirect it (> out.mkv) or pipe it (| ffplay -)"]


# ---------------------------------------------------------------- standard input is a live input
def test_duration_on_stdin_counts_from_the_first_frame_without_seeking(clips, micro_path, tmp_path):
    src, out = clips["mkv"], tmp_path / "out.mkv"
    want = video_times(src)
    done = subprocess.run(vidllie("-", "-o", out, "--model", micro_path, "--duration", "0.35", *FAST),
                          input=src.read_bytes(), capture_output=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr.decode()
    times = video_times(out)
    assert 0 < len(times) < FRAMES  # trimmed, not refused with "cannot seek"
    assert times[-1] - times[0] < 0.35 and len(times) == sum(t - want[0] < 0.35 for t in want)


def test_sigterm_on_stdin_finishes_the_output(micro_path, tmp_path):
    """A recorder feeding standard input is stopped by SIGTERM (systemd, docker stop): the output
    holds every frame processed so far and its audio, as for a camera URL."""
    src = make_clip(tmp_path / "long.mkv", width=64, height=48, frames=250, fps=25)
    data, out = src.read_bytes(), tmp_path / "out.mkv"
    proc = subprocess.Popen(vidllie("-", "-o", out, "--model", micro_path, *FAST), env=ENV,
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    # Feed the first half now and keep the pipe open, as a live producer does; feed the rest
    # slowly until the temp output exists and has grown, then signal.
    proc.stdin.write(data[: len(data) // 2])
    proc.stdin.flush()
    deadline, rest = time.monotonic() + 120, data[len(data) // 2:]
    while not [p for p in tmp_path.glob(".out.*") if p.stat().st_size > 20000] and time.monotonic() < deadline:
        if rest:
            proc.stdin.write(rest[:2000])
            proc.stdin.flush()
            rest = rest[2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    while rest and proc.poll() is None:  # the stop is seen at the next frame read
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(rest[:2000])
            proc.stdin.flush()
        rest = rest[2000:]
        time.sleep(0.02)
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert proc.returncode == 0, err
    assert "vidllie: stopped (SIGTERM); output finished" in err and "Traceback" not in err
    times = video_times(out)
    assert 0 < len(times) <= 250 and audio_packets(out)[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mkv", "out.mkv"]
