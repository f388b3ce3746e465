"""Pipeline image stages: temporal smoothing (flicker, noise, ghosting), tiling, scene cuts.

Measured through ``Enhancer.enhance_frames`` with a random-init micro model, ``temporal`` on vs
off, on generated frames (exact control of noise, jitter and motion; no codec in the way).
"""

from __future__ import annotations

import kornia
import numpy as np
import pytest
import torch

from conftest import micro_config
from vidllie.models import build_model
from vidllie.pipeline.enhancer import Enhancer
from vidllie.pipeline.scene import SceneCutDetector, luma_thumbnails
from vidllie.ops import luma
from vidllie.pipeline.temporal import TemporalSmoother
from vidllie.models.dino import dino_grid
from vidllie.pipeline.feathered_tiles import crop_dino_maps, feather_ramp, feathered_forward, tile_spans

H, W = 96, 160


def micro_model(seed: int = 0, unshuffle: int = 2):
    torch.manual_seed(seed)
    return build_model(micro_config(unshuffle))


def scene(h: int = H, w: int = W) -> np.ndarray:
    """A dark still scene with structure (float, 0..1)."""
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    img = np.stack([0.08 + 0.25 * xx, 0.08 + 0.15 * yy, 0.1 + 0.1 * xx * yy], axis=-1)
    img += 0.05 * np.sin(xx * 37)[..., None] * (yy > 0.5)[..., None]
    img[h // 4 : h // 2, w // 5 : w // 3] += 0.15  # a box: an edge the smoothing must keep
    return img


def to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def mean_luma(frames: list[np.ndarray]) -> np.ndarray:
    return np.array([f.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) for f in frames]).mean(axis=(1, 2)) / 255


def enhance(frames, temporal: float, batch_size: int = 4) -> list[np.ndarray]:
    enhancer = Enhancer(micro_model(), device="cpu", temporal=temporal, batch_size=batch_size)
    return list(enhancer.enhance_frames(iter(frames)))


@pytest.fixture(scope="module")
def jitter_clip() -> list[np.ndarray]:
    """Static camera, sensor noise (sigma 5/255) and per-frame brightness jitter (+-10 %)."""
    rng = np.random.default_rng(0)
    base = scene()
    gains = 1 + 0.1 * rng.standard_normal(32)
    return [to_u8(base * g + rng.normal(0, 5 / 255, base.shape)) for g in gains]


def test_static_clip_flicker_and_noise_are_reduced(jitter_clip):
    off = enhance(jitter_clip, temporal=0.0)
    on = enhance(jitter_clip, temporal=0.8)
    assert len(on) == len(off) == len(jitter_clip)
    flicker_off = np.diff(mean_luma(off)).std()
    flicker_on = np.diff(mean_luma(on)).std()
    # per-pixel temporal std (every pixel is static here), skipping the first frames (warm-up)
    std_off = np.stack(off[4:]).astype(np.float64).std(axis=0).mean()
    std_on = np.stack(on[4:]).astype(np.float64).std(axis=0).mean()
    print(f"flicker {flicker_off:.5f} -> {flicker_on:.5f} ({flicker_off / flicker_on:.1f}x); "
          f"pixel std {std_off:.2f} -> {std_on:.2f} ({std_off / std_on:.2f}x)")
    assert flicker_off / flicker_on >= 3.0
    assert std_off / std_on >= 2.0
    # The stabiliser follows the average, it does not drift: mean brightness is kept.
    assert abs(mean_luma(on).mean() - mean_luma(off).mean()) < 0.01


def test_steady_source_gets_no_added_flicker():
    """A moving-average deflicker adds flicker on a steady source; ours must not."""
    rng = np.random.default_rng(1)
    base = scene()
    clip = [to_u8(base + rng.normal(0, 2 / 255, base.shape)) for _ in range(16)]
    off, on = enhance(clip, 0.0), enhance(clip, 0.8)
    assert np.diff(mean_luma(on)).std() <= np.diff(mean_luma(off)).std()


def square_clip(n: int = 16, size: int = 24, step: int = 8, contrast: float = 0.7):
    rng = np.random.default_rng(2)
    frames, boxes = [], []
    for t in range(n):
        img = np.full((H, W, 3), 0.1) + rng.normal(0, 3 / 255, (H, W, 3))
        x0, y0 = 8 + step * t, 36
        img[y0 : y0 + size, x0 : x0 + size] += contrast
        frames.append(to_u8(img))
        boxes.append((y0, x0, size))
    return frames, boxes


def test_moving_square_leaves_no_ghost_trail():
    frames, boxes = square_clip()
    off, on = enhance(frames, 0.0), enhance(frames, 0.8)
    worst = 0.0
    for t in range(3, len(frames) - 1):
        (y0, x0, s), (y1, x1, _) = boxes[t], boxes[t + 1]
        left = np.zeros((H, W), bool)
        left[y0 : y0 + s, x0 : x0 + s] = True
        left[y1 : y1 + s, x1 : x1 + s] = False  # where the square was at t and is not at t+1
        inside = np.zeros((H, W), bool)
        inside[y1 : y1 + s, x1 : x1 + s] = True
        lum_off = off[t + 1].astype(np.float64).mean(-1)
        contrast = lum_off[inside].mean() - lum_off[left].mean()  # the square's contrast in the output
        residual = np.abs(on[t + 1].astype(np.float64).mean(-1) - lum_off)[left].mean()
        worst = max(worst, residual / contrast)
    print(f"ghost residual one frame after the square left: {100 * worst:.2f} % of its contrast")
    assert worst <= 0.05


def test_scene_cut_resets_smoothing():
    smoother = TemporalSmoother(0.8)
    a = torch.full((1, 3, 32, 32), 0.2)
    b = torch.full((1, 3, 32, 32), 0.21)  # a small change: static, would be blended
    smoother(a)
    blended = smoother(b)
    smoother.reset()
    smoother(a)
    cut = smoother(b, cuts=[True])
    assert not torch.allclose(blended, b)
    assert torch.equal(cut, b)


def test_scene_cut_detector_flags_the_cut_frame_only():
    rng = np.random.default_rng(3)
    a, b = scene(), scene()[::-1, ::-1] * 0.6 + 0.2
    frames = [to_u8(a + rng.normal(0, 4 / 255, a.shape)) for _ in range(7)]
    frames += [to_u8(b + rng.normal(0, 4 / 255, b.shape)) for _ in range(5)]
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
    detector = SceneCutDetector(0.1)
    flags = detector(luma_thumbnails(x[:4])) + detector(luma_thumbnails(x[4:]))  # across batches
    assert [i for i, f in enumerate(flags) if f] == [7]


# ---------------------------------------------------------------- tiling


def test_tile_spans_cover_with_overlap_and_ramps_sum_to_one():
    for length, tile, overlap, align in [(720, 256, 32, 16), (1280, 384, 32, 16), (1000, 512, 64, 8), (300, 512, 32, 8)]:
        spans = tile_spans(length, tile, overlap, align)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(s % align == 0 for s, _ in spans)
        total = torch.zeros(length)
        for i, (s, e) in enumerate(spans):
            total[s:e] += feather_ramp(spans, i)
            if i:
                assert spans[i - 1][1] - s >= overlap - align + 1
        assert torch.allclose(total, torch.ones(length), atol=1e-6)


def _column_steps(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """|step| of the column-mean (out - ref) error between neighbouring columns.

    A seam is an offset shared by the rows along a tile edge: it survives the column mean (pixel
    noise of the error averages out) and shows as a spike at the edge.
    """
    err = (out - ref)[0].mean(0).mean(0)  # (W,)
    return (err[1:] - err[:-1]).abs()  # entry x-1: step between columns x-1 and x


def _edges(length: int, tile: int, overlap: int, align: int) -> list[int]:
    spans = tile_spans(length, tile, overlap, align)
    return sorted({e for _, e in spans[:-1]} | {s for s, _ in spans[1:]})


def test_tiling_is_exact_for_a_local_operator():
    """Crops, padding margins and blending weights: a conv stack (receptive radius 8 px) gives
    the same output tiled as whole; flat (unfeathered) weights would leave seams."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(*[torch.nn.Conv2d(3, 3, 5, padding=2) for _ in range(4)])
    img = torch.rand(1, 3, 720, 1280)
    with torch.inference_mode():
        full = net(img)
        tiled = feathered_forward(lambda t, g: net(t), img, 384, 32, align=16)
        flat = feathered_forward(lambda t, g: net(t), img, 384, 32, align=16, feather=False)
    peak = (full.max() - full.min()).item()
    assert kornia.metrics.psnr(tiled, full, peak).item() >= 80.0
    edges = _edges(1280, 384, 32, 16)
    flat_steps = _column_steps(flat, full)
    assert torch.stack([flat_steps[e - 1] for e in edges]).max() > 100 * flat_steps.median()


@pytest.fixture(scope="module")
def restormer_tiling():
    """A random-init micro Restormer on a 1280x720 frame: whole vs independent feathered tiles
    (384 px, overlap 32), the pipeline's last-resort fallback when exact chunking does not fit."""
    model = micro_model().eval().to(memory_format=torch.channels_last)
    img = torch.from_numpy(scene(720, 1280)).permute(2, 0, 1)[None].float()
    img = (img + 0.02 * torch.randn(img.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    img = img.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        full = model(img).clamp(0, 1)
        tiled = feathered_forward(lambda t, g: model(t), img, 384, 32, align=model.size_multiple).clamp(0, 1)
    return full, tiled, model.size_multiple


def test_tiled_restormer_has_no_seams(restormer_tiling):
    full, tiled, align = restormer_tiling
    steps = _column_steps(tiled, full)
    at_edges = torch.stack([steps[e - 1] for e in _edges(1280, 384, 32, align)])
    print(f"column step of the error at tile edges {at_edges.max().item():.2e}, typical {steps.median().item():.2e}")
    assert at_edges.max() <= 3 * steps.median()


def test_tiled_restormer_matches_untiled_40db(restormer_tiling, monkeypatch):
    """40 dB, through the pipeline: ``Enhancer(chunk=384)`` runs the model in exact chunks
    (frame-wide MDTA statistics), so tiled and untiled frames agree to the last bit or so.
    Independent tiles cannot get there: MDTA's attention depends on the whole input (~37 dB)."""
    import vidllie.pipeline.runner as runner_module

    chunked_calls = []
    original = runner_module.chunked_forward

    def spy(*args, **kwargs):
        chunked_calls.append(kwargs.get("chunk"))
        return original(*args, **kwargs)

    monkeypatch.setattr(runner_module, "chunked_forward", spy)
    rng = np.random.default_rng(0)
    img = to_u8(scene(720, 1280) + rng.normal(0, 0.02, (720, 1280, 3)))
    out = {
        tile: next(Enhancer(micro_model(), device="cpu", precision="fp32", temporal=0, chunk=tile).enhance_frames([img]))
        for tile in (0, 384)
    }
    assert chunked_calls == [384]  # tile=0 ran whole, tile=384 in chunks
    untiled, tiled = (torch.from_numpy(out[t]).float() for t in (0, 384))
    psnr = kornia.metrics.psnr(tiled, untiled, 255.0).item()
    full, feathered, _ = restormer_tiling
    print(f"tiled vs untiled micro Restormer, 1280x720: {psnr:.2f} dB (exact chunks), "
          f"{kornia.metrics.psnr(feathered, full, 1.0).item():.2f} dB (independent feathered tiles)")
    assert psnr >= 40.0
    assert (tiled - untiled).abs().max().item() <= 1  # uint8 rounding is the only difference


def test_guidance_is_resampled_onto_each_tiles_own_dino_grid():
    """A map whose value is the frame x (and y) of each DINO patch centre: after cropping, every
    tile cell must hold the frame position of its own centre on the tile's DINO grid."""
    h, w, short, patch = 720, 1280, 448, 16
    grid = lambda hh, ww: dino_grid(hh, ww, short, patch)  # noqa: E731
    rows, cols, valid_r, valid_c = grid(h, w)
    ys = (torch.arange(rows) + 0.5) * h / valid_r
    xs = (torch.arange(cols) + 0.5) * w / valid_c
    maps = [torch.stack(torch.meshgrid(ys, xs, indexing="ij"))[None]]  # (1, 2, rows, cols): (y, x)
    for y0, y1, x0, x1 in [(0, 352, 0, 352), (304, 720, 928, 1280), (160, 512, 400, 1000)]:
        (crop,) = crop_dino_maps(maps, (h, w), (y0, y1, x0, x1), grid)
        rt, ct, vrt, vct = grid(y1 - y0, x1 - x0)
        assert crop.shape == (1, 2, rt, ct)
        want_y = y0 + (torch.arange(rt) + 0.5) * (y1 - y0) / vrt
        want_x = x0 + (torch.arange(ct) + 0.5) * (x1 - x0) / vct
        # inside the frame's patch-centre range the map is linear, so bilinear sampling is exact
        iy = (want_y >= ys[0]) & (want_y <= ys[-1])
        ix = (want_x >= xs[0]) & (want_x <= xs[-1])
        assert torch.allclose(crop[0, 0, iy, 0], want_y[iy], atol=1e-2)
        assert torch.allclose(crop[0, 1, 0, ix], want_x[ix], atol=1e-2)


def amplified_clip(n: int = 40, gain: float = 4.0, seed: int = 3):
    """A dark moving-camera clip whose content changes move the mean luma (a bright car crossing,
    sensor noise), and its 'enhancement': ``gain`` x the source, which multiplies those changes."""
    rng = np.random.default_rng(seed)
    base = 0.35 * scene()
    source = []
    for t in range(n):
        img = np.roll(base, 3 * t, axis=1) + rng.normal(0, 2 / 255, base.shape)
        x0 = int(5 * t) % W
        img[20:50, x0 : x0 + 30] += 0.12 * (1 + np.sin(t))  # a lamp-lit car, brightness varies
        source.append(np.clip(img, 0, 1))
    source = torch.from_numpy(np.stack(source)).permute(0, 3, 1, 2).float()
    return source, (gain * source).clamp(0, 1)


def flicker(frames: torch.Tensor) -> float:
    from vidllie.ops import luma

    return float(torch.diff(luma(frames).mean(dim=(1, 2, 3))).std())


def test_brightness_change_limiter_keeps_flicker_below_the_sources():
    source, enhanced = amplified_clip()
    free = TemporalSmoother(0.8)(enhanced)
    limited = TemporalSmoother(0.8)(enhanced, source=source)
    print(f"flicker: source {flicker(source):.4f}, enhanced {flicker(enhanced):.4f}, "
          f"smoothed {flicker(free):.4f}, limited {flicker(limited):.4f}")
    assert flicker(free) > 2 * flicker(source)  # the case the limiter exists for
    assert flicker(limited) <= flicker(source)
    # ... without losing the enhanced brightness
    assert abs(float(limited.mean()) - float(enhanced.mean())) < 0.05 * float(enhanced.mean())


def test_limiter_follows_a_light_switched_on_within_a_few_frames():
    """Source brightness steps x3 at frame 12 (a light switched on): the output follows it fully
    within persist + 2 frames instead of creeping up at the limiter's pull rate."""
    base = torch.from_numpy(0.06 * scene()).permute(2, 0, 1).float()[None]
    source = torch.cat([base] * 12 + [3 * base] * 12)
    enhanced = (5 * source).clamp(0, 1)
    out = TemporalSmoother(0.8)(enhanced, source=source)
    ratio = out.mean(dim=(1, 2, 3)) / enhanced.mean(dim=(1, 2, 3))
    assert torch.allclose(ratio[:12], torch.ones(12), atol=0.02)
    assert float(ratio[12 + 3 + 2]) > 0.95, ratio[12:].tolist()


def test_limiter_needs_matching_source_frames():
    with pytest.raises(ValueError, match="source"):
        TemporalSmoother(0.8)(torch.rand(3, 3, 8, 8), source=torch.rand(2, 3, 8, 8))


def test_held_up_brightness_does_not_blow_a_bright_surface():
    """The dashcam case (docs/benchmarks.md): a headlit surface enters the frame, the model lowers
    its exposure, the smoother holds the brightness up for a while. Its gain must not turn the
    surface (just below white in the model's output) white, and it must still lift the rest."""
    base = torch.from_numpy(0.3 * scene()).permute(2, 0, 1).float()[None]
    lit = 0.6 * base.clone()  # the model's darker exposure once the surface is there ...
    lit[..., 60:76, 100:124] = 0.93  # ... and the surface itself (4 % of the frame), unclipped
    enhanced = torch.cat([base] * 8 + [lit] * 6)
    source = torch.cat([base] * 14) / 5  # the camera: the rest of the scene as before ...
    source[8:, :, 60:76, 100:124] = 0.93 / 5  # ... and the surface
    for with_source in (False, True):
        out = TemporalSmoother(0.8)(enhanced, source=source if with_source else None)
        held = out[8:12]
        assert float(held[..., :40, :60].mean()) > 1.1 * float(lit[..., :40, :60].mean())  # held up
        surface = luma(held[..., 60:76, 100:124])
        assert float(surface.max()) < 250 / 255, float(surface.max())  # not blown
        if not with_source:  # (the limiter may scale the whole frame down: the surface raised its mean)
            assert float(surface[..., 4:-4, 4:-4].min()) >= 0.93  # not darkened (inside: the edges blend)
    # the plain gain it replaced would have blown it
    assert float((lit * 1.2).clamp(0, 1)[..., 60:76, 100:124].min()) == 1.0


def test_apply_gain_keeps_colour_and_never_clips():
    from vidllie.ops import apply_gain

    x = torch.rand(2, 3, 16, 16) * 0.98
    for g in (1.1, 1.5, 3.0):
        y = apply_gain(x, torch.tensor([g, g]))
        assert float(y.max()) < 1.0 and float(y.amax(1).min()) >= float(x.amax(1).min())
        ratio = y / x.clamp(min=1e-6)
        assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-4)  # one factor per pixel: hue kept
        dark = x.amax(1, keepdim=True) * g <= 0.5  # below the knee: the whole gain
        assert torch.allclose(y[dark.expand_as(y)], (x * g)[dark.expand_as(y)], atol=1e-6)
        assert (torch.diff(apply_gain(torch.linspace(0, 1, 101).view(1, 1, 1, -1).expand(1, 3, 1, 101),
                                      torch.tensor([g]))[0, 0, 0]) > 0).all()  # monotone
    assert torch.equal(apply_gain(x, torch.tensor([0.5, 1.0])), (x * torch.tensor([0.5, 1.0]).view(2, 1, 1, 1)))
    with pytest.raises(ValueError, match="knee"):
        apply_gain(x, torch.tensor([2.0, 2.0]), knee=1.0)
