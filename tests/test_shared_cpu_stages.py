"""A shared CPU, per stage: the small stages on one torch thread and the model on its
threads, OpenVINO unpinned on every usable CPU, and `vidllie bench --load` on the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from vidllie.pipeline.environment import available_cpus


def test_small_stages_run_on_one_thread_and_the_model_on_its_threads(micro_path):
    from vidllie import Enhancer
    from vidllie.pipeline.temporal import TemporalSmoother

    enhancer = Enhancer(micro_path, device="cpu", runtime="torch", threads=2, temporal=0.8)
    seen: dict[str, list[int]] = {"model": [], "smoothing": []}
    model_fn = enhancer.runner.model_fn

    def model(*args, **kwargs):
        seen["model"].append(torch.get_num_threads())
        return model_fn(*args, **kwargs)

    class Smoother(TemporalSmoother):
        def forward(self, *args, **kwargs):
            seen["smoothing"].append(torch.get_num_threads())
            return super().forward(*args, **kwargs)

    enhancer.runner.model_fn = model
    enhancer.smoother = Smoother(0.8)
    before = torch.get_num_threads()
    frames = [torch.randint(0, 255, (48, 64, 3), dtype=torch.uint8).numpy() for _ in range(3)]
    assert len(list(enhancer.enhance_frames(frames))) == 3
    assert seen["model"] and set(seen["model"]) == {2}
    assert seen["smoothing"] and set(seen["smoothing"]) == {1}
    assert torch.get_num_threads() == before  # restored after each batch
    stats = enhancer.stats()
    assert (stats["torch_threads"], stats["model_threads"], stats["small_stage_threads"]) == (2, 2, 1)


def test_openvino_runs_unpinned_on_every_usable_cpu_and_torch_on_one(micro_path, tmp_path, monkeypatch):
    # The settings handed to OpenVINO's compiler (tests/test_openvino.py compiles for real with them).
    pytest.importorskip("openvino")
    from vidllie import Enhancer

    monkeypatch.setenv("VIDLLIE_CACHE", str(tmp_path))
    enhancer = Enhancer(micro_path, device="cpu", runtime="openvino", precision="fp32")
    assert enhancer.runtime == "openvino"
    assert enhancer.torch_threads == 1 and enhancer.threads == available_cpus()
    runtime, seen = enhancer.runner.model_fn, {}

    class IR:
        def clone(self):
            return self

        def reshape(self, shape):
            seen["shape"] = shape

    monkeypatch.setattr(runtime, "_load_ir", lambda example: IR())
    monkeypatch.setattr(runtime._core, "compile_model", lambda ir, device, config: seen.update(config) or "compiled")
    monkeypatch.setattr(runtime._ov, "AsyncInferQueue", lambda compiled, jobs: ("queue", jobs))
    # the batch's frames on parallel streams of one thread each (no thread waits for another)
    streams = min(enhancer.threads, enhancer.batch_size)
    want = ("compiled", ("queue", streams) if streams > 1 else None)
    assert runtime._compiled_for(torch.rand(1, 3, 32, 32)) == want
    assert seen["ENABLE_CPU_PINNING"] is False
    assert seen["INFERENCE_NUM_THREADS"] == enhancer.threads
    assert seen["PERFORMANCE_HINT"] == ("THROUGHPUT" if streams > 1 else "LATENCY")


def test_bench_cli_load_option(micro_path, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "vidllie", "bench", "--synthetic", "64x48", "--model", str(micro_path),
         "--frames", "4", "--batch-size", "2", "--device", "cpu", "--preset", "ultrafast", "--load", "1",
         "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r["load"]["processes"] == 1 and r["load"]["ratios"]["end_to_end"] > 0
    assert "loaded" in proc.stdout and "x idle" in proc.stdout


def test_codec_threads_under_a_cgroup_quota_reach_the_decoder_and_encoder(micro_path, tmp_path, monkeypatch):
    import av

    from media import make_clip
    from vidllie import Enhancer
    from vidllie.jobs import video_job
    from vidllie.jobs.video_job import enhance_video_file
    from vidllie.pipeline import environment
    from vidllie.video import reader as reader_module
    from vidllie.video import writer as writer_module

    monkeypatch.setattr(environment, "available_cpus", lambda **_: 1)
    assert environment.codec_threads() == (1 if len(environment.os.sched_getaffinity(0)) > 1 else None)
    monkeypatch.setattr(video_job, "codec_threads", lambda: 1)  # a quota of 1 CPU below the mask
    seen = {}
    reader_init, writer_init = reader_module.VideoReader.__init__, writer_module.VideoWriter.__init__

    def reader(self, *args, **kwargs):
        seen["decoder"] = kwargs.get("threads")
        reader_init(self, *args, **kwargs)

    def writer(self, *args, **kwargs):
        seen["encoder"] = kwargs.get("options")
        writer_init(self, *args, **kwargs)

    monkeypatch.setattr(reader_module.VideoReader, "__init__", reader)
    monkeypatch.setattr(writer_module.VideoWriter, "__init__", writer)
    src = make_clip(tmp_path / "in.mp4", frames=6)
    stats = enhance_video_file(Enhancer(micro_path, device="cpu"), src, tmp_path / "out.mp4", preset="ultrafast")
    assert seen == {"decoder": 1, "encoder": {"threads": "1"}}
    assert stats["frames"] == 6
    with av.open(str(tmp_path / "out.mp4")) as out:
        assert sum(1 for _ in out.decode(video=0)) == 6 and out.streams.audio
