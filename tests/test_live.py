"""Live mode against a real looping HTTP MPEG-TS stream on 127.0.0.1 (served by the ffmpeg binary
of the pip package imageio-ffmpeg, tests only): a duration ends the run by itself, SIGTERM finishes
a valid file, segments roll, a server restart is survived with a gap. Bounded: a few seconds each.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import av
import numpy as np
import pytest

from media import make_clip, video_times

REPO = Path(__file__).resolve().parents[1]
FPS = 25


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """Is something listening on 127.0.0.1:port? (/proc, so the one-client server is not used up)"""
    want = f":{port:04X}"
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        if any(r.split()[1].endswith(want) and r.split()[3] == "0A" for r in rows):
            return True
    return False


class LoopServer:
    """``ffmpeg -re -stream_loop -1 -i clip.ts -c copy -f mpegts -listen 1 http://127.0.0.1:P/live.ts``"""

    def __init__(self, clip: Path, port: int | None = None) -> None:
        self.clip, self.port = clip, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/live.ts"
        self.proc = None

    def start(self) -> "LoopServer":
        imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")  # the test extra
        self.proc = subprocess.Popen(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-re",
             "-stream_loop", "-1", "-i", str(self.clip), "-c", "copy", "-f", "mpegts",
             "-listen", "1", self.url], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not listening(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the ffmpeg test server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def loop_clip(tmp_path_factory) -> Path:
    # 2 s, keyframe every 0.4 s (a client joining mid-stream starts quickly), with audio.
    return make_clip(tmp_path_factory.mktemp("live") / "loop.ts", width=64, height=48,
                     frames=2 * FPS, fps=FPS, keyint=10)


@pytest.fixture
def server(loop_clip):
    s = LoopServer(loop_clip).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def enhancer(micro_path):
    from vidllie.pipeline.enhancer import Enhancer

    return Enhancer(micro_path, device="cpu", batch_size=2, threads=1)  # tiny frames: 1 thread


def decoded(path: Path) -> tuple[list[float], int]:
    """Frame times and the number of decoded audio samples of a finished file."""
    with av.open(str(path)) as c:
        samples = sum(f.samples for f in c.decode(audio=0)) if c.streams.audio else 0
    return video_times(path), samples


def test_duration_on_a_live_stream_ends_by_itself(server, enhancer, tmp_path):
    from vidllie.jobs.live import enhance_live

    dst = tmp_path / "night.mkv"
    stats = enhance_live(enhancer, server.url, dst, end=3.0, preset="ultrafast")
    assert stats["live"]["stopped_by"] == "end" and stats["live"]["endless"]
    times, samples = decoded(dst)
    assert abs(len(times) - 3 * FPS) <= 1 and len(times) == stats["frames"]
    assert times[0] < 0.05 and times[-1] == pytest.approx(3.0 - 1 / FPS, abs=0.05)
    steps = np.diff(times)  # (the server's loop point may add a few ms: ffmpeg -stream_loop)
    assert (steps > 0.5 / FPS).all() and (steps < 2 / FPS).all()  # none lost, none doubled
    assert samples / 48000 == pytest.approx(3.0, abs=0.1)  # its audio, the same length


def test_start_and_end_count_from_the_first_frame_without_seeking(server, enhancer, tmp_path):
    from vidllie.jobs.live import enhance_live

    dst = tmp_path / "window.mp4"
    stats = enhance_live(enhancer, server.url, dst, start=1.0, end=2.0, preset="ultrafast")
    times, _ = decoded(dst)
    assert abs(len(times) - FPS) <= 1 and times[0] < 0.05 and stats["live"]["stopped_by"] == "end"


def test_segments_are_complete_files_named_by_start_time(server, enhancer, tmp_path):
    from vidllie.jobs.live import enhance_live

    stats = enhance_live(enhancer, server.url, tmp_path / "cam.mkv", end=3.5, segment=1.0,
                         preset="ultrafast")
    files = sorted(tmp_path.glob("cam_*.mkv"))
    assert [str(p) for p in files] == sorted(stats["live"]["segments"]) and len(files) == 4
    assert all(p.name[4:19].replace("-", "").isdigit() for p in files)  # cam_YYYYmmdd-HHMMSS
    counts = [len(decoded(p)[0]) for p in files]
    assert sum(counts) == stats["frames"] and counts[:3] == [FPS] * 3
    assert all(decoded(p)[1] > 0 and video_times(p)[0] < 0.05 for p in files)
    assert not list(tmp_path.glob(".*"))  # no temp file left


def test_server_restart_is_survived_with_a_gap(loop_clip, enhancer, tmp_path):
    from vidllie.jobs.live import enhance_live

    server = LoopServer(loop_clip).start()
    import threading

    def restart() -> None:
        time.sleep(1.5)
        server.stop()
        time.sleep(1.0)
        server.start()

    t = threading.Thread(target=restart, daemon=True)
    t.start()
    dst = tmp_path / "gap.mkv"
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            stats = enhance_live(enhancer, server.url, dst, end=4.5, preset="ultrafast",
                                 reconnect=20, reconnect_wait=0.3)
    finally:
        t.join(timeout=30)
        server.stop()
    assert stats["live"]["reconnects"] >= 1 and stats["live"]["stopped_by"] == "end"
    # a successful reconnect says so, with the gap it left in the recording
    gap_lines = [str(w.message) for w in said if "reconnected" in str(w.message)]
    assert len(gap_lines) == len(stats["live"]["gaps_s"]) >= 1, [str(w.message) for w in said]
    assert f"gap of {stats['live']['gaps_s'][0]:.1f} s" in gap_lines[0]
    times, _ = decoded(dst)
    steps = np.diff(times)
    assert steps.max() > 0.5  # the outage is a gap in time, not squeezed out
    # the window is 4.5 s from the first frame; Matroska may shift the whole file by the AAC
    # priming (~21 ms) depending on where the client joined the loop, so compare the span
    assert (steps > 0).all() and times[-1] - times[0] < 4.5 and len(times) == stats["frames"]


def run_cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen([sys.executable, "-m", "vidllie", "enhance", *args], env=env,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_finishes_a_valid_live_file(sig, server, micro_path, tmp_path):
    dst = tmp_path / "cam.mp4"
    proc = run_cli(server.url, "-o", str(dst), "--model", str(micro_path), "--preset", "ultrafast",
                   "--threads", "1")
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".cam.*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"vidllie: stopped ({signal.Signals(sig).name}); output finished" in err.split("\n"), err
    times, samples = decoded(dst)
    assert len(times) >= FPS and samples > 0 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.mp4"]


def test_segments_of_a_file_hold_every_frame_and_the_audio(micro_path, tmp_path):
    from typer.testing import CliRunner

    from media import audio_packets
    from vidllie.cli import app

    src = make_clip(tmp_path / "rec.mkv", width=64, height=48, frames=3 * FPS + 5, fps=FPS)
    (tmp_path / "out").mkdir()
    r = CliRunner().invoke(app, ["enhance", str(src), "-o", str(tmp_path / "out" / "rec.mkv"),
                                 "--segment", "1", "--model", str(micro_path), "--threads", "1",
                                 "--preset", "ultrafast"])
    assert r.exit_code == 0, r.output
    files = sorted((tmp_path / "out").glob("rec_*.mkv"))
    assert [len(video_times(p)) for p in files] == [FPS, FPS, FPS, 5]
    got = [p for f in files for p in audio_packets(f)[0]]
    assert got == audio_packets(src)[0]  # every audio packet, each in one segment, unchanged
    assert "4 segment(s)" in r.stderr


def test_duration_on_a_file_trims_from_start(micro_path, tmp_path):
    from typer.testing import CliRunner

    from vidllie.cli import app

    src = make_clip(tmp_path / "f.mp4", width=64, height=48, frames=2 * FPS, fps=FPS)
    r = CliRunner().invoke(app, ["enhance", str(src), "--start", "0.4", "--duration", "1",
                                 "--model", str(micro_path), "--threads", "1", "--preset", "ultrafast"])
    assert r.exit_code == 0, r.output
    assert len(video_times(tmp_path / "f_enhanced.mp4")) == FPS
    r = CliRunner().invoke(app, ["enhance", str(src), "--end", "1", "--duration", "1", "-y"])
    assert r.exit_code != 0 and "not both" in r.output


def test_a_deep_output_gets_16_bit_frames_in_live_mode_too(enhancer, tmp_path, monkeypatch):
    # 8-bit input, 10-bit segments: the enhancer hands over 16-bit frames, as it does for files
    # (the run decides before the first segment's writer exists).
    from vidllie.jobs.live import enhance_live

    src = make_clip(tmp_path / "rec.mkv", width=64, height=48, frames=6, fps=FPS)
    asked, real = [], enhancer.process_batch

    def spy(images, wide_output=None):
        asked.append(wide_output)
        return real(images, wide_output=wide_output)

    monkeypatch.setattr(enhancer, "process_batch", spy)
    stats = enhance_live(enhancer, src, tmp_path / "deep.mkv", segment=1.0, pix_fmt="yuv420p10le",
                         preset="ultrafast")
    assert asked == [True] * 3 and stats["frames"] == 6 and stats["video"]["pix_fmt"] == "yuv420p10le"
    with av.open(stats["live"]["segments"][0]) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
