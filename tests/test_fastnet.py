"""The fast network (u8 + affine output head), `quality`, `fast`, and distillation."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import DINO_HIDDEN
from test_train import PLAIN, make_image_folder, scene
from vidllie.errors import InputError
from vidllie.models import DinoBackbone, ModelConfig, build_model, load_model, variant_config
from vidllie.models.checkpoint import resolve_checkpoint
from vidllie.models.chunked import chunked_forward
from vidllie.models.info import model_macs
from vidllie.models.restormer import apply_affine
from vidllie.train.degrade import DegradeConfig, degrade, sample_degradation
from vidllie.train.losses import LossConfig, RestorationLoss, distillation
from vidllie.train.parts import init_partially
from vidllie.train.trainer import train

pytestmark = pytest.mark.usefixtures("one_thread")


def _randomize_affine(model) -> None:
    """The affine head, the detail branch and the global context are zero-initialised (identity);
    give them weights that matter."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.restormer.affine.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        if model.restormer.detail is not None:
            for p in model.restormer.detail.out.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        if model.restormer.global_context is not None:
            for p in model.restormer.global_context.fc2.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def _guided_fast(dinov3_dir: str) -> ModelConfig:
    """fast-guided with the tiny random DINOv3 of conftest instead of ViT-S/16."""
    config = variant_config("fast-guided")
    return dataclasses.replace(config, dino=dataclasses.replace(
        config.dino, backbone=dinov3_dir, hidden_size=DINO_HIDDEN, layers=(2, 4), short_side=64))


def test_fast_variants_build_and_run_on_odd_sizes():
    for name in ("fast", "fast-guided"):
        model = build_model(name).eval()
        assert model.size_multiple == 64 and model.config.restormer.output_head == "affine"
        x = torch.rand(2, 3, 37, 53)
        with torch.inference_mode():
            y = model(x)
        assert y.shape == x.shape and torch.isfinite(y).all()
    # ~4.1x fewer MACs (1.77 vs 7.2 G) than the quality network at 640x360 (counted, not estimated);
    # at these widths the CPU time is memory-bound per-pixel work, not MACs (docs/benchmarks.md)
    assert model_macs(variant_config("fast"), 360, 640) < model_macs(variant_config("tiny-unguided"), 360, 640) / 4


def test_fast_keeps_the_callers_memory_layout():
    """Channels-last in, channels-last out (the pipeline's layout): a strided channels-first view
    made every later stage several times slower."""
    model = build_model("fast").eval()
    # 90 rows are padded to 128 inside (like 360 -> 384) and cropped back: the crop of a
    # channels-last map keeps it contiguous when only rows are cut (batch 1)
    x = torch.rand(1, 3, 90, 192).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        y = model(x)
        z = model(x.contiguous())
        odd = model(torch.rand(1, 3, 90, 160).contiguous(memory_format=torch.channels_last))
    assert y.is_contiguous(memory_format=torch.channels_last) and torch.allclose(y, z, atol=1e-5)
    assert odd.stride(1) == 1  # channels innermost even when both sides were cropped


def test_bundled_fast_model_loads_and_enhances():
    model = load_model("fast").eval()
    assert model.config.name == "fast" and model.config.restormer.dim == 24
    x = torch.rand(1, 3, 64, 96) * 0.1  # a dark frame
    with torch.inference_mode():
        y = model(x).clamp(0, 1)
    assert float(y.mean()) > 2 * float(x.mean())  # it brightens


def test_affine_head_starts_as_the_identity_and_then_acts_per_pixel():
    torch.manual_seed(0)
    fast = build_model("fast").eval()
    residual_config = dataclasses.replace(fast.config, restormer=dataclasses.replace(fast.config.restormer, output_head="residual"))
    residual = build_model(residual_config).eval()
    state = {k: v for k, v in fast.state_dict().items() if not k.startswith("restormer.affine.")}
    residual.load_state_dict(state)  # same parameter names apart from the head
    x = torch.rand(1, 3, 40, 72)
    with torch.inference_mode():
        assert torch.equal(fast(x), residual(x))
        _randomize_affine(fast)
        assert (fast(x) - residual(x)).abs().max() > 1e-2
    # the transform itself: a gain of 2 on every channel doubles the image
    coeffs = torch.zeros(1, 12, 4, 5)
    coeffs[:, [0, 4, 8]] = 1.0
    assert torch.allclose(apply_affine(coeffs, x[..., :4, :5]), 2 * x[..., :4, :5])
    with pytest.raises(ValueError, match="affine"):
        variant_config("fast").restormer.__class__(in_channels=4, out_channels=4, output_head="affine")


def test_existing_variants_and_bundled_weights_are_unchanged():
    # No new parameter, residual head: the bundled file loads strictly (load_model checks) and
    # its config reads back with the residual head.
    model = load_model("quality")
    assert model.config.restormer.output_head == "residual"
    assert not any("affine" in k for k in model.state_dict())
    for name in ("tiny", "tiny-unguided", "small", "restormer"):
        assert variant_config(name).restormer.output_head == "residual"


def test_default_is_the_fast_network_and_quality_is_kept_by_name():
    assert resolve_checkpoint("default") == resolve_checkpoint("fast")
    assert resolve_checkpoint("quality") != resolve_checkpoint("default")
    assert load_model("quality").config.name == "tiny-unguided"
    assert load_model("default").config.restormer.output_head == "affine"


def test_fast_guided_runs_with_dino_and_equals_fast_at_init(dinov3_dir):
    config = _guided_fast(dinov3_dir)
    torch.manual_seed(0)
    guided = build_model(config).eval()
    plain = build_model("fast").eval()
    plain.load_state_dict({k: v for k, v in guided.state_dict().items() if k.startswith("restormer.")})
    _randomize_affine(guided)
    _randomize_affine(plain)
    dino = DinoBackbone(config.dino)
    x = torch.rand(1, 3, 45, 83) * 0.2
    with torch.inference_mode():
        maps = dino(x)
        assert torch.equal(guided(x, dino_maps=maps), plain(x))  # zero-initialised guidance
        for p in guided.guidance.blocks["latent"].proj_out.parameters():
            p.normal_(0, 0.1)
        y = guided(x, dino_maps=maps)
    assert y.shape == x.shape and (y - plain(x)).abs().max() > 1e-3  # the guidance acts


@pytest.mark.parametrize("guided", [False, True])
def test_fast_chunked_equals_whole_frame(guided, dinov3_dir):
    torch.manual_seed(0)
    model = build_model(_guided_fast(dinov3_dir) if guided else "fast").eval()
    _randomize_affine(model)
    x = torch.rand(1, 3, 70, 101) * 0.3
    maps = DinoBackbone(model.config.dino)(x) if guided else None
    if guided:
        with torch.no_grad():
            for p in model.guidance.blocks["latent"].proj_out.parameters():
                p.normal_(0, 0.1)
    with torch.inference_mode():
        want = model(x, dino_maps=maps)
        got = chunked_forward(model, x, dino_maps=maps, chunk=8)
    assert (got - want).abs().max().item() <= 1e-4


def test_distillation_term():
    target = scene(2, 16, 16)
    teacher = torch.stack([target[0], target[1] * 0.2])  # right on sample 0, far off on sample 1
    pred = torch.zeros_like(target, requires_grad=True)
    everything, gated = distillation(pred, teacher, target), distillation(pred, teacher, target, min_psnr=25.0)
    assert gated.item() == pytest.approx(distillation(pred[:1], teacher[:1], target[:1]).item(), rel=1e-6)
    assert everything.item() < gated.item()  # sample 1's teacher is darker, closer to the zero prediction
    assert distillation(pred, teacher * 0, target, min_psnr=25.0).item() == 0.0  # no sample qualifies
    gated.backward()
    assert pred.grad[0].abs().sum() > 0 and pred.grad[1].abs().sum() == 0
    crit = RestorationLoss(LossConfig(teacher=0.5, teacher_min_psnr=25.0))
    total, parts = crit(pred.detach(), target, teacher=teacher)
    assert sorted(parts) == ["charbonnier", "ssim", "teacher"] and parts["teacher"] == pytest.approx(0.5 * gated.item())
    with pytest.raises(ValueError, match="teacher"):
        crit(pred.detach(), target)


def test_fast_head_lowers_the_loss_in_a_few_steps():
    torch.manual_seed(0)
    config = variant_config("fast")
    config = dataclasses.replace(config, restormer=dataclasses.replace(
        config.restormer, dim=8, num_blocks=(1, 1, 1, 1), heads=(1, 1, 2, 2)))
    model = build_model(config).train()
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


def _fast_config(images, out, steps: int = 4) -> dict:
    return {
        "name": "fast-smoke", "model": "fast", "teacher": "quality", "seed": 5, "output_dir": str(out),
        "device": "cpu", "steps": steps, "checkpoint_every": 100, "val_every": 100, "log_every": 1, "progress": False,
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        "data": {"images": str(images), "val_fraction": 0.3, "crop": 64, "batch_size": 2, "val_limit": 1, "val_crop": 64,
                 "degradation": {"h264_prob": 0.0, "light_prob": 0.5, "mono_prob": 0.2}},
        "loss": {"teacher": 0.5, "teacher_min_psnr": 15.0},
    }


def test_fast_training_with_a_teacher_resumes_exactly(tmp_path):
    images = make_image_folder(tmp_path / "imgs", 6)
    straight = train(_fast_config(images, tmp_path / "a"))
    assert train(_fast_config(images, tmp_path / "b"), stop_after=2)["step"] == 2
    resumed = train(_fast_config(images, tmp_path / "b"), resume=True)
    assert straight["step"] == resumed["step"] == 4
    a, b = load_file(str(tmp_path / "a" / "checkpoint.safetensors")), load_file(str(tmp_path / "b" / "checkpoint.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any("teacher" in k for k in a)  # the frozen teacher is not part of the state
    rows = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert all("teacher" in r for r in rows if r["kind"] == "train")
    assert load_model(tmp_path / "a" / "final_ema.safetensors").config.name == "fast"
    with pytest.raises(InputError, match="teacher"):
        train({**_fast_config(images, tmp_path / "c"), "teacher": None})


def test_fast_training_config_is_valid():
    from pathlib import Path

    from vidllie.train.config import load_train_config

    folder = Path(__file__).resolve().parents[1] / "configs" / "train"
    base = load_train_config(folder / "fast.yaml")
    nightlight = load_train_config(folder / "fast-nightlight.yaml")
    assert base.model == "fast-base" and base.init_from is None
    assert base.data.degradation == nightlight.data.degradation
    assert base.data.degradation.light_prob > 0 and base.data.degradation.mono_prob > 0
    size = build_model("fast").size_multiple
    assert base.data.crop % size == 0  # no padding inside
    # Stage 2: the network with the detail branch from stage 1's weights, the same data with less night light.
    detail = load_train_config(folder / "fast-detail.yaml")
    assert detail.model == "fast-detail" and detail.init_from == f"{base.output_dir}/final_ema.safetensors"
    assert detail.data.crop % size == 0 and detail.data.images == base.data.images
    assert 0 < detail.data.degradation.light_prob < base.data.degradation.light_prob
    assert detail.data.degradation.chroma_bias_hue_prob > 0 and base.data.degradation.chroma_bias_hue_prob == 0
    assert detail.data.degradation.ambient_kelvin[0] < 6500 <= base.data.degradation.ambient_kelvin[0]
    same = dict(light_prob=base.data.degradation.light_prob, chroma_bias_hue_prob=0.0,
                ambient_kelvin=base.data.degradation.ambient_kelvin)
    assert dataclasses.replace(detail.data.degradation, **same) == base.data.degradation
    # Stage 3: the same network from stage 2's weights, more global exposure, zero-mean shadow tints.
    stage3 = load_train_config(folder / "fast-stage3.yaml")
    assert stage3.model == "fast-detail" and stage3.init_from == f"{detail.output_dir}/final_ema.safetensors"
    assert stage3.output_dir not in (base.output_dir, detail.output_dir)
    d3 = stage3.data.degradation
    assert 0 < d3.light_prob < detail.data.degradation.light_prob and 0 < d3.mono_prob
    assert d3.chroma_bias_hue_prob == 1.0 and d3.ambient_tint[0] < 0 < d3.ambient_tint[1]
    same = dict(light_prob=d3.light_prob, mono_prob=d3.mono_prob, chroma_bias_hue_prob=1.0, ambient_tint=d3.ambient_tint)
    assert dataclasses.replace(detail.data.degradation, **same) == d3
    # Stage 4: the fast network (+ global context) from stage 3's weights, stage 3's data.
    stage4 = load_train_config(folder / "fast-stage4.yaml")
    assert stage4.model == "fast" and stage4.init_from == f"{stage3.output_dir}/final_ema.safetensors"
    assert stage4.output_dir not in (base.output_dir, detail.output_dir, stage3.output_dir)
    assert stage4.data == stage3.data and stage4.loss == stage3.loss
    assert variant_config("fast").restormer == dataclasses.replace(variant_config("fast-detail").restormer, global_context=64)
    # Stage 5: the same network from stage 4's weights, stage 4's data with symmetric colour priors.
    stage5 = load_train_config(folder / "fast-stage5.yaml")
    assert stage5.model == "fast" and stage5.init_from == f"{stage4.output_dir}/final_ema.safetensors"
    assert stage5.output_dir not in (base.output_dir, detail.output_dir, stage3.output_dir, stage4.output_dir)
    d5 = stage5.data.degradation
    assert d5.cast_mirror_prob == 0.5 and d5.scene_hue_prob == 0.5
    assert dataclasses.replace(d5, cast_mirror_prob=0.0, scene_hue_prob=0.0) == stage4.data.degradation
    assert dataclasses.replace(stage5.data, degradation=stage4.data.degradation) == stage4.data
    assert stage5.loss == stage4.loss
    # Stage 6: more steps on stage 5's data, from stage 5's weights.
    stage6 = load_train_config(folder / "fast-stage6.yaml")
    assert stage6.model == "fast" and stage6.init_from == f"{stage5.output_dir}/final_ema.safetensors"
    assert stage6.output_dir not in (stage4.output_dir, stage5.output_dir)
    assert stage6.data == stage5.data and stage6.loss == stage5.loss and stage6.steps > stage5.steps


def test_detail_branch_starts_at_zero_and_then_corrects_per_pixel():
    torch.manual_seed(0)
    base = build_model("fast-base").eval()
    fast = build_model("fast-detail").eval()
    assert base.restormer.detail is None and fast.restormer.detail is not None
    _randomize_affine(base)
    fresh = init_partially(fast, base, "base")
    assert fresh and all(k.startswith("restormer.detail.") for k in fresh)
    x = torch.rand(1, 3, 70, 101) * 0.3
    with torch.inference_mode():
        assert torch.equal(fast(x), base(x))  # a started network computes exactly its source
        _randomize_affine(fast)
        diff = fast(x) - base(x)
    # The correction is per pixel (full resolution): neighbouring pixels differ, not 2x2 blocks.
    assert diff.abs().max() > 1e-2
    assert (diff[..., 0::2, :] - diff[..., 1::2, :]).abs().mean() > 1e-3
    # It costs MACs at 1/2 resolution only, and memory in the planner's estimate.
    assert model_macs(fast.config, 360, 640) - model_macs(base.config, 360, 640) < 0.55e9
    assert fast.activation_bytes_per_pixel(4) > base.activation_bytes_per_pixel(4)


def test_global_context_starts_at_zero_and_then_sees_the_whole_frame():
    torch.manual_seed(0)
    source = build_model("fast-detail").eval()
    _randomize_affine(source)
    fast = build_model("fast").eval()
    fresh = init_partially(fast, source, "fast-detail")
    assert fresh and all(k.startswith("restormer.global_context.") for k in fresh)
    x = torch.rand(1, 3, 128, 256) * 0.2
    far = x.clone()
    far[..., 64:] *= 3  # brighter lower half: far outside the receptive field of the top-left corner
    with torch.inference_mode():
        assert torch.equal(fast(x), source(x))  # a started network computes exactly its source
        _randomize_affine(fast)
        # The brighter lower half changes the top-left 8x8 block through the branch too (MDTA's
        # channel attention already mixes frame-wide statistics into every pixel, more weakly).
        through_branch = (fast(far) - fast(x)) - (source(far) - source(x))
        branch = fast.restormer.global_context
        features, image = torch.rand(2, 192, 2, 4), torch.rand(2, 3, 128, 256)
        offsets, darker = branch(features, image), branch(features, image * 0.1)
    assert through_branch[..., :8, :8].abs().max() > 1e-3
    assert offsets.shape == (2, 192, 1, 1) and (offsets - darker).abs().max() > 1e-3  # it reads the exposure
    # Almost free: under 1 % of the network's MACs at 640x360.
    assert model_macs(variant_config("fast"), 360, 640) < 1.01 * model_macs(variant_config("fast-detail"), 360, 640)


def test_init_from_accepts_only_parts_that_start_as_the_identity(dinov3_dir):
    fast = build_model("fast")
    init_partially(build_model(_guided_fast(dinov3_dir)), fast, "fast")  # + zero-initialised guidance
    with pytest.raises(InputError, match="does not fit"):
        init_partially(fast, build_model("tiny-unguided"), "tiny")  # other shapes and names
    partial = build_model("fast-base")
    del partial.restormer.refinement  # a body part missing from the source is refused
    with pytest.raises(InputError, match="missing"):
        init_partially(build_model("fast-base"), partial, "partial")


# ------------------------------------------------------------- the exposure analysis (scripts/)
def test_exposure_analysis_helpers():
    """`train_fast.py exposure`: the log exposure error, the frame-wide statistics it probes and the
    ridge fit that probes them."""
    import math
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import train_fast

    target = torch.rand(2, 3, 16, 24) * 0.4
    err = train_fast._log_exposure_error(target * torch.tensor([2.0, 0.5]).view(2, 1, 1, 1), target)
    assert torch.allclose(err, torch.tensor([math.log(2.0), math.log(0.5)]), atol=1e-5)

    model = load_model("fast").eval()
    low = torch.rand(2, 3, 64, 96) * 0.1
    out, stats = train_fast._global_statistics(model, low)
    with torch.no_grad():
        assert torch.equal(out, model(low).float().clamp(0, 1))  # the hook changes nothing
    latent = 8 * model.config.restormer.dim
    assert stats.shape == (2, 2 * latent + 3 + 4 + 1) and bool(torch.isfinite(stats).all())
    assert not model.restormer.latent._forward_hooks  # removed again

    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.0, 0.5, 0.0]) + 0.3
    w = train_fast._ridge(x, y, 1e-6)
    assert torch.allclose(w, torch.tensor([1.0, -2.0, 0.0, 0.5, 0.0, 0.3]), atol=1e-4)
    assert train_fast._ridge(x, y, 1e6)[:5].abs().max() < 0.01  # strong ridge: a constant
