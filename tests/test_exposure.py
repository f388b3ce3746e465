"""Scene-level exposure (vidllie/pipeline/exposure.py): key frames, reuse, reset at cuts, steady
output from steady input, restraint at the noise floor, grey in -> grey out."""

from __future__ import annotations

import json

import numpy as np
import torch

from tests.media import still_noise
from vidllie.pipeline.enhancer import Enhancer
from vidllie.pipeline.exposure import SceneExposure


def _scene(seed: int, level: float, frames: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, 48, 64, generator=g) * level + level / 4
    return (base + torch.rand(frames, 3, 48, 64, generator=g) * 0.01).clamp(0, 1)


def test_exposure_is_reused_within_a_scene_and_reset_at_a_cut():
    a, b = _scene(0, 0.1), _scene(1, 0.1)
    x = torch.cat([a, b])
    # a per-frame model: gain 4 on scene A with a pop on frame 2, gain 2 on scene B
    y = torch.cat([a * 4, b * 2])
    y[2] *= 1.5
    stage = SceneExposure()
    cuts = [False] * 4 + [True] + [False] * 3
    out = stage(y.clone(), x, cuts)
    gain = out.mean((1, 2, 3)) / x.mean((1, 2, 3))
    assert stage.keys == 2  # the first frame and the cut
    assert abs(float(gain[2]) - 4) < 0.2  # the pop is gone: scene A's exposure reused
    assert abs(float(gain[5]) - 2) < 0.1  # after the cut: scene B's own exposure, not A's
    # without the cut flag (and no light change) scene A's gain carries over: what the reset prevents
    stage.reset()
    carried = stage(y.clone(), x, [False] * 8)
    assert stage.keys == 3  # one more: the first frame only
    assert float((carried.mean((1, 2, 3)) / x.mean((1, 2, 3)))[5]) > 3


def test_light_change_takes_a_new_key_frame():
    x = torch.cat([_scene(0, 0.05), _scene(0, 0.2)])
    stage = SceneExposure()
    stage((x * 3).clamp(0, 1), x, [False] * 8)
    assert stage.keys == 2


def test_veil_cap_only_on_a_scene_already_visible():
    # the same model output (mean ~150 codes) on a dark input and on one already visible
    stage = SceneExposure(max_mean=0.42, veil_from=(30, 60))
    dark, visible = _scene(2, 0.08, 1), _scene(2, 0.38, 1)  # input means ~15 and ~72 codes
    y = _scene(3, 0.95, 1)
    kept = stage(y, dark) * 255
    stage.reset()
    capped = stage(y, visible) * 255
    assert float(kept.mean()) > 140  # a dark scene keeps the model's exposure
    assert float(capped.mean()) < 0.42 * 255 + 3  # a visible one is not lifted into a veil


def test_held_brightness_follows_a_light_change():
    # a still scene whose light doubles at frame 8: the output settles at the new brightness
    base = _scene(4, 0.08, 1)
    g = torch.Generator().manual_seed(5)
    x = torch.cat([base.expand(8, -1, -1, -1), (base * 2).expand(16, -1, -1, -1)])
    x = (x + torch.rand(x.shape, generator=g) * 0.004).clamp(0, 1)
    stage = SceneExposure()
    out = stage((x * 4).clamp(0, 1), x, [False] * 24)
    gain = out.mean((1, 2, 3)) / x.mean((1, 2, 3))
    assert stage.keys == 2
    assert float((gain[:8] - 4).abs().max()) < 0.1
    assert float((gain[-4:] - 4).abs().max()) < 0.2  # followed, not held at the old level


def test_noise_floor_is_not_lifted():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(2, 3, 48, 64, generator=g) * 3 / 255)  # read noise at 0-3 codes
    y = torch.rand(2, 3, 48, 64, generator=g) * 0.5  # a model lifting it into blotches
    out = SceneExposure()(y, x, [False, False]) * 255
    # dark and even: the noise is not lifted into blotches (the model's output had std 37 codes)
    assert float(out.mean()) <= 20 and float(out.std()) <= 3


def test_steady_input_gives_steady_output():
    # fixed content, fresh noise per frame, dark as night: the exposure stage alone (temporal off)
    frame = still_noise(96, 64, sigma=6.0)
    frames = [(frame(i) // 6).astype(np.uint8) for i in range(16)]
    enhancer = Enhancer("fast", temporal=0.0, runtime="torch", threads=1)
    enhancer.exposure = SceneExposure()
    out = np.stack(list(enhancer.enhance_frames(frames))).astype(np.float32)
    src = np.stack(frames).astype(np.float32)
    m_in, m_out = src.mean((1, 2, 3)), out.mean((1, 2, 3))
    gain = m_out.mean() / m_in.mean()
    assert gain > 1.5
    assert m_out.std() <= m_in.std() * gain


def test_grey_stays_grey():
    frame = still_noise(96, 64, sigma=6.0)
    frames = [np.repeat((frame(i)[..., 1:2] // 6), 3, axis=2) for i in range(4)]
    enhancer = Enhancer("fast", runtime="torch", threads=1)
    enhancer.exposure = SceneExposure()
    for out in enhancer.enhance_frames(frames):
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_cli_default_runs_the_stage_and_the_flag_turns_it_off(tmp_path):
    from typer.testing import CliRunner

    from tests.media import make_clip
    from vidllie.cli import app

    clip = make_clip(tmp_path / "night.mp4", frames=10)
    for flags, on in (([], True), (["--no-scene-exposure"], False)):
        stats = tmp_path / f"stats_{on}.json"
        result = CliRunner().invoke(app, ["enhance", str(clip), "-o", str(tmp_path / f"out_{on}.mp4"), "-q",
                                          "--stats-json", str(stats), "--preset", "ultrafast", *flags])
        assert result.exit_code == 0, result.output
        section = json.loads(stats.read_text())["scene_exposure"]
        assert section["enabled"] is on and (section["key_frames"] >= 1) is on
