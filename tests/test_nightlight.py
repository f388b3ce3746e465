"""Night-light synthesis (vidllie/train/night_light.py, applied by degrade.py) and grey in, grey out (vidllie/ops/grey.py)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vidllie.ops import from_uint8_image, is_grey, keep_grey, luma, mean_luma, srgb_to_linear, to_grey
from vidllie.train.datasets import SyntheticPairs, fixed_pair, save_image
from vidllie.train.degrade import (
    DegradeConfig,
    degrade,
    degrade_pair,
    emitter_maps,
    illumination_map,
    kelvin_to_rgb,
    night_target,
    sample_degradation,
)

sys.path.insert(0, str(Path(__file__).parent))
from media import make_clip  # noqa: E402

QUIET = dict(cast_prob=0.0, defocus_prob=0.0, motion_prob=0.0, chroma_bias_prob=0.0, h264_prob=0.0,
             photons=(1e7, 1e7), read_noise=(1e-7, 1e-7))  # no noise worth the name, no H.264
LIGHT = DegradeConfig(light_prob=1.0)


def scene(b: int = 2, h: int = 64, w: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth test images (low-frequency colour fields + stripes) in [0.05, 0.95]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(b, 3, 4, 4, generator=g), size=(h, w), mode="bicubic", align_corners=False)
    x = x + 0.25 * (torch.rand(b, 3, 1, 1, generator=g) - 0.5) * (torch.arange(w) % 16 < 8).float()
    return x.clamp(0.05, 0.95)


def sha(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16]


# ----------------------------------------------------------------------- defaults stay identical
def test_defaults_give_the_same_tensors_as_before():
    # checksums computed with main's degrade.py at fcc4189, before night light existed
    x = torch.rand(3, 3, 40, 56, generator=torch.Generator().manual_seed(5))
    clip = torch.rand(2, 3, 3, 24, 32, generator=torch.Generator().manual_seed(6))
    expected = [("3f63d5521a26accb", "86f8c3469c9bb3ad"), ("ecfe9c7835a9c6cc", "47d3648d15296b2f")]
    configs = [dict(h264_prob=0.0), dict(h264_prob=0.0, defocus_prob=0.5, motion_prob=0.5, chroma_bias_prob=1.0, cast_prob=1.0)]
    for kwargs, want in zip(configs, expected):
        # other night-light ranges with probability 0 draw nothing either
        for extra in ({}, {"light_ratio": (50.0, 60.0), "core_prob": 1.0, "light_sources": (2, 6)}):
            g = torch.Generator().manual_seed(11)
            cfg = DegradeConfig(**kwargs, **extra)
            params = sample_degradation(3, g, cfg)
            assert params.light is None and "light" not in params.to_dict()
            low = degrade(x, params, g)
            assert night_target(x, params) is x
            assert (sha(low), sha(degrade(clip, sample_degradation(2, g, cfg), g))) == want


def test_config_round_trip_with_new_fields():
    cfg = DegradeConfig(light_prob=0.6, mono_prob=0.1, light_ratio=(40, 200), light_sources=(2, 3))
    data = cfg.to_dict()
    assert DegradeConfig.from_dict(data) == cfg
    # YAML gives lists
    as_yaml = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
    assert DegradeConfig.from_dict(as_yaml) == cfg
    for bad in ({"light_prob": 1.5}, {"light_ratio": (0.5, 2.0)}, {"light_sources": (0, 2)},
                {"light_radius": (0.3, 0.1)}, {"ambient_kelvin": (500.0, 6000.0)}, {"glow": (0.0, 0.1)},
                {"ambient_tint": (-2.0, 0.0)}, {"ambient_tint": (0.2, 0.1)}):
        with pytest.raises(ValueError):
            DegradeConfig(**bad)


def test_training_config_for_the_next_model_is_valid():
    from vidllie.train.config import load_train_config

    cfg = load_train_config(Path(__file__).resolve().parents[1] / "configs" / "train" / "fast-nightlight.yaml")
    d = cfg.data.degradation
    assert isinstance(d, DegradeConfig)
    assert 0 < d.light_prob < 1 and 0 < d.mono_prob < 1


# ------------------------------------------------------------------------------------ the light
def test_shapes_range_and_determinism():
    x, clip = scene(3, 48, 64), scene(2, 40, 48, seed=1)[:, None].expand(-1, 3, -1, -1, -1).contiguous()

    def run(inp, seed):
        # H.264 on single images only: libx264 round trips of some short clips differ by a few
        # codes between calls in one process (seen before night light existed; see the report)
        cfg = DegradeConfig(light_prob=1.0, mono_prob=0.3, h264_prob=0.5 if inp.ndim == 4 else 0.0)
        g = torch.Generator().manual_seed(seed)
        return degrade_pair(inp, sample_degradation(inp.shape[0], g, cfg), g)

    for inp in (x, clip):
        (a_low, a_tgt), (b_low, b_tgt), (c_low, _) = run(inp, 3), run(inp, 3), run(inp, 4)
        assert a_low.shape == a_tgt.shape == inp.shape
        assert torch.equal(a_low, b_low) and torch.equal(a_tgt, b_tgt)
        assert not torch.equal(a_low, c_low)
        assert torch.equal(a_low * 255, (a_low * 255).round()) and 0 <= a_low.min() and a_low.max() <= 1
        assert 0 <= a_tgt.min() and a_tgt.max() <= 1


def test_kelvin_colours_go_from_orange_to_blue():
    rgb = kelvin_to_rgb(torch.tensor([2000.0, 2850.0, 4500.0, 6500.0, 10000.0]))
    assert torch.allclose((rgb * torch.tensor([0.2126, 0.7152, 0.0722])).sum(-1), torch.ones(5), atol=1e-5)
    blue_over_red = rgb[:, 2] / rgb[:, 0]
    assert bool((blue_over_red[1:] > blue_over_red[:-1]).all())  # monotonic: warmer = redder
    assert blue_over_red[0] < 0.2 and blue_over_red[-1] > 1.2  # sodium deep orange, sky glow bluish
    assert torch.allclose(rgb[3], torch.ones(3), atol=0.06)  # ~D65 is white


def test_pools_vary_spatially_with_the_sampled_ratio():
    g = torch.Generator().manual_seed(0)
    params = sample_degradation(16, g, DegradeConfig(light_prob=1.0, core_prob=0.0, **QUIET))
    lay = params.light
    assert bool(((lay.ratio >= 30) & (lay.ratio <= 300)).all())
    y = luma(illumination_map(lay, 72, 96)).flatten(1)
    assert torch.allclose(y.amax(1) / y.amin(1), lay.ratio, rtol=1e-3)
    assert torch.allclose(y.amax(1), lay.level, rtol=1e-3)
    # local pools in the dark, not a gradient: less than half the frame gets half the peak light,
    # and the median pixel gets far less than the peak
    lit = (y > 0.5 * y.amax(1, keepdim=True)).float().mean(1)
    median = y.median(1).values / y.amax(1)
    assert bool(((lit > 0) & (lit < 0.5)).all()) and bool((median < 0.5).all()) and float(median.mean()) < 0.15
    assert len({int(v) for v in y.argmax(1)}) > 8  # the pools are in different places
    # and in the stored input: a flat grey wall lit by the layout shows the same ratio (in linear light)
    wall = torch.full((16, 3, 72, 96), 0.8)
    low = degrade(wall, params, g)
    lin = luma(srgb_to_linear(low)).flatten(1)
    bright = lin.amax(1)
    unclipped = bright < 0.99  # pools above full scale clip: their ratio is only a lower bound
    dark = torch.quantile(lin, 0.01, dim=1)
    assert unclipped.sum() >= 4
    measured = bright[unclipped] / dark[unclipped].clamp(min=1e-6)
    assert bool((measured > 0.6 * lay.ratio[unclipped]).all()) and bool((measured < 1.6 * lay.ratio[unclipped]).all())


def test_clip_shares_one_layout_and_has_per_frame_noise():
    still = scene(2, 48, 64)[:, None].expand(-1, 4, -1, -1, -1).contiguous()
    g = torch.Generator().manual_seed(2)
    cfg = DegradeConfig(light_prob=1.0, **dict(QUIET, photons=(2000.0, 2000.0)))
    low = degrade(still, sample_degradation(2, g, cfg), g)
    for clip in low:
        means = [luma(f[None]).mean() for f in clip]
        assert max(means) - min(means) < 0.01  # same light in every frame
        assert not torch.equal(clip[0], clip[1])  # fresh noise
    assert (low[0, 0] - low[1, 0]).abs().mean() > 0.01  # another clip, another layout


def test_light_sources_clip_to_flat_white_cores_with_glow():
    g = torch.Generator().manual_seed(1)
    cfg = DegradeConfig(light_prob=1.0, core_prob=1.0, core_radius=(0.02, 0.03), glow=(0.1, 0.2),
                        light_level=(0.2, 0.2), **dict(QUIET, photons=(500.0, 500.0), read_noise=(1e-3, 1e-3)))
    x = scene(6, 96, 128, seed=3) * 0.5
    params = sample_degradation(6, g, cfg)
    low, target = degrade_pair(x, params, g)
    core, glow = emitter_maps(params.light, 96, 128)
    inside = core[:, 0] >= 1.0
    with_core = params.light.core.any(1)  # lamps and headlights show one; lit windows do not
    assert with_core.sum() >= 3
    for i in torch.nonzero(with_core).flatten().tolist():
        assert inside[i].sum() >= 9  # a few pixels across at least
        assert bool((low[i][:, inside[i]] == 1.0).all())  # flat white in every channel despite the noise
        assert bool((target[i][:, inside[i]] == 1.0).all())  # the target keeps the core
        assert float(inside[i].float().mean()) < 0.05  # cores are small
    # the glow lifts what is around a core compared with the same layout without emitters
    g2 = torch.Generator().manual_seed(1)
    plain = degrade(x, sample_degradation(6, g2, DegradeConfig(**dict(cfg.to_dict(), core_prob=0.0))), g2)
    ring = (glow.sum(1) > 0.05) & (core[:, 0] == 0)
    assert float(luma(low)[:, 0][ring].mean()) > float(luma(plain)[:, 0][ring].mean()) + 0.05
    # no emitters without night light
    assert night_target(x, sample_degradation(6, g, DegradeConfig(core_prob=1.0, mono_prob=0.0, light_prob=0.0))) is x


def test_grey_samples_are_grey_in_input_and_target():
    x = scene(4, 48, 64, seed=5)
    clip = scene(1, 48, 64, seed=6)[:, None].expand(-1, 3, -1, -1, -1).contiguous()
    for light in (0.0, 1.0):
        cfg = DegradeConfig(mono_prob=1.0, light_prob=light, h264_prob=1.0, chroma_bias_prob=1.0, cast_prob=1.0)
        g = torch.Generator().manual_seed(7)
        for inp in (x, clip):
            low, target = degrade_pair(inp, sample_degradation(inp.shape[0], g, cfg), g)
            for t in (low, target):
                assert torch.equal(t[..., 0, :, :], t[..., 1, :, :]) and torch.equal(t[..., 1, :, :], t[..., 2, :, :])
            assert float(low.std()) > 0.005  # still an image, not a blank
            # the target is the photo's luma (plus the light sources' cores/glow where lit)
            if light == 0.0:
                assert torch.allclose(target.reshape(-1, 3, 48, 64), to_grey(inp.reshape(-1, 3, 48, 64)))
    # mixed batch: only the monochrome samples are grey
    g = torch.Generator().manual_seed(8)
    params = sample_degradation(8, g, DegradeConfig(mono_prob=0.5, light_prob=0.5, h264_prob=0.0))
    low, target = degrade_pair(scene(8, 32, 32), params, g)
    assert is_grey(low).tolist() == params.light.mono.tolist() == is_grey(target).tolist()


def test_synthetic_pairs_and_fixed_pair_use_the_night_target(tmp_path):
    for i in range(3):
        save_image(tmp_path / f"img{i}", scene(1, 80, 96, seed=i)[0])
    paths = sorted(tmp_path.glob("*.png"))
    data = SyntheticPairs(paths, crop=32, batch_size=6, degradation=DegradeConfig(mono_prob=1.0, h264_prob=0.0))
    low, high = data.batch(torch.Generator().manual_seed(0))
    assert bool(is_grey(low).all() and is_grey(high).all())
    img = (scene(1, 40, 48)[0] * 255).round().to(torch.uint8)
    lo, hi = fixed_pair(img, "a.png", 1, DegradeConfig(mono_prob=1.0, h264_prob=0.0))
    assert bool(is_grey(lo[None]).all() and is_grey(hi[None]).all())
    lo2, hi2 = fixed_pair(img, "a.png", 1, DegradeConfig(mono_prob=1.0, h264_prob=0.0))
    assert torch.equal(lo, lo2) and torch.equal(hi, hi2)


# ------------------------------------------------------------------------------------ ops.grey
def test_is_grey_and_to_grey():
    grey = torch.rand(3, 1, 8, 8).expand(-1, 3, -1, -1).clone()
    grey[2, 1, 4, 4] += 2 / 255  # off the 1-in-64 sample that rejects colour frames early
    assert is_grey(grey).tolist() == [True, True, False]
    assert is_grey(torch.rand(2, 3, 360, 640).contiguous(memory_format=torch.channels_last)).tolist() == [False, False]
    assert is_grey(grey, tolerance=3 / 255).tolist() == [True, True, True]
    y = to_grey(torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1))
    assert torch.allclose(y.flatten(), torch.full((3,), 0.7152))
    assert torch.allclose(to_grey(grey[:2]), grey[:2], atol=1e-6)  # grey stays itself
    with pytest.raises(ValueError):
        is_grey(torch.rand(3, 8, 8))
    with pytest.raises(ValueError):
        is_grey(grey, tolerance=-1.0)


def test_mean_luma_is_the_mean_of_the_luma_map():
    x = torch.rand(2, 3, 37, 53).contiguous(memory_format=torch.channels_last)
    assert torch.allclose(mean_luma(x), luma(x).mean(dim=(1, 2, 3)), atol=1e-6)


def test_keep_grey_only_touches_grey_frames():
    frames = torch.rand(3, 3, 16, 16)
    frames[1] = frames[1, :1].expand(3, -1, -1)
    out = torch.rand(3, 3, 32, 32)  # e.g. an output at another resolution
    kept = keep_grey(out, frames)
    assert is_grey(kept).tolist() == [False, True, False]
    assert torch.equal(kept[0], out[0]) and torch.equal(kept[2], out[2])
    assert torch.allclose(luma(kept[1:2]), luma(out[1:2]), atol=1e-6)  # brightness and detail kept
    assert keep_grey(out, torch.rand(3, 3, 16, 16)) is out
    with pytest.raises(ValueError):
        keep_grey(out[:2], frames)


def test_grey_video_decodes_grey_and_stays_grey(tmp_path):
    """A grey H.264 clip (TV range, as cameras write) read by the product's reader is exactly grey;
    keep_grey on a colour-tinting 'model' gives exactly grey output."""
    from vidllie.video.reader import VideoReader

    rng = np.random.default_rng(0)

    def frame_fn(i: int) -> np.ndarray:
        y = (rng.random((48, 80)) * 40 + np.linspace(5, 120, 80)[None]).astype(np.uint8)
        return np.repeat(y[..., None], 3, axis=2)

    path = make_clip(tmp_path / "ir.mp4", width=80, height=48, frames=3, audio_streams=0, frame_fn=frame_fn)
    frames = torch.stack([from_uint8_image(f.image) for f in VideoReader(path)])
    assert frames.shape == (3, 3, 48, 80) and bool(is_grey(frames).all())
    tint = torch.tensor([1.1, 1.0, 0.85]).view(1, 3, 1, 1)
    tinted = (frames ** 0.5 * tint).clamp(0, 1)  # what a colour network does to an IR frame
    assert not bool(is_grey(tinted).any())
    out = keep_grey(tinted, frames)
    assert bool(is_grey(out).all())
    u8 = (out * 255).round()
    assert torch.equal(u8[:, 0], u8[:, 1]) and torch.equal(u8[:, 1], u8[:, 2])  # still grey once stored as 8 bits


def test_make_pairs_writes_night_pairs_and_a_contact_sheet(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import json

    import make_pairs

    from vidllie.train.datasets import PairedFolder, load_image

    for i in range(3):
        save_image(tmp_path / "images" / f"img{i}", scene(1, 48, 64, seed=i)[0])
    out = tmp_path / "pairs"
    assert make_pairs.main([str(tmp_path / "images"), str(out), "--split", "all", "--light-prob", "1",
                            "--mono-prob", "1", "--grid", str(tmp_path / "sheet.jpg"), "--grid-height", "40"]) == 0
    record = json.loads((out / "params.json").read_text())
    assert record["degradation"]["light_prob"] == 1.0 and len(record["pairs"]) == 3
    assert all(p["light"]["lit"] == [True] for p in record["pairs"].values())
    data = PairedFolder(out)
    for i in range(len(data)):
        low, high, _ = data[i]
        assert bool(is_grey(low[None]).all() and is_grey(high[None]).all())
    sheet = load_image(tmp_path / "sheet.jpg")
    assert sheet.shape[1] == 3 * 40 + 2 * 4 and sheet.shape[2] >= 3 * 53  # 3 rows of 3 tiles


# ----------------------------------------------------------------------- chroma bias of any hue
def test_chroma_bias_of_random_hue_keeps_grey_part_and_length():
    from vidllie.train.degrade import chroma_bias_direction

    hue = torch.tensor([0.0, torch.pi / 2, torch.pi, -2.0])
    d = chroma_bias_direction(hue)
    magenta = torch.tensor([1.0, -1.0, 1.0])
    assert torch.allclose(d[0], magenta)
    assert torch.allclose(d.norm(dim=1), magenta.norm().expand(4))  # same length
    assert torch.allclose(d.sum(dim=1), magenta.sum().expand(4))  # same grey part
    assert d[2, 1] > 0 and d[2, 0] < 0 and d[2, 2] < 0  # turned half way round: green
    # in the degradation: only the dark pixels move, in the drawn direction
    x = torch.full((1, 3, 16, 16), 0.02)
    cfg = DegradeConfig(**{**QUIET, "chroma_bias_prob": 1.0, "chroma_bias": (3.0, 3.0), "exposure": (1.0, 1.0),
                           "chroma_bias_hue_prob": 1.0})
    for seed in range(6):
        g = torch.Generator().manual_seed(seed)
        params = sample_degradation(1, g, cfg)
        assert params.chroma_hue is not None and "chroma_hue" in params.to_dict()
        low = degrade(x, params, g).mean(dim=(2, 3))[0]
        want = chroma_bias_direction(params.chroma_hue)[0]
        offset = low - low.mean()
        assert torch.nn.functional.cosine_similarity(offset, want - want.mean(), dim=0) > 0.9
    # hue_prob 0 (the default) draws nothing: no field, magenta
    assert sample_degradation(2, torch.Generator().manual_seed(0), DegradeConfig()).chroma_hue is None


def test_ambient_tint_makes_the_mean_shadow_tint_neutral():
    """The black-body ambient alone is magenta of grey in the shadows (CIELAB a* > 0 on average);
    stage 3's tint range cancels it, and turning the tint on changes no other draw."""
    import dataclasses

    import kornia

    from vidllie.train.config import load_train_config
    from vidllie.train.degrade import sample_light_layout, tint_green

    rgb = torch.tensor([[1.0, 1.0, 1.0], [1.2, 0.9, 1.0]])
    out = tint_green(rgb, torch.tensor([0.2, -0.2]))
    assert torch.allclose((out * torch.tensor([0.2126, 0.7152, 0.0722])).sum(-1), torch.ones(2))  # luma kept
    assert out[0, 1] > out[0, 0] and out[1, 1] / out[1, 0] < rgb[1, 1] / rgb[1, 0]  # greener, more magenta

    def shadow_lab(cfg):
        lay = sample_light_layout(4000, torch.Generator().manual_seed(3), cfg)
        dim = (lay.ambient_rgb * 0.02).clamp(0, 1).view(-1, 3, 1, 1)  # a grey surface in the ambient, linear
        return lay, kornia.color.rgb_to_lab(kornia.color.linear_rgb_to_rgb(dim)).view(-1, 3)

    stage3 = load_train_config(Path(__file__).resolve().parents[1] / "configs" / "train" / "fast-stage3.yaml")
    tinted = stage3.data.degradation
    plain = dataclasses.replace(tinted, ambient_tint=(0.0, 0.0))
    lay_p, lab_p = shadow_lab(plain)
    lay_t, lab_t = shadow_lab(tinted)
    assert lab_p[:, 1].mean() > 1.0  # magenta on average without the tint
    assert abs(lab_t[:, 1].mean()) < 0.3 and abs(lab_t[:, 2].mean()) < 1.0  # neutral on average with it
    assert (lab_t[:, 1] < -1.0).any() and (lab_t[:, 1] > 1.0).any()  # and tints on both sides
    for f in dataclasses.fields(lay_p):
        if f.name != "ambient_rgb":
            assert torch.equal(getattr(lay_p, f.name), getattr(lay_t, f.name)), f.name


# ------------------------------------------------------------------- symmetric colour priors (stage 5)
def test_mirrored_casts_make_the_cast_prior_symmetric_about_grey():
    """Street-light casts are warm; with ``cast_mirror_prob`` 0.5 half of them are the complement,
    so the mean log chroma of the gains is ~0. Mirrored gains are the reciprocal of the unmirrored
    draw (same seed, same draws before), luma-normalised; every earlier draw is unchanged."""
    import dataclasses

    from vidllie.train.config import load_train_config

    def log_chroma(cfg, seed=7, n=20000):
        p = sample_degradation(n, torch.Generator().manual_seed(seed), cfg)
        lg = p.gains.double().log()
        return p, torch.stack([lg[:, 0] - lg[:, 1], lg[:, 2] - lg[:, 1]], dim=1)  # log R/G, log B/G

    cast = dict(cast_prob=1.0)
    _, warm = log_chroma(DegradeConfig(**cast))
    assert warm[:, 0].mean() > 0.05 and warm[:, 1].mean() < -0.08 and not (warm[:, 1] > 0.2).any()  # one-sided: red up, blue down
    stage5 = load_train_config(Path(__file__).resolve().parents[1] / "configs" / "train" / "fast-stage5.yaml")
    assert stage5.data.degradation.cast_mirror_prob == 0.5
    _, both = log_chroma(DegradeConfig(**cast, cast_mirror_prob=0.5))
    assert both[:, 0].mean().abs() < 0.005 and both[:, 1].mean().abs() < 0.005
    assert (both[:, 1] > 0.2).float().mean() > 0.05  # and real blue casts among them
    p0, _ = log_chroma(DegradeConfig(**cast), n=64)
    p1, _ = log_chroma(DegradeConfig(**cast, cast_mirror_prob=1.0), n=64)
    luma_w = torch.tensor([0.2126, 0.7152, 0.0722])
    recip = 1.0 / p0.gains.double()
    recip = recip / (recip * luma_w.double()).sum(1, keepdim=True)
    assert torch.allclose(p1.gains.double(), recip, atol=1e-6)
    assert torch.allclose((p1.gains * luma_w).sum(1), torch.ones(64), atol=1e-5)  # exposure kept
    for f in dataclasses.fields(p0):
        if f.name not in ("gains", "light", "scene_hue"):
            a, b = getattr(p0, f.name), getattr(p1, f.name)
            assert (a is None and b is None) or torch.equal(a, b), f.name


def test_turn_hue_keeps_grey_and_lightness_and_turns_back():
    import kornia

    from vidllie.train.degrade import turn_hue

    g = torch.Generator().manual_seed(0)
    grey = torch.rand(3, 1, 8, 8, generator=g).expand(3, 3, 8, 8) * 0.9 + 0.05
    angle = torch.tensor([0.5, 2.0, -3.0])
    out = turn_hue(grey, angle)
    assert (out - grey).abs().max() < 1e-4  # greys stay grey
    # muted colours (inside the gamut after any turn): L* kept, chroma length kept, the turn undone
    x = (0.5 + 0.12 * (torch.rand(3, 3, 8, 8, generator=g) - 0.5))
    lab, lab_t = kornia.color.rgb_to_lab(x), kornia.color.rgb_to_lab(turn_hue(x, angle))
    assert (lab[:, 0] - lab_t[:, 0]).abs().max() < 0.05
    assert (lab[:, 1:].norm(dim=1) - lab_t[:, 1:].norm(dim=1)).abs().max() < 0.05
    turned_a = torch.atan2(lab_t[:, 2], lab_t[:, 1]) - torch.atan2(lab[:, 2], lab[:, 1])
    err = torch.remainder(turned_a - angle.view(-1, 1, 1) + torch.pi, 2 * torch.pi) - torch.pi
    assert err.abs().max() < 0.02
    assert (turn_hue(turn_hue(x, angle), -angle) - x).abs().max() < 1e-3
    assert torch.equal(turn_hue(x, torch.zeros(3)).sub(x).abs().max() < 1e-4, torch.tensor(True))


def test_scene_hue_turns_input_and_target_alike_and_leaves_the_rest_bit_identical():
    """A turned scene is what the camera sees and what the target shows: a reddish scene turned
    half way round is blue-green in both. Samples drawn with angle 0, and the noise of all, are
    exactly what they are without the option."""
    import dataclasses

    from vidllie.train.degrade import turn_hue

    x = torch.stack([torch.tensor([0.7, 0.3, 0.25]).view(3, 1, 1).expand(3, 32, 32)] * 4)
    cfg = DegradeConfig(**{**QUIET, "exposure": (0.25, 0.25), "scene_hue_prob": 0.5})
    for seed in range(20):
        params = sample_degradation(4, torch.Generator().manual_seed(seed), cfg)
        if (params.scene_hue != 0).any() and (params.scene_hue == 0).any():
            break
    assert "scene_hue" in params.to_dict()
    params.scene_hue[params.scene_hue != 0] = torch.pi
    low, target = degrade_pair(x, params, torch.Generator().manual_seed(1))
    # the pair turns the scene once; each half on its own turns it the same way
    assert torch.equal(low, degrade(x, params, torch.Generator().manual_seed(1)))
    assert torch.equal(target, night_target(x, params))
    turned = params.scene_hue != 0
    assert torch.allclose(target[turned], turn_hue(x[turned], params.scene_hue[turned]))
    for img in (target[turned], low[turned]):
        m = img.mean(dim=(2, 3))
        assert (m[:, 2] > m[:, 0]).all() and (m[:, 1] > m[:, 0]).all()  # red's opposite
    assert torch.equal(target[~turned], x[~turned])
    plain = dataclasses.replace(params, scene_hue=None)
    unturned = dataclasses.replace(params, scene_hue=torch.zeros(4))
    assert torch.equal(degrade(x, unturned, torch.Generator().manual_seed(1)), degrade(x, plain, torch.Generator().manual_seed(1)))
    assert night_target(x, plain) is x and night_target(x, unturned) is x
    # clips: one angle per clip, every frame turned alike
    clip = x[:2, None].expand(-1, 3, -1, -1, -1).contiguous()
    cp = sample_degradation(2, torch.Generator().manual_seed(0), DegradeConfig(**{**QUIET, "scene_hue_prob": 1.0}))
    t = night_target(clip, cp)
    assert t.shape == clip.shape and torch.allclose(t[:, 0], t[:, 2])
    assert torch.allclose(t[:, 0], turn_hue(x[:2], cp.scene_hue))
