"""Batch jobs (``enhance_many``, ``vidllie enhance --workers N``): faithful outputs from 2 Ray
workers, resume after an interruption from the manifest, a corrupt input among good ones, and the
one-line hint when Ray is missing. Ray tests run on one local instance (``ray.init(num_cpus=2)``)
and skip cleanly when ray is not installed."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import micro_config
from media import audio_packets, make_clip, video_times
from vidllie.cli import app
from vidllie.models import build_model, save_model
from vidllie.jobs.batch import MANIFEST_NAME, FileTask, Manifest, decide, enhance_many

FAST = {"preset": "ultrafast", "temporal": 0.5}
FRAMES = {"a.mp4": 8, "b.mp4": 9, "c.mkv": 10, "d.mp4": 11}


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_model(build_model(micro_config()), tmp_path_factory.mktemp("m") / "micro.safetensors")


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """Four short clips with audio (one VFR, one MKV), small enough for whole-job tests."""
    folder = tmp_path_factory.mktemp("clips")
    for name, frames in FRAMES.items():
        make_clip(folder / name, width=64, height=48, frames=frames, vfr=name == "b.mp4")
    return folder


@pytest.fixture
def clips(sources, tmp_path) -> Path:
    return Path(shutil.copytree(sources, tmp_path / "in"))


def assert_faithful(src: Path, out: Path) -> None:
    times = video_times(out)
    assert len(times) == FRAMES[src.name]
    assert times == pytest.approx(video_times(src), abs=1e-6)
    assert audio_packets(out) == audio_packets(src)


def outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_two_workers_make_four_faithful_outputs(ray_local, model, clips, tmp_path):
    out = tmp_path / "out"
    summary: dict = {}
    rows = enhance_many([clips], out, workers=2, model=model, summary=summary, **FAST)
    assert [r["status"] for r in rows] == ["done"] * 4 and [r["action"] for r in rows] == ["enhanced"] * 4
    assert {(r["model"], r["device"], r["torch_threads"]) for r in rows} == {("micro", "cpu", 1)}  # 2 CPUs / 2 workers
    assert outputs(out) == ["a_enhanced.mp4", "b_enhanced.mp4", "c_enhanced.mkv", "d_enhanced.mp4", MANIFEST_NAME]
    for name in FRAMES:
        assert_faithful(clips / name, out / (Path(name).stem + "_enhanced" + Path(name).suffix))
    assert len(summary["per_worker"]) == 2  # both workers took files
    assert sum(w["frames"] for w in summary["per_worker"].values()) == summary["frames"] == sum(FRAMES.values())
    # The manifest: a running and a done line per file, with what a resume needs.
    lines = [json.loads(s) for s in (out / MANIFEST_NAME).read_text().splitlines()]
    assert sorted(r["status"] for r in lines) == ["done"] * 4 + ["running"] * 4
    done = {Path(r["input"]).name: r for r in lines if r["status"] == "done"}
    assert done["d.mp4"]["frames"] == 11 and done["d.mp4"]["size"] == (clips / "d.mp4").stat().st_size
    assert done["d.mp4"]["settings"]["temporal"] == 0.5 and done["d.mp4"]["settings"]["preset"] == "ultrafast"


def test_interrupted_job_resumes_without_redoing_finished_files(ray_local, model, clips, tmp_path):
    out = tmp_path / "out"

    def stop_after_first(row: dict) -> None:  # Ctrl-C as soon as one file is finished
        if row["status"] == "done":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        enhance_many([clips], out, workers=2, model=model, on_file=stop_after_first, **FAST)
    last = Manifest(out / MANIFEST_NAME).rows
    finished = [src for src, r in last.items() if r["status"] == "done"]
    assert len(finished) == 1 and all(r["status"] == "running" for src, r in last.items() if src not in finished)
    first_out = Path(last[finished[0]]["output"])
    stamp = first_out.stat().st_mtime_ns

    rows = enhance_many([clips], out, workers=2, model=model, **FAST)
    actions = {Path(r["input"]).name: r["action"] for r in rows}
    assert sorted(actions.values()) == ["enhanced"] * 3 + ["skipped"]
    assert actions[Path(finished[0]).name] == "skipped" and first_out.stat().st_mtime_ns == stamp  # not redone
    # Every output complete and nothing half-written left behind by the killed workers.
    assert outputs(out) == ["a_enhanced.mp4", "b_enhanced.mp4", "c_enhanced.mkv", "d_enhanced.mp4", MANIFEST_NAME]
    for name in FRAMES:
        assert_faithful(clips / name, out / (Path(name).stem + "_enhanced" + Path(name).suffix))


def test_corrupt_input_fails_alone_and_the_cli_exits_non_zero(ray_local, model, clips, tmp_path):
    (clips / "b.mp4").unlink()
    (clips / "d.mp4").unlink()
    (clips / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 8)
    out = tmp_path / "out"
    args = ["enhance", str(clips), "-o", str(out), "--workers", "2", "--model", str(model), "--preset", "ultrafast"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output  # an input error
    assert "Traceback" not in result.output
    assert "2 enhanced, 0 skipped, 1 failed" in result.stderr and "broken.mp4  cannot read" in result.stderr
    last = Manifest(out / MANIFEST_NAME).rows
    status = {Path(k).name: (r["status"], r["error"]) for k, r in last.items()}
    assert status["a.mp4"] == ("done", None) and status["c.mkv"] == ("done", None)
    assert status["broken.mp4"][0] == "failed" and "cannot read" in status["broken.mp4"][1]
    assert outputs(out) == ["a_enhanced.mp4", "c_enhanced.mkv", MANIFEST_NAME]
    assert_faithful(clips / "a.mp4", out / "a_enhanced.mp4")

    # The same command again: nothing to redo, the failure is reported again (and still non-zero).
    stats = tmp_path / "stats.json"
    again = CliRunner().invoke(app, [*args, "--stats-json", str(stats)])
    assert again.exit_code == 2 and "0 enhanced, 2 skipped, 1 failed" in again.stderr
    job = json.loads(stats.read_text())
    assert job["skipped"] == 2 and job["failed"] == 1 and job["workers"] == 2


def test_decide_skips_done_redoes_interrupted_and_obeys_the_flags(tmp_path):
    out = tmp_path / "x_enhanced.mp4"
    out.write_bytes(b"done before")
    settings = {"crf": 18}

    def task(status, size=10, settings_=settings, output=str(out)):
        prev = {"status": status, "size": 10, "mtime": 1.0, "settings": settings_, "output": output}
        return FileTask("/in/x.mp4", str(out), size, 1.0, previous=prev)

    assert decide(task("done"), settings) == "skip"
    assert decide(task("done"), settings, force=True) == "run"
    assert decide(task("done", size=11), settings) == "run"  # the input changed
    assert decide(task("done", settings_={"crf": 20}), settings) == "run"  # the settings changed
    assert decide(task("running"), settings) == "run"  # interrupted
    assert decide(task("failed"), settings) == "keep-failed"
    assert decide(task("failed"), settings, retry_failed=True) == "run"
    assert decide(task("failed", size=11), settings) == "run"
    out.unlink()
    assert decide(task("done"), settings) == "run"  # the output was deleted


def test_settings_name_the_video_stream_only_when_one_is_chosen():
    """A job's settings decide whether a finished file is redone: the default stream leaves them
    as jobs wrote them before --video-stream existed; another stream changes them."""
    from vidllie.jobs.manifest import settings_of
    from vidllie.pipeline.options import EnhanceConfig

    config = EnhanceConfig(model="default")
    before = settings_of(config, {"crf": 18})
    assert "video_stream" not in before
    assert settings_of(config, {"crf": 18, "video_stream": None}) == before
    assert settings_of(config, {"crf": 18, "video_stream": 1}) == {**before, "video_stream": 1}


def test_workers_without_ray_says_how_to_install_it(model, clips, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: `import ray` raises ImportError
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["enhance", str(clips), "-o", str(out), "--workers", "2", "--model", str(model)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vidllie: error: Ray is not installed") and 'pip install "vidllie[ray]"' in lines[0]
    assert not out.exists()


def test_in_process_job_uses_the_same_manifest(model, clips, tmp_path):
    """``workers=0`` (no Ray): the same job, manifest and resume, in this process."""
    (clips / "c.mkv").unlink()
    (clips / "d.mp4").unlink()
    out = tmp_path / "out"
    rows = enhance_many([clips / "a.mp4", clips / "b.mp4"], out, workers=0, model=model, threads=1, **FAST)
    assert [r["action"] for r in rows] == ["enhanced"] * 2
    assert_faithful(clips / "b.mp4", out / "b_enhanced.mp4")
    (out / "a_enhanced.mp4").unlink()  # a lost output is redone, the other is kept
    rows = enhance_many([clips / "a.mp4", clips / "b.mp4"], out, workers=0, model=model, threads=1, **FAST)
    assert [r["action"] for r in rows] == ["enhanced", "skipped"]
    assert_faithful(clips / "a.mp4", out / "a_enhanced.mp4")
    # A job-level problem (the model file is missing) stops the job before any file, in one line.
    from vidllie.errors import WeightsError

    with pytest.raises(WeightsError, match="not found"):
        enhance_many([clips / "a.mp4"], tmp_path / "out2", workers=0, model=tmp_path / "missing.safetensors")
