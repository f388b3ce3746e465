"""Change-driven inference (``reuse``): a moving object on a static noisy background, through
``Enhancer.enhance_frames`` with a random-init micro model, reuse on vs off."""

from __future__ import annotations

import json

import kornia
import numpy as np
import pytest
import torch

from conftest import micro_config
from media import still_noise
from vidllie.models import build_model
from vidllie.pipeline.enhancer import Enhancer
from vidllie.pipeline.reuse import RegionReuse, halo_ramp

H, W, SQ = 192, 288, 20


def micro_model():
    torch.manual_seed(0)
    return build_model(micro_config())


def enhancer(reuse: bool, temporal: float = 0.0, batch_size: int = 4, **kw) -> Enhancer:
    e = Enhancer(micro_model(), device="cpu", temporal=temporal, batch_size=batch_size, reuse=reuse, **kw)
    # Small regions for small test frames (the defaults are sized for 360p and up).
    e.reuse = RegionReuse(enabled=reuse, region=32, halo=32, tile=128, full_share=0.6, align=e.align, max_age=e.options.cache_max_age)
    return e


def square_on_noise(n: int = 14, step: int = 6, gain: float = 0.35):
    """Dark static gradient + fresh noise per frame, with a bright square moving right."""
    bg = still_noise(W, H, sigma=3.0)
    frames, boxes = [], []
    for t in range(n):
        img = bg(t).astype(np.float32) * gain
        y0, x0 = 86, 60 + step * t
        img[y0 : y0 + SQ, x0 : x0 + SQ] = 200.0
        frames.append(img.round().astype(np.uint8))
        boxes.append((y0, x0))
    return frames, boxes


@pytest.fixture(scope="module")
def square_runs():
    frames, boxes = square_on_noise()
    off, on = enhancer(False), enhancer(True)
    out_off = np.stack(list(off.enhance_frames(frames)))
    out_on = np.stack(list(on.enhance_frames(frames)))
    return frames, boxes, out_off, out_on, on.stats()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return kornia.metrics.psnr(torch.from_numpy(a).float(), torch.from_numpy(b).float(), 255.0).item()


def test_moving_object_matches_whole_frame_output_and_leaves_no_trail(square_runs):
    frames, boxes, off, on, stats = square_runs
    for t in range(1, len(frames)):
        (y0, x0), (_, xp) = boxes[t], boxes[t - 1]
        obj = np.s_[y0 : y0 + SQ, x0 : x0 + SQ]
        trail = np.s_[y0 : y0 + SQ, xp : x0]  # where the square was a frame ago and is no more
        assert psnr(on[t][obj], off[t][obj]) >= 30.0, t
        assert psnr(on[t][trail], off[t][trail]) >= 30.0, t
    # whole frames stay close too (tiles vs whole frame: the micro model's attention is global)
    assert min(psnr(a, b) for a, b in zip(on, off)) >= 30.0
    print(stats["reuse"])
    assert stats["reuse"]["tile_frames"] == len(frames) - 1
    assert 0.0 < stats["recomputed_share"] < 0.8  # only the square's neighbourhood ran


def test_recomputed_share_is_reported_and_off_means_everything(square_runs):
    *_, stats = square_runs
    reuse = stats["reuse"]
    assert reuse["enabled"] and reuse["frames"] == 14 and reuse["refresh_reasons"]["first"] == 1
    assert reuse["full_frames"] + reuse["tile_frames"] + reuse["reused_frames"] == reuse["frames"]
    e = enhancer(False)
    list(e.enhance_frames(square_on_noise(4)[0]))
    assert e.stats()["recomputed_share"] == 1.0 and not e.stats()["reuse"]["enabled"]
    json.dumps(stats)  # what --stats-json writes


def test_static_background_noise_falls_with_reuse_and_smoothing():
    frames = [f for f in (still_noise(W, H, sigma=4.0)(t) for t in range(16))]
    plain = np.stack(list(enhancer(False).enhance_frames(frames))).astype(np.float64)
    e = enhancer(True, temporal=0.8)
    steady = np.stack(list(e.enhance_frames(frames))).astype(np.float64)
    std_plain, std_steady = plain[4:].std(axis=0).mean(), steady[4:].std(axis=0).mean()
    print(f"static pixel std {std_plain:.2f} -> {std_steady:.2f}; recomputed {e.stats()['recomputed_share']}")
    assert std_steady <= std_plain / 4
    assert e.stats()["recomputed_share"] < 0.5  # static: the noise alone does not trigger tiles


def test_global_brightness_step_refreshes_and_is_followed():
    base = still_noise(W, H, sigma=2.0)
    frames = [(base(t).astype(np.float32) * (0.3 if t < 8 else 0.42)).astype(np.uint8) for t in range(16)]
    e = enhancer(True, temporal=0.8)
    out = np.stack(list(e.enhance_frames(frames))).astype(np.float64).mean(axis=(1, 2, 3))
    ref = np.stack(list(enhancer(False).enhance_frames(frames))).astype(np.float64).mean(axis=(1, 2, 3))
    assert e.stats()["reuse"]["refresh_reasons"]["global"] >= 1
    # within 4 frames of the step the brightness is the unsmoothed one (within 3 %)
    assert all(abs(out[t] / ref[t] - 1) < 0.03 for t in range(12, 16)), (out / ref).round(3)


def test_scene_cut_forces_a_full_refresh():
    a, b = still_noise(W, H, seed=0), still_noise(W, H, seed=50)
    frames = [a(t) for t in range(5)] + [255 - b(t) for t in range(5)]
    e = enhancer(True, batch_size=3)
    off = np.stack(list(enhancer(False, batch_size=3).enhance_frames(frames)))
    on = np.stack(list(e.enhance_frames(frames)))
    reasons = e.stats()["reuse"]["refresh_reasons"]
    assert reasons["cut"] == 1 and reasons["first"] == 1
    # the cut frame ran whole (alone, not in a batch of 3: float rounding may move a code by 1)
    assert np.abs(on[5].astype(int) - off[5]).max() <= 1 and psnr(on[5], off[5]) >= 50.0


def test_halo_ramp_fades_in_the_middle_of_the_halo():
    w = halo_ramp(0, 96, 32, 64, 32)
    assert torch.all(w[32:64] == 1) and w[0] == 0 and w[-1] == 0
    assert torch.all(torch.diff(w[:32]) >= 0) and torch.all(torch.diff(w[64:]) <= 0)


def test_cli_reuse_writes_the_recomputed_share(tmp_path, micro_path):
    from typer.testing import CliRunner

    from media import make_clip
    from vidllie.cli import app

    src = make_clip(tmp_path / "still.mp4", width=W, height=H, frames=6, frame_fn=still_noise(W, H, sigma=2.0))
    out, stats_path = tmp_path / "out.mp4", tmp_path / "stats.json"
    result = CliRunner().invoke(app, ["enhance", str(src), "-o", str(out), "--model", str(micro_path), "--reuse",
                                      "--stats-json", str(stats_path), "--device", "cpu", "--preset", "ultrafast"])
    assert result.exit_code == 0, result.output
    stats = json.loads(stats_path.read_text())
    assert stats["reuse"]["enabled"] and stats["reuse"]["frames"] == 6
    assert 0.0 < stats["recomputed_share"] <= 1.0
    assert "pixels recomputed" in result.output


def test_timing_dino_has_the_real_vits16_configuration():
    from vidllie.jobs.bench import random_dinov3_vits16, time_dino

    c = random_dinov3_vits16().config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.patch_size, c.num_register_tokens) == (384, 12, 6, 16, 4)
    r = time_dino(("64x64",), frames=1, short_sides=(32,))
    assert "timing only" in r["model"] and r["rows"][0]["ms_per_frame"] > 0


def test_reuse_output_keeps_the_frames_memory_layout():
    """Channels-last in, channels-last out: a channels-first result made the smoothing stage
    3-9x slower in the pipeline (measured with `vidllie bench --model fast`)."""
    frames = torch.rand(2, 3, 64, 96).contiguous(memory_format=torch.channels_last)
    reuse = RegionReuse(region=32, halo=16, tile=64)
    plan = reuse.plan(frames, [False, False])
    out = reuse.run(frames, plan, lambda x, maps: x * 0.5)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out[0], frames[0] * 0.5)


def test_reuse_defaults_to_on_for_the_cpu_and_partial_batches_pad_to_a_power_of_two():
    # None = the device's default (on for the CPU; on a GPU off, docs/benchmarks.md § GPU)
    model = build_model(micro_config()).eval()
    assert Enhancer(model, device="cpu").reuse.enabled
    assert not Enhancer(model, device="cpu", reuse=False).reuse.enabled
    # CUDA pads partial batches (a new batch shape costs seconds there once): the padded run
    # gives each frame the output it gets alone, and the model sees only power-of-two batches
    runner = Enhancer(model, device="cpu", runtime="torch", batch_size=8, reuse=False).runner
    x = torch.rand(5, 3, 32, 48)
    seen = []
    runner.model_fn = lambda t: seen.append(t.shape[0]) or model(t)
    with torch.inference_mode():
        plain = runner.infer(x, None)
        runner.pad_batches = True
        padded = runner.infer(x, None)
    assert seen == [5, 8] and padded.shape == plain.shape
    assert torch.allclose(padded, plain, atol=1e-5)
