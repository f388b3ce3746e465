"""Training layer: degradation, datasets, losses, trainer (exact resume), evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import kornia
import numpy as np
import pytest
import torch

from conftest import DINO_HIDDEN
from vidllie.errors import InputError, OutputError
from vidllie.models import ModelConfig, build_model, load_model
from vidllie.ops import linear_to_srgb, mean_luma, srgb_to_linear
from vidllie.train.codec import h264_roundtrip
from vidllie.train.datasets import (
    ClipPairs, PairedFolder, SyntheticPairs, camera_motion_clip, fixed_pair, is_held_out, load_image,
    save_image, split_images,
)
from vidllie.train.degrade import DegradeConfig, degrade, sample_degradation
from vidllie.train.evaluate import clahe_baseline, evaluate, format_table, gamma_baseline, gt_mean_align
from vidllie.train.losses import DinoContrastiveLoss, LossConfig, RestorationLoss, charbonnier, temporal_consistency
from vidllie.train.parts import lr_factor
from vidllie.train.trainer import train

# Tiny tensors on shared cores: one intra-op thread (conftest's fixture) avoids OpenMP barrier waits.
pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {
    "name": "test-tiny",
    "restormer": {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1, "heads": [1, 1, 2, 2],
                  "ffn_expansion_factor": 2.0, "pixel_unshuffle": 2},
    "dino": {"backbone": None},
    "guidance": {"levels": "none"},
}
# Every optional step off: isolates one effect at a time.
PLAIN = dict(cast_prob=0.0, defocus_prob=0.0, motion_prob=0.0, chroma_bias_prob=0.0, h264_prob=0.0)


def scene(b: int = 2, h: int = 64, w: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth, natural-looking test images (low-frequency colour fields + edges) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(b, 3, 4, 4, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    x = x + 0.25 * (torch.rand(b, 3, 1, 1, generator=g) - 0.5) * (torch.arange(w) % 16 < 8).float()
    return x.clamp(0.05, 0.95)


def make_image_folder(root: Path, n: int = 8, size: tuple[int, int] = (80, 96)) -> Path:
    for i in range(n):
        save_image(root / f"img{i:02d}", scene(1, *size, seed=i)[0])
    return root


# ---------------------------------------------------------------------------------- degradation
def test_srgb_linear_round_trip():
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-5)
    assert srgb_to_linear(torch.full((1, 3, 1, 1), 0.5))[0, 0].item() == pytest.approx(0.2140, abs=1e-3)


def test_degradation_deterministic_under_seed():
    x = scene(3)
    cfg = DegradeConfig(h264_prob=1.0, defocus_prob=0.5, motion_prob=0.5)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return degrade(x, sample_degradation(3, g, cfg), g)

    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a * 255, (a * 255).round())  # 8-bit values


def test_darker_with_lower_exposure():
    x = scene(2)
    means = []
    for e in (1 / 3, 1 / 10, 1 / 50):
        g = torch.Generator().manual_seed(0)
        cfg = DegradeConfig(exposure=(e, e), **PLAIN)
        means.append(float(mean_luma(degrade(x, sample_degradation(2, g, cfg), g)).mean()))
    assert means[0] > means[1] > means[2]
    assert means[0] < float(mean_luma(x).mean())
    # ~1/50 of the light: luma well under a tenth of the original (sRGB curve compresses it)
    assert means[2] < 0.2 * float(mean_luma(x).mean())


def test_noisier_with_fewer_photons():
    x = torch.full((1, 3, 64, 64), 0.6)

    def residual_std(photons, read):
        g = torch.Generator().manual_seed(0)
        cfg = DegradeConfig(exposure=(0.05, 0.05), photons=(photons, photons), read_noise=(read, read), **PLAIN)
        return float(degrade(x, sample_degradation(1, g, cfg), g).std())

    assert residual_std(200, 1e-4) > residual_std(2000, 1e-4) > residual_std(1e6, 1e-6)
    assert residual_std(2000, 3e-3) > residual_std(2000, 1e-4)


def _blockiness(img: torch.Tensor) -> float:
    """Mean |step| across 8-px block edges over the mean |step| inside blocks (1 = no blocking)."""
    d = (img[..., :, 1:] - img[..., :, :-1]).abs().mean(dim=(0, 1, 2))  # per column boundary
    edge = d[7::8].mean()
    inner = torch.cat([d[i::8] for i in range(7)]).mean()
    return float(edge / inner.clamp(min=1e-6))


def test_h264_pass_compresses_and_blocks():
    x = scene(1, 128, 128)
    base = dict(PLAIN, exposure=(0.03, 0.03), photons=(300, 300))
    g = torch.Generator().manual_seed(0)
    raw = degrade(x, sample_degradation(1, g, DegradeConfig(**base)), g)
    g = torch.Generator().manual_seed(0)
    coded = degrade(x, sample_degradation(1, g, DegradeConfig(**dict(base, h264_prob=1.0, crf=(38, 38)))), g)
    assert _blockiness(coded) > 1.3 * _blockiness(raw)
    # the encoder throws the noise away: far smoother than the raw noisy frame
    assert float(kornia.filters.laplacian(coded, 3).abs().mean()) < 0.5 * float(kornia.filters.laplacian(raw, 3).abs().mean())


def test_h264_roundtrip_is_deterministic_and_odd_sizes():
    frames = (np.random.default_rng(0).random((3, 33, 47, 3)) * 60).astype(np.uint8)
    a, b = h264_roundtrip(frames, 30), h264_roundtrip(frames, 30)
    assert a.shape == frames.shape and np.array_equal(a, b)
    with pytest.raises(ValueError):
        h264_roundtrip(frames.astype(np.float32), 30)


def test_colour_cast_moves_the_right_way():
    x = torch.full((1, 3, 16, 16), 0.5)
    g = torch.Generator().manual_seed(0)
    cfg = DegradeConfig(**dict(PLAIN, cast_prob=1.0, cast_strength=(0.7, 0.7), exposure=(0.3, 0.3), photons=(1e7, 1e7), read_noise=(1e-6, 1e-6)))
    params = sample_degradation(64, g, cfg)
    # every cast is luma-normalised: it changes colour, not exposure
    lum = (params.gains * torch.tensor([0.2126, 0.7152, 0.0722])).sum(1)
    assert torch.allclose(lum, torch.ones(64), atol=1e-5)
    warm = params.gains[:, 0] > params.gains[:, 2]
    assert warm.any() and (~warm).any()  # sodium/warm LED and cool LED both occur
    low = degrade(x.expand(64, -1, -1, -1), params, g)
    r, b = low[:, 0].mean(dim=(1, 2)), low[:, 2].mean(dim=(1, 2))
    assert bool(((r > b) == warm).all())


def test_clip_shares_parameters_and_has_per_frame_noise():
    still = torch.full((1, 4, 3, 32, 32), 0.5)
    g = torch.Generator().manual_seed(0)
    low = degrade(still, sample_degradation(1, g, DegradeConfig(**PLAIN)), g)
    means = low[0].mean(dim=(1, 2, 3))
    assert float(means.max() - means.min()) < 0.01  # one exposure for the whole clip
    assert not torch.equal(low[0, 0], low[0, 1])  # fresh noise every frame


def test_camera_motion_clip_moves():
    img = load_image_like()
    clip = camera_motion_clip(img, 4, 48, torch.Generator().manual_seed(3), max_shift=4.0)
    assert clip.shape == (4, 3, 48, 48)
    diffs = [(clip[t + 1] - clip[t]).abs().mean() for t in range(3)]
    assert all(d > 1e-3 for d in diffs)


def load_image_like() -> torch.Tensor:
    return (scene(1, 96, 96, seed=5)[0] * 255).round().to(torch.uint8)


# ------------------------------------------------------------------------------------- datasets
def test_lol_folder_matches_by_name(tmp_path):
    for name, value in (("a", 0.2), ("b", 0.6)):
        save_image(tmp_path / "low" / name, torch.full((3, 8, 8), value / 4))
        save_image(tmp_path / "high" / name, torch.full((3, 8, 8), value))
    save_image(tmp_path / "high" / "c", torch.zeros(3, 8, 8))
    with pytest.raises(InputError, match="without a partner"):
        PairedFolder(tmp_path)
    (tmp_path / "high" / "c.png").unlink()
    data = PairedFolder(tmp_path)
    assert len(data) == 2
    for low, high, name in data:
        assert float(high.mean()) == pytest.approx(4 * float(low.mean()), abs=0.02)
    # LOL-v2 naming: Low/low00001.png <-> Normal/normal00001.png
    v2 = tmp_path / "v2"
    save_image(v2 / "Low" / "low00001", torch.zeros(3, 8, 8))
    save_image(v2 / "Normal" / "normal00001", torch.ones(3, 8, 8))
    (low, high, key), = list(PairedFolder(v2))
    assert key == "00001" and float(high.mean()) == 1.0
    with pytest.raises(InputError, match="LOL layout"):
        PairedFolder(tmp_path / "low")


def test_held_out_split_is_fixed_by_name(tmp_path):
    for i in range(60):
        (tmp_path / "sub").mkdir(exist_ok=True)
        (tmp_path / "sub" / f"{i:03d}.jpg").write_bytes(b"")
    train1, val1 = split_images(tmp_path, 0.1)
    train2, val2 = split_images(tmp_path, 0.1)
    assert val1 == val2 and not set(train1) & set(val1) and len(train1) + len(val1) == 60
    assert all(is_held_out(p.relative_to(tmp_path).as_posix(), 0.1) for p in val1)
    assert 1 <= len(val1) <= 15


def test_synthetic_pairs_reproducible(tmp_path):
    folder = make_image_folder(tmp_path / "imgs", 4)
    data = SyntheticPairs(sorted(folder.glob("*.png")), crop=32, batch_size=3)
    a = data.batch(torch.Generator().manual_seed(1))
    b = data.batch(torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == a[1].shape == (3, 3, 32, 32)
    assert float(mean_luma(a[0]).mean()) < float(mean_luma(a[1]).mean())


# --------------------------------------------------------------------------------------- losses
def test_losses():
    x = scene(2, 32, 32)
    y = (x + 0.1).clamp(0, 1)
    assert charbonnier(x, x).item() < 1e-6
    assert charbonnier(x, y).item() == pytest.approx(float((x - y).abs().mean()), rel=0.05)
    clip = x[None].expand(2, -1, -1, -1, -1)  # (2, T=2, 3, H, W), static
    flicker = clip.clone()
    flicker[:, 1] = (flicker[:, 1] * 1.2).clamp(0, 1)
    assert temporal_consistency(clip, clip).item() == 0.0
    assert temporal_consistency(flicker, clip).item() > 0.01
    # moving content that the output follows is not penalised
    moving = torch.stack([x, x.roll(3, -1)], dim=1)
    assert temporal_consistency(moving, moving).item() == 0.0
    total, parts = RestorationLoss(LossConfig(charbonnier=1.0, ssim=0.5, temporal=1.0))(flicker, clip)
    assert set(parts) == {"charbonnier", "ssim", "temporal"} and total.item() > 0
    with pytest.raises(ValueError):
        RestorationLoss(LossConfig(dino=1.0))


def test_dino_contrastive_loss_pulls_to_target_and_pushes_from_input():
    torch.manual_seed(0)
    feats = torch.nn.Conv2d(3, 4, 4, stride=4)
    loss = DinoContrastiveLoss(lambda x: [feats(x)], layers=(0,), weights=(1.0,))
    high, low = scene(1, 32, 32), scene(1, 32, 32) * 0.1
    near, far = (high * 0.9 + low * 0.1), (high * 0.1 + low * 0.9)
    assert loss(near, high, low).item() < loss(far, high, low).item()
    pred = far.clone().requires_grad_(True)
    loss(pred, high, low).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_dino_loss_with_dinoguide_and_lora(dinov3_dir):
    from vidllie.models import DinoConfig
    from vidllie.models.dino import DinoBackbone

    config = DinoConfig(backbone=str(dinov3_dir), hidden_size=DINO_HIDDEN, patch_size=16, layers=(2, 4), short_side=32)
    dino = DinoBackbone(config)
    loss = DinoContrastiveLoss(dino, layers=(0, 1), weights=(0.5, 1.0))
    high = scene(1, 32, 48)
    low = high * 0.05
    pred = (low * 3).requires_grad_(True)
    value = loss(pred, high, low)
    value.backward()
    assert math.isfinite(value.item()) and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in dino.parameters())  # frozen
    assert loss(high, high, low).item() < 1e-6

    pytest.importorskip("peft")
    from vidllie.train.parts import build_dino

    lora_dino, params = build_dino(None, {"config": {"backbone": str(dinov3_dir), "hidden_size": DINO_HIDDEN, "patch_size": 16,
                                                      "layers": [2, 4], "short_side": 32},
                                          "lora": {"r": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj"]}},
                                   torch.device("cpu"))
    assert params and all(p.requires_grad for p in params)
    frozen = [p for n, p in lora_dino.named_parameters() if "lora_" not in n]
    assert frozen and not any(p.requires_grad for p in frozen)
    # LoRA's B starts at zero: output unchanged; gradients reach the adapters only
    loss2 = DinoContrastiveLoss(lora_dino, layers=(0, 1))
    (loss2(pred.detach() + 0.01, high, low)).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


# -------------------------------------------------------------------------------------- trainer
def test_few_steps_lower_the_loss():
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_dict(TINY)).train()
    high = scene(4, 32, 32, seed=1)
    g = torch.Generator().manual_seed(0)
    low = degrade(high, sample_degradation(4, g, DegradeConfig(**dict(PLAIN, exposure=(0.1, 0.1)))), g)
    crit = RestorationLoss(LossConfig())
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    losses = []
    for _ in range(25):
        loss, _ = crit(model(low), high)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_lr_schedule():
    assert lr_factor(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(40, 100, 10, 0.0) > lr_factor(70, 100, 10, 0.0)


def _config(images: Path, out: Path, steps: int = 6) -> dict:
    return {
        "name": "t", "model": TINY, "seed": 3, "output_dir": str(out), "device": "cpu", "steps": steps,
        "checkpoint_every": 100, "val_every": 3, "log_every": 1, "ema_decay": 0.9, "progress": False,
        "optim": {"lr": 2e-3, "warmup_steps": 2},
        "data": {"images": str(images), "val_fraction": 0.3, "crop": 32, "batch_size": 2, "val_crop": 48,
                 "val_limit": 2, "degradation": {"h264_prob": 0.5}},
    }


def test_checkpoint_resume_is_exact(tmp_path):
    from safetensors.torch import load_file

    images = make_image_folder(tmp_path / "imgs", 8)
    straight = train(_config(images, tmp_path / "a"))
    first = train(_config(images, tmp_path / "b"), stop_after=3)
    assert first["status"] == "stopped" and first["step"] == 3
    with pytest.raises(OutputError):
        train(_config(images, tmp_path / "b"))  # would overwrite the checkpoint
    resumed = train(_config(images, tmp_path / "b"), resume=True)
    assert straight["step"] == resumed["step"] == 6
    a, b = load_file(str(tmp_path / "a" / "checkpoint.safetensors")), load_file(str(tmp_path / "b" / "checkpoint.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("ema.") for k in a) and any(k.startswith("optim.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    # logs: one train row per step across the interruption, validation rows, loadable EMA export
    rows = (tmp_path / "b" / "train_log.csv").read_text().strip().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(1, 7))
    assert len((tmp_path / "b" / "val_log.csv").read_text().strip().splitlines()) == 3
    model = load_model(tmp_path / "b" / "final_ema.safetensors")
    assert torch.equal(model.state_dict()[next(iter(model.state_dict()))],
                       a["ema." + next(iter(model.state_dict()))])
    with pytest.raises(InputError):
        train(_config(images, tmp_path / "c"), resume=True)  # nothing to resume


def test_training_config_errors(tmp_path):
    with pytest.raises(InputError, match="unknown key"):
        train({"data": {"images": str(tmp_path)}, "stepz": 3})
    with pytest.raises(InputError, match="multiple of 16"):
        train({"data": {"images": str(tmp_path), "crop": 30}})


def test_default_config_is_valid():
    from vidllie.train.config import load_train_config

    repo = Path(__file__).resolve().parents[1]
    cfg = load_train_config(repo / "configs" / "train" / "default.yaml")
    assert cfg.model == "tiny-unguided" and cfg.data.crop % 16 == 0
    assert isinstance(cfg.data.degradation, DegradeConfig)


# ------------------------------------------------------------------------------------ evaluation
def test_evaluate_matches_kornia(tmp_path):
    high = scene(3, 40, 56, seed=9)
    g = torch.Generator().manual_seed(0)
    low = degrade(high, sample_degradation(3, g, DegradeConfig(h264_prob=0.0)), g)
    for i in range(3):
        save_image(tmp_path / "low" / f"{i}", low[i])
        save_image(tmp_path / "high" / f"{i}", high[i])
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_dict(TINY)).eval()
    results = evaluate(model, tmp_path, json_path=tmp_path / "r.json")
    assert results["count"] == 3 and set(results["methods"]) == {"model", "input", "gamma", "clahe"}
    data = PairedFolder(tmp_path)
    direct_in, direct_model, direct_gamma = [], [], []
    with torch.no_grad():
        for lo, hi, _ in data:
            lo, hi = lo[None], hi[None]
            direct_in.append(float(kornia.metrics.psnr(lo, hi, 1.0)))
            direct_model.append(float(kornia.metrics.psnr(model(lo).clamp(0, 1), hi, 1.0)))
            direct_gamma.append(float(kornia.metrics.psnr(kornia.enhance.adjust_gamma(lo, 0.4), hi, 1.0)))
    assert results["methods"]["input"]["psnr"] == pytest.approx(sum(direct_in) / 3, abs=1e-4)
    assert results["methods"]["model"]["psnr"] == pytest.approx(sum(direct_model) / 3, abs=1e-4)
    assert results["methods"]["gamma"]["psnr"] == pytest.approx(sum(direct_gamma) / 3, abs=1e-4)
    ssim0 = float(kornia.metrics.ssim(data[0][0][None], data[0][1][None], 11).mean())
    assert results["per_image"][0]["input"]["ssim"] == pytest.approx(ssim0, abs=1e-5)
    # GT-mean lifts a too-dark input: higher PSNR than plain
    assert results["methods"]["input"]["psnr_gt_mean"] > results["methods"]["input"]["psnr"]
    assert json.loads((tmp_path / "r.json").read_text())["methods"] == results["methods"]
    table = format_table(results)
    assert "clahe" in table and "GT-mean" in table


def test_baselines_and_gt_mean():
    low = scene(1, 32, 32) * 0.1
    assert float(gamma_baseline(low).mean()) > float(low.mean())
    out = clahe_baseline(low)
    assert out.shape == low.shape and float(out.mean()) > float(low.mean())
    aligned = gt_mean_align(low, scene(1, 32, 32))
    assert float(mean_luma(aligned)) == pytest.approx(float(mean_luma(scene(1, 32, 32))), rel=0.02)


# ----------------------------------------------------------------------------- shared (real data)
@pytest.mark.shared
def test_shared_images_split_and_pairs(shared_dir):
    root = shared_dir / "images"
    train_paths, val_paths = split_images(root, 0.1)
    assert 0.05 < len(val_paths) / (len(train_paths) + len(val_paths)) < 0.15
    assert not set(train_paths) & set(val_paths)
    name = val_paths[0].relative_to(root).as_posix()
    low, high = fixed_pair(load_image(val_paths[0]), name, 1234)
    low2, _ = fixed_pair(load_image(val_paths[0]), name, 1234)
    assert torch.equal(low, low2) and float(mean_luma(low[None])) < float(mean_luma(high[None]))


@pytest.mark.shared
def test_shared_davis_clips(shared_dir):
    seqs = sorted(p for p in (shared_dir / "frames" / "davis2016_urban_480p").iterdir() if p.is_dir())[:2]
    clips = ClipPairs(frame_dirs=seqs, frames=3, crop=64, batch_size=2)
    low, high = clips.batch(torch.Generator().manual_seed(0))
    assert low.shape == high.shape == (2, 3, 3, 64, 64)
    assert float((high[:, 1] - high[:, 0]).abs().mean()) > 0  # real motion between frames


def test_bundled_models_load():
    assert load_model("default").config.name == load_model("fast").config.name == "fast"
    model = load_model("quality")
    assert model.config.name == "tiny-unguided" and not model.config.guided
    with torch.no_grad():
        out = model(torch.full((1, 3, 48, 64), 0.03))
    assert out.shape == (1, 3, 48, 64) and float(out.mean()) > 0.03


def test_guided_training_with_dino_loss_and_lora_resumes_exactly(dinov3_dir, tmp_path):
    """A DINO-guided model, the DINO contrastive loss and LoRA adapters, interrupted and resumed."""
    pytest.importorskip("peft")
    from safetensors.torch import load_file

    images = make_image_folder(tmp_path / "imgs", 6)
    model = {
        "name": "test-guided",
        "restormer": dict(TINY["restormer"]),
        "dino": {"backbone": str(dinov3_dir), "hidden_size": DINO_HIDDEN, "patch_size": 16, "layers": [2, 4], "short_side": 32},
        "guidance": {"levels": "latent", "mode": "modulation", "dim": 8, "dropout": 0.5},
    }

    def config(out):
        cfg = _config(images, out, steps=4)
        cfg.update(model=model, loss={"dino": 0.1, "dino_layers": [0, 1], "dino_weights": [0.5, 1.0]},
                   dino={"lora": {"r": 2, "alpha": 4, "lr": 1e-3}})
        return cfg

    train(config(tmp_path / "a"))
    train(config(tmp_path / "b"), stop_after=2)
    train(config(tmp_path / "b"), resume=True)
    a, b = load_file(str(tmp_path / "a" / "checkpoint.safetensors")), load_file(str(tmp_path / "b" / "checkpoint.safetensors"))
    lora = [k for k in a if k.startswith("dino.") and "lora_B" in k]
    assert lora and any(a[k].abs().sum() > 0 for k in lora)  # the adapters trained (B starts at 0)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    header = (tmp_path / "a" / "train_log.csv").read_text().splitlines()[0]
    assert "dino" in header.split(",")


def test_interruption_saves_a_checkpoint(tmp_path, monkeypatch, capsys):
    """Ctrl-C checkpoints before stopping (SIGTERM: the next test)."""
    import signal

    from safetensors import safe_open

    from vidllie.train.datasets import SyntheticPairs

    images = make_image_folder(tmp_path / "imgs", 6)
    calls = {"n": 0}
    original = SyntheticPairs.batch

    def interrupt_on_third(self, g):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, g)

    monkeypatch.setattr(SyntheticPairs, "batch", interrupt_on_third)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        train(_config(images, tmp_path / "run", steps=10))
    assert signal.getsignal(signal.SIGTERM) is before  # handler restored
    with safe_open(str(tmp_path / "run" / "checkpoint.safetensors"), "pt") as f:
        step = int(f.metadata()["step"])
    assert step == 2  # raised inside step 3
    assert f"interrupted at step {step}: checkpoint saved" in capsys.readouterr().err


def test_sigterm_on_a_background_run_saves_a_checkpoint(tmp_path):
    """``vidllie train`` in its own process (as a background run is) gets SIGTERM mid-run: it
    checkpoints, says so in one line and exits 130. (A separate process: a signal sent to the
    test runner itself crashed it once Ray's driver and OpenVINO's threads had run there.)"""
    import signal
    import subprocess
    import sys
    import time

    import yaml
    from safetensors import safe_open

    images = make_image_folder(tmp_path / "imgs", 6)
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(images, tmp_path / "run", steps=100_000)))
    proc = subprocess.Popen([sys.executable, "-m", "vidllie", "train", "--config", str(cfg_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "run" / "train_log.csv"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 4:  # header + 3 steps logged
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    with safe_open(str(tmp_path / "run" / "checkpoint.safetensors"), "pt") as f:
        step = int(f.metadata()["step"])
    assert step >= 3
    assert f"interrupted at step {step}: checkpoint saved" in err and "Traceback" not in err


def _run_cli(args: list[str]) -> int:
    """``vidllie ARGS`` in this process; the exit status."""
    from vidllie.cli import app

    try:
        app(args, prog_name="vidllie")
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
    return 0


def test_train_command_reports_in_one_line(tmp_path, monkeypatch, capsys):
    """``vidllie train``: a bad config and an interruption end with a line and an exit code, not
    a traceback."""
    import yaml

    from vidllie.train.datasets import SyntheticPairs

    assert _run_cli(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"vidllie: error: training config not found: {tmp_path / 'missing.yaml'}"

    images = make_image_folder(tmp_path / "imgs", 6)
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(images, tmp_path / "run", steps=10)))

    def interrupt(self, g):
        raise KeyboardInterrupt

    monkeypatch.setattr(SyntheticPairs, "batch", interrupt)
    assert _run_cli(["train", "--config", str(cfg_path)]) == 130
    err = capsys.readouterr().err
    assert "interrupted at step 0: checkpoint saved" in err and "Traceback" not in err


def _write_video(path: Path, frames: int = 6) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"crf": "10"}
        for i in range(frames):
            img = np.full((48, 64, 3), 30 + 30 * i, np.uint8)
            for p in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in stream.encode(None):
            out.mux(p)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_video_window_reads_consecutive_frames(tmp_path, backend, monkeypatch):
    import builtins

    from vidllie.train.datasets import read_video_window, video_frame_count

    if backend == "decord":
        pytest.importorskip("decord")
    else:
        real_import = builtins.__import__

        def no_decord(name, *args, **kwargs):
            if name == "decord":
                raise ImportError("decord hidden for the test")
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", no_decord)
    path = tmp_path / "clip.mp4"
    _write_video(path)
    assert video_frame_count(path) == 6
    window = read_video_window(path, 2, 3)
    assert window.shape == (3, 3, 48, 64) and window.dtype == torch.uint8
    means = window.float().mean(dim=(1, 2, 3))
    assert means.tolist() == pytest.approx([90, 120, 150], abs=4)
    with pytest.raises(InputError):
        read_video_window(path, 5, 3)


def test_trainer_with_clips_adds_the_temporal_term(tmp_path):
    images = make_image_folder(tmp_path / "imgs", 6)
    seq = tmp_path / "frames" / "seq"
    base = scene(1, 64, 80, seed=2)[0]
    for t in range(5):
        save_image(seq / f"{t:05d}", base.roll(2 * t, -1))
    _write_video(tmp_path / "clip.mp4")
    cfg = _config(images, tmp_path / "run", steps=2)
    cfg["data"]["clips"] = {"frame_dirs": [str(seq.parent / "seq")], "videos": [str(tmp_path / "clip.mp4")],
                            "stills": True, "frames": 3, "crop": 32, "batch_size": 2, "every": 1}
    cfg["loss"] = {"temporal": 1.0}
    train(cfg)
    rows = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "temporal" in header
    assert all(float(r.split(",")[header.index("temporal")]) > 0 for r in rows[1:])


def test_worker_made_batches_depend_on_the_step_alone_and_resume_exactly(tmp_path):
    """data.workers > 0: batches are made ahead in worker processes, batch k from (seed, k) alone:
    one worker and two give the same weights, and a run stopped and resumed gives them too."""
    from safetensors.torch import load_file

    images = make_image_folder(tmp_path / "imgs", 8)

    def config(out, workers):
        cfg = _config(images, out)
        cfg["data"]["workers"] = workers
        cfg["data"]["clips"] = {"every": 2, "frames": 2, "crop": 32, "batch_size": 1, "stills": True}
        return cfg

    train(config(tmp_path / "one", 1))
    train(config(tmp_path / "two", 2))
    assert train(config(tmp_path / "resumed", 2), stop_after=3)["step"] == 3
    assert train(config(tmp_path / "resumed", 1), resume=True)["step"] == 6
    inline = train(config(tmp_path / "inline", 0))  # the run's own generator: other batches
    assert inline["step"] == 6
    ckpt = {name: load_file(str(tmp_path / name / "checkpoint.safetensors")) for name in ("one", "two", "resumed", "inline")}
    a = ckpt["one"]
    for name in ("two", "resumed"):
        assert all(torch.equal(a[k], ckpt[name][k]) for k in a), name
    assert not all(torch.equal(a[k], ckpt["inline"][k]) for k in a if k.startswith("model."))
    with pytest.raises(InputError, match="workers"):
        train(config(tmp_path / "bad", -1))
