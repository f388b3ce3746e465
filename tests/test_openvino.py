"""The OpenVINO CPU runtime: the same output as the torch runtime on any frame size and batch, the
converted model cached on disk, the choice of runtime, and whole videos (frames, audio) through it.
The rest of the suite runs the torch runtime (tests/conftest.py sets VIDLLIE_RUNTIME=torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import micro_config
from media import audio_packets, make_clip, moving_square, rgb_frames, video_times
from vidllie.cli import app
from vidllie.errors import VidllieError
from vidllie.models import build_model, load_model, save_model

pytest.importorskip("openvino")

from vidllie.pipeline.openvino_runtime import OpenVinoModel, model_key, resolve_runtime  # noqa: E402

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def fast_model():
    """The bundled `fast` network: affine head and detail branch, real weights."""
    return load_model(Path(__file__).resolve().parents[1] / "vidllie" / "weights" / "fast.safetensors").eval()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("openvino-cache")


def test_same_output_as_torch_on_any_size_batch_and_layout(fast_model, cache_dir):
    runtime = OpenVinoModel(fast_model, threads=2, cache_dir=cache_dir)
    g = torch.Generator().manual_seed(0)
    # odd sizes (padded inside, cropped back), batches (one request per frame), both layouts
    for shape, channels_last in (((1, 3, 96, 160), True), ((3, 3, 97, 131), False), ((2, 3, 64, 250), True)):
        x = torch.rand(shape, generator=g) * 0.3
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            want = fast_model(x)
            got = runtime(x)
        assert got.shape == want.shape and got.dtype == torch.float32
        assert got.is_contiguous(memory_format=torch.channels_last) == channels_last
        assert (got - want).abs().max() < 1e-4
    assert runtime.converted  # converted here, in this process


def test_a_batch_runs_on_parallel_streams_with_the_same_output_as_one_frame_at_a_time(fast_model, cache_dir):
    # streams of one thread each: no thread waits for another inside a frame (a busy machine)
    x = torch.rand(3, 3, 96, 160, generator=torch.Generator().manual_seed(1)) * 0.3
    with torch.inference_mode():
        outputs = [OpenVinoModel(fast_model, threads=2, streams=n, cache_dir=cache_dir, precision="f32")(x) for n in (1, 2)]
    assert torch.equal(*outputs)
    runtime = OpenVinoModel(fast_model, threads=2, streams=8, cache_dir=cache_dir)
    assert runtime.streams == 2  # at most one stream per thread


def test_converted_model_is_kept_on_disk_under_its_weights(fast_model, cache_dir):
    x = torch.rand(1, 3, 64, 64)
    first = OpenVinoModel(fast_model, threads=1, cache_dir=cache_dir)
    want = first(x)
    again = OpenVinoModel(fast_model, threads=1, cache_dir=cache_dir)
    assert torch.equal(again(x), want) and not again.converted  # read back, not converted again
    assert (cache_dir / model_key(fast_model) / "model.xml").is_file()
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".tmp-")]  # nothing half-written
    torch.manual_seed(1)
    other = build_model(micro_config())
    assert model_key(other) != model_key(fast_model)
    runtime = OpenVinoModel(other.eval(), threads=1, cache_dir=cache_dir)
    with torch.inference_mode():
        assert (runtime(x) - other(x)).abs().max() < 1e-4
    assert runtime.converted


def test_choice_of_runtime(fast_model, monkeypatch):
    monkeypatch.delenv("VIDLLIE_RUNTIME", raising=False)
    dino = torch.nn.Identity()
    assert resolve_runtime("auto", CPU, fast_model, None, False) == "openvino"
    assert resolve_runtime("auto", CPU, fast_model, dino, False) == "torch"  # DINO guidance runs in torch
    assert resolve_runtime("auto", CPU, fast_model, None, True) == "torch"  # --compile is torch's
    assert resolve_runtime("auto", torch.device("cuda"), fast_model, None, False) == "torch"
    assert resolve_runtime("torch", CPU, fast_model, None, False) == "torch"
    for device, d, compile, words in ((CPU, dino, False, "DINO"), (CPU, None, True, "--compile"),
                                      (torch.device("cuda"), None, False, "CPU")):
        with pytest.raises(VidllieError, match=words):
            resolve_runtime("openvino", device, fast_model, d, compile)
    with pytest.raises(VidllieError, match="Restormer"):
        resolve_runtime("openvino", CPU, torch.nn.Conv2d(3, 3, 1), None, False)
    monkeypatch.setenv("VIDLLIE_RUNTIME", "torch")  # replaces auto's choice only
    assert resolve_runtime("auto", CPU, fast_model, None, False) == "torch"
    assert resolve_runtime("openvino", CPU, fast_model, None, False) == "openvino"
    monkeypatch.setenv("VIDLLIE_RUNTIME", "onnx")
    with pytest.raises(VidllieError, match="unknown runtime"):
        resolve_runtime("auto", CPU, fast_model, None, False)
    with pytest.raises(ValueError, match="runtime"):
        from vidllie.pipeline.options import EnhanceConfig

        EnhanceConfig(runtime="tensorrt")


def test_video_through_openvino_matches_torch_with_audio(tmp_path):
    import json

    import openvino

    torch.manual_seed(0)
    model = save_model(build_model(micro_config()), tmp_path / "micro.safetensors")
    clip = make_clip(tmp_path / "clip.mp4", width=150, height=86, frames=24, frame_fn=moving_square(150, 86))
    outputs, stats = {}, {}
    for name, runtime, precision in (("torch", "torch", "fp32"), ("openvino", "openvino", "fp32"),
                                     ("openvino-auto", "openvino", "auto")):
        out = tmp_path / f"{name}.mkv"
        result = CliRunner().invoke(app, ["enhance", str(clip), "-o", str(out), "--model", str(model), "--runtime",
                                          runtime, "--precision", precision, "--crf", "0", "--preset", "ultrafast",
                                          "--stats-json", str(tmp_path / f"{name}.json"), "-q"])
        assert result.exit_code == 0, result.output
        stats[name] = json.loads((tmp_path / f"{name}.json").read_text())
        assert stats[name]["runtime"] == runtime
        assert len(video_times(out)) == 24 and audio_packets(out) == audio_packets(clip)
        outputs[name] = rgb_frames(out).astype(np.int16)
    assert stats["openvino"]["precision"] == "fp32"
    assert np.abs(outputs["openvino"] - outputs["torch"]).max() <= 1  # lossless encode: float rounding only
    # precision auto: OpenVINO's choice for this CPU (bf16 where it computes bf16 natively)
    native = openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    assert stats["openvino-auto"]["precision"] == {"bf16": "bf16", "f32": "fp32", "f16": "fp16"}[native]
    assert np.abs(outputs["openvino-auto"] - outputs["torch"]).mean() < 1.0


def test_bad_runtime_is_one_clear_error(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=4)
    result = CliRunner().invoke(app, ["enhance", str(clip), "-o", str(tmp_path / "o.mp4"), "--runtime", "onnx", "-q"])
    assert result.exit_code != 0 and "runtime" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.mp4").exists()
    result = CliRunner().invoke(app, ["enhance", str(clip), "-o", str(tmp_path / "o.mp4"), "--runtime", "openvino",
                                      "--device", "cpu", "--compile", "-q"])
    assert result.exit_code != 0 and "--compile" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.mp4").exists()


def test_bench_compares_runtimes_in_one_run(tmp_path):
    import json
    import subprocess
    import sys

    torch.manual_seed(0)
    model = save_model(build_model(micro_config()), tmp_path / "micro.safetensors")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "vidllie", "bench", "--synthetic", "128x96", "--model", str(model), "--runtime",
         "openvino", "--compare", str(model), "--compare-runtime", "torch", "--frames", "6", "--batch-size", "2",
         "--device", "cpu", "--preset", "ultrafast", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r["model"]["settings"]["runtime"] == "openvino" and r["reference"]["settings"]["runtime"] == "torch"
    assert r["reference"]["settings"]["precision"] == "fp32"
    assert r["model"]["versions"]["openvino"]
    assert r["model"]["frames"] == r["reference"]["frames"] == 6
    assert "(openvino, " in proc.stdout and "(torch, fp32)" in proc.stdout and "x end to end" in proc.stdout


def test_dropping_models_in_any_order_leaves_signals_working(micro_path, tmp_path):
    """The CPU plugin gives the creating thread an alternate signal stack per Core and restores
    the previous one when that Core goes: two Cores dropped in creation order left the thread's
    signal stack in freed memory, and the next signal (here SIGUSR1; Ctrl-C, SIGTERM, a child
    ending) was a segmentation fault. One Core for the process: the signal is handled."""
    import subprocess
    import sys

    code = f"""
import gc, os, signal, torch
from vidllie.models import load_model
from vidllie.pipeline.openvino_runtime import OpenVinoModel
x = torch.rand(1, 3, 32, 48)
a = OpenVinoModel(load_model({str(micro_path)!r}), cache_dir={str(tmp_path / "a")!r})
a(x)
b = OpenVinoModel(load_model({str(micro_path)!r}), cache_dir={str(tmp_path / "b")!r})
b(x)
assert a._core is b._core
del a; gc.collect()
del b; gc.collect()
got = []
signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
os.kill(os.getpid(), signal.SIGUSR1)
print("handled", len(got))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert "handled 1" in r.stdout
