"""Models: Restormer, DINO loading (tiny random DINOv3/DINOv2 through from_pretrained), guidance,
checkpoints and info. Everything is tiny: the file runs in seconds on 2 CPU cores."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from conftest import DINO_HIDDEN, randomize_guidance, tiny_dinov3_config
from transformers import (
    DINOv3ViTModel,
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
)

from vidllie.errors import WeightsError
from vidllie.models import (
    DinoConfig,
    GuidanceConfig,
    ModelConfig,
    Restormer,
    RestormerConfig,
    build_model,
    load_model,
    save_model,
    variant_config,
    variant_names,
)
from vidllie.models.dino import DinoBackbone, dino_grid
from vidllie.models.guidance import GuideGeometry
from vidllie.models.info import describe, format_info, model_macs

HIDDEN = DINO_HIDDEN
LAYERS = (2, 4)
SHORT_SIDE = 32  # DINO input of a 67x131 frame: 32x63, padded to the patch multiple


pytestmark = pytest.mark.usefixtures("one_thread")


def _save(tmp_path_factory, name: str, model_cls, config) -> str:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(name)
    model_cls(config).save_pretrained(folder)
    return str(folder)


def _v2_kwargs() -> dict:
    return dict(hidden_size=HIDDEN, num_hidden_layers=4, num_attention_heads=2, mlp_ratio=2, patch_size=14, image_size=28)


@pytest.fixture(scope="session")
def dinov3_noreg_dir(tmp_path_factory) -> str:
    return _save(tmp_path_factory, "dinov3_noreg", DINOv3ViTModel, tiny_dinov3_config(0))


@pytest.fixture(scope="session")
def dinov2_dir(tmp_path_factory) -> str:
    return _save(tmp_path_factory, "dinov2", Dinov2Model, Dinov2Config(**_v2_kwargs()))


@pytest.fixture(scope="session")
def dinov2_reg_dir(tmp_path_factory) -> str:
    config = Dinov2WithRegistersConfig(**_v2_kwargs(), num_register_tokens=4)
    return _save(tmp_path_factory, "dinov2_reg", Dinov2WithRegistersModel, config)


def tiny_config(backbone: str | None, levels: str = "latent", mode: str = "modulation", patch: int = 16, **guidance) -> ModelConfig:
    return ModelConfig(
        name="test",
        restormer=RestormerConfig(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2)),
        dino=DinoConfig(backbone=backbone, hidden_size=HIDDEN, patch_size=patch, layers=LAYERS, short_side=SHORT_SIDE),
        guidance=GuidanceConfig(levels=levels, mode=mode, dim=16, **guidance),
    )


def frames(b: int = 2, h: int = 67, w: int = 131, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 0.2  # low light


# ---------------------------------------------------------------- Restormer and variants


def test_default_restormer_has_paper_parameter_count():
    with torch.device("meta"):
        n = sum(p.numel() for p in Restormer(RestormerConfig()).parameters())
    assert abs(n - 26.13e6) / 26.13e6 <= 0.005, n


def test_variants_sizes_and_dino_named():
    assert {"tiny", "tiny-unguided", "small", "restormer"} <= set(variant_names())
    counts = {}
    for name in ("tiny", "tiny-unguided", "small", "restormer"):
        config = variant_config(name)
        with torch.device("meta"):
            model = build_model(config)
        counts[name] = sum(p.numel() for p in model.parameters())
        if name == "tiny-unguided":
            assert model.guidance is None and not config.guided
        else:
            assert config.guided and config.dino.backbone and config.guidance.levels in ("latent", "multiscale")
            assert sum(p.numel() for p in model.guidance.parameters()) > 0
    assert counts["tiny"] <= 1.5e6  # guidance layers included
    assert counts["tiny-unguided"] < counts["tiny"] < counts["small"] < counts["restormer"]


# ---------------------------------------------------------------- DINO backbone


@pytest.mark.parametrize("fixture,registers,patch", [
    ("dinov3_dir", 4, 16), ("dinov3_noreg_dir", 0, 16), ("dinov2_dir", 0, 14), ("dinov2_reg_dir", 4, 14),
])
def test_dino_maps_are_normalised_patch_tokens(request, fixture, registers, patch):
    folder = request.getfixturevalue(fixture)
    dino = DinoBackbone(tiny_config(folder, patch=patch).dino)
    assert dino.num_prefix_tokens == 1 + registers
    x = frames()
    maps = dino(x)
    rows, cols, _, _ = dino_grid(67, 131, SHORT_SIDE, patch)
    assert [tuple(m.shape) for m in maps] == [(2, HIDDEN, rows, cols)] * len(LAYERS)
    # Independent reading of the same tokens: final norm applied, CLS + registers dropped.
    out = dino.backbone(pixel_values=dino.preprocess(x), output_hidden_states=True)
    norm = dino.final_norm()
    for layer, m in zip(LAYERS, maps):
        tokens = norm(out.hidden_states[layer])[:, 1 + registers :]
        assert torch.equal(m, tokens.transpose(1, 2).reshape(2, HIDDEN, rows, cols))
    # The last layer's map is the model's own last_hidden_state (normalised) patch tokens.
    last = out.last_hidden_state[:, 1 + registers :].transpose(1, 2).reshape(2, HIDDEN, rows, cols)
    torch.testing.assert_close(maps[-1], last)


def test_register_count_does_not_change_map_shapes(dinov3_dir, dinov3_noreg_dir):
    x = frames()
    with_reg = DinoBackbone(tiny_config(dinov3_dir).dino)(x)
    without = DinoBackbone(tiny_config(dinov3_noreg_dir).dino)(x)
    assert [m.shape for m in with_reg] == [m.shape for m in without]


def test_dino_preprocessing_geometry(dinov3_dir, dinov2_dir):
    x = frames()
    v3 = DinoBackbone(tiny_config(dinov3_dir).dino)
    v2 = DinoBackbone(tiny_config(dinov2_dir, patch=14).dino)
    assert v3.preprocess(x).shape[-2:] == (32, 64)  # 32x63 padded to 16
    assert v2.preprocess(x).shape[-2:] == (42, 70)  # 32x63 padded to 14
    # gamma 0.4 then ImageNet normalisation, checked on a flat grey frame (no resize needed)
    flat = torch.full((1, 3, SHORT_SIDE, SHORT_SIDE), 0.1)
    got = v3.preprocess(flat)[0, :, 0, 0]
    want = (0.1**0.4 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(got, want)


def test_dino_is_frozen_and_stays_eval(dinov3_dir):
    config = tiny_config(dinov3_dir)
    dino = DinoBackbone(config.dino)
    parent = torch.nn.ModuleDict({"dino": dino})
    parent.train()
    assert not dino.training and not any(m.training for m in dino.modules())
    assert not any(p.requires_grad for p in dino.parameters())
    x = frames(1)
    maps = dino(x)
    assert not any(m.requires_grad for m in maps)
    # The guided network never holds DINO weights.
    model = build_model(config)
    assert not any(k.startswith(("dino", "backbone")) or ".backbone." in k for k in model.state_dict())
    n_dino = sum(p.numel() for p in dino.parameters())
    assert sum(p.numel() for p in model.parameters()) < n_dino + sum(p.numel() for p in model.restormer.parameters())


def test_dino_loads_by_hub_id_from_the_cache_offline(tmp_path, monkeypatch, dinov3_dir):
    # The layout `huggingface-cli download` leaves in the HF cache; HF_HUB_OFFLINE=1 (conftest).
    import huggingface_hub.constants

    repo = tmp_path / "models--vidllie-test--tiny-dinov3"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (snapshot / name).write_bytes(Path(dinov3_dir, name).read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    cached = DinoBackbone(tiny_config("vidllie-test/tiny-dinov3").dino)
    local = DinoBackbone(tiny_config(dinov3_dir).dino)
    x = frames(1)
    assert all(torch.equal(a, b) for a, b in zip(cached(x), local(x)))


def test_dino_features_backpropagate_to_the_input(dinov3_dir):
    # For perceptual losses: finite gradients to the frames, also at 0 and below (x**0.4 has an
    # infinite slope at 0), none to the frozen backbone; forward() itself records no graph.
    dino = DinoBackbone(tiny_config(dinov3_dir).dino)
    x = frames(1).clone()
    x[..., :4, :4] = 0.0
    x[..., 4:8, :4] = -0.1
    x.requires_grad_(True)
    assert not any(m.requires_grad for m in dino(x))
    sum(m.square().mean() for m in dino.features(x)).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in dino.parameters())


def test_missing_dino_weights_give_one_clear_line(tmp_path, dinov3_dir):
    with pytest.raises(WeightsError) as err:
        DinoBackbone(tiny_config(str(tmp_path / "no-such-folder")).dino)
    msg = str(err.value)
    assert "no-such-folder" in msg and "--dino PATH" in msg and "--dino none" in msg and "\n" not in msg

    # An uncached hub id with HF_HUB_OFFLINE=1 (set by conftest).
    with pytest.raises(WeightsError) as err:
        DinoBackbone(tiny_config("facebook/dinov3-vits16-vidllie-test-missing").dino)
    msg = str(err.value)
    assert "facebook/dinov3-vits16-vidllie-test-missing" in msg and "huggingface-cli login" in msg
    assert "licence" in msg and "--dino PATH" in msg and "\n" not in msg

    # A folder without safetensors weights (pickles are never loaded).
    (tmp_path / "config_only").mkdir()
    (tmp_path / "config_only" / "config.json").write_text(Path(dinov3_dir, "config.json").read_text())
    with pytest.raises(WeightsError, match="config_only"):
        DinoBackbone(tiny_config(str(tmp_path / "config_only")).dino)

    # A backbone of another width than the model was built for.
    wrong = dataclasses.replace(tiny_config(dinov3_dir).dino, hidden_size=64)
    with pytest.raises(WeightsError, match="hidden size 32"):
        DinoBackbone(wrong)


def test_unreachable_hub_fails_fast_without_retry_noise(monkeypatch, capfd):
    """Online mode but no network: one line at once, not a minute of hub retry warnings."""
    import time

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # closed loopback port
    t0 = time.perf_counter()
    with pytest.raises(WeightsError) as err:
        DinoBackbone(tiny_config("facebook/dinov3-vits16-vidllie-test-missing").dino)
    assert time.perf_counter() - t0 < 10
    msg = str(err.value)
    assert "unreachable" in msg and "--dino PATH" in msg and "\n" not in msg
    assert "Retrying" not in capfd.readouterr().err


# ---------------------------------------------------------------- guided network


@pytest.mark.parametrize("levels,mode", [("latent", "modulation"), ("multiscale", "modulation"),
                                         ("latent", "cross_attention"), ("multiscale", "cross_attention")])
def test_guided_equals_plain_restormer_at_init(dinov3_dir, levels, mode):
    torch.manual_seed(0)
    config = tiny_config(dinov3_dir, levels, mode)
    model = build_model(config).eval()
    plain = Restormer(config.restormer).eval()
    plain.load_state_dict(model.restormer.state_dict())
    x = frames()
    maps = DinoBackbone(config.dino)(x)
    with torch.no_grad():
        guided = model(x, dino_maps=maps)
        assert torch.equal(guided, plain(x))
        # and the guidance really is wired in: non-zero output projections change the result
        randomize_guidance(model, scale=0.1)
        assert not torch.allclose(model(x, dino_maps=maps), guided)


@pytest.mark.parametrize("fixture,patch,levels,mode", [
    ("dinov3_dir", 16, "multiscale", "modulation"),
    ("dinov2_dir", 14, "latent", "cross_attention"),
    ("dinov2_reg_dir", 14, "multiscale", "cross_attention"),
])
def test_odd_sizes_and_batch_equals_per_frame(request, fixture, patch, levels, mode):
    torch.manual_seed(0)
    config = tiny_config(request.getfixturevalue(fixture), levels, mode, patch=patch)
    dino = DinoBackbone(config.dino)
    model = build_model(config).eval()
    randomize_guidance(model, scale=0.1)
    x = frames(2, 67, 131)
    with torch.no_grad():
        maps = dino(x)
        out = model(x, dino_maps=maps)
        assert out.shape == x.shape and torch.isfinite(out).all()
        for i in range(2):
            single_maps = dino(x[i : i + 1])
            for a, b in zip(single_maps, maps):
                torch.testing.assert_close(a, b[i : i + 1], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(model(x[i : i + 1], dino_maps=single_maps), out[i : i + 1], rtol=1e-5, atol=1e-5)


def test_guidance_maps_align_with_frame_pixels():
    # A DINO map whose value is each token's horizontal centre (as a fraction of the frame) must
    # come back, at every level pixel, as that pixel's own horizontal position: bilinear
    # resampling and the symmetric blur both preserve a linear ramp away from the borders.
    h, w, short, p = 67, 131, 32, 16
    rows, cols, _, valid_cols = dino_grid(h, w, short, p)
    geo = GuideGeometry(rows, cols, (h, w), short, p, unshuffle=1)
    ramp = ((torch.arange(cols) + 0.5) / valid_cols).view(1, 1, 1, cols).expand(1, 1, rows, cols).contiguous()
    lh, lw = 72 // 2, 136 // 2  # enc2 of the padded 72x136 input
    out = geo.to_level(ramp, lh, lw, "enc2")[0, 0, lh // 2]
    xs = (torch.arange(lw) + 0.5) * 2 / w
    inside = (xs > 1.5 / valid_cols) & (xs < (cols - 1.5) / valid_cols)
    assert inside.sum() > 10
    torch.testing.assert_close(out[inside], xs[inside].float(), rtol=0, atol=1e-4)


def test_tile_guidance_is_the_crop_of_the_frame_guidance(dinov3_dir):
    # A tile placed with its offset sees the same DINO guidance as that crop of the whole frame
    # (away from the tile's border, where the blur is clamped differently).
    h, w, short, p = 360, 640, 448, 16
    rows, cols, _, _ = dino_grid(h, w, short, p)
    tokens = torch.rand(1, 4, rows, cols, generator=torch.Generator().manual_seed(0))
    full = GuideGeometry(rows, cols, (h, w), short, p, unshuffle=1).to_level(tokens, h // 2, w // 2, "enc2")
    top, left, th, tw = 64, 128, 120, 160  # frame pixels; enc2 halves them
    tile = GuideGeometry(rows, cols, (h, w), short, p, unshuffle=1, offset=(top, left)).to_level(tokens, th // 2, tw // 2, "enc2")
    r = 7  # blur radius at this level (sigma ~3.2, kernel 15)
    crop = full[..., top // 2 : (top + th) // 2, left // 2 : (left + tw) // 2]
    torch.testing.assert_close(tile[..., r:-r, r:-r], crop[..., r:-r, r:-r], rtol=0, atol=1e-5)
    # and through the model: a "tile" that is the whole frame is the plain guided call
    config = tiny_config(dinov3_dir, "multiscale")
    model = build_model(config).eval()
    randomize_guidance(model, scale=0.1)
    x = frames(1)
    maps = DinoBackbone(config.dino)(x)
    with torch.no_grad():
        assert torch.equal(model(x, maps, region=(0, 0, 67, 131)), model(x, maps))
        assert model(x[..., 16:, 32:], maps, region=(16, 32, 67, 131)).shape == (1, 3, 51, 99)


def test_upsampled_guidance_has_no_patch_blocks():
    # Random tokens on a 360x640 frame seen at enc2 (a patch is ~6.4 level pixels): neighbouring
    # level pixels may differ by only a fraction of a token-to-token step. Nearest-neighbour
    # upsampling jumps by the full step at patch borders, plain bilinear still by ~1/6.4 of it.
    h, w, short, p = 360, 640, 448, 16
    rows, cols, _, _ = dino_grid(h, w, short, p)
    geo = GuideGeometry(rows, cols, (h, w), short, p, unshuffle=1)
    tokens = torch.rand(1, 4, rows, cols, generator=torch.Generator().manual_seed(0))
    out = geo.to_level(tokens, h // 2, w // 2, "enc2")
    step = max(tokens.diff(dim=-1).abs().max(), tokens.diff(dim=-2).abs().max())
    jump = max(out.diff(dim=-1).abs().max(), out.diff(dim=-2).abs().max())
    assert jump < 0.12 * step, (jump, step)  # bilinear alone: ~0.15, nearest: 1.0


def test_gradients_flow_to_guidance_not_dino(dinov3_dir):
    torch.manual_seed(0)
    config = tiny_config(dinov3_dir, "multiscale")
    dino = DinoBackbone(config.dino)
    model = build_model(config).train()
    x, target = frames(2, 40, 48), frames(2, 40, 48, seed=1) * 4
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step():
        opt.zero_grad()
        loss = (model(x, dino_maps=dino(x)) - target).abs().mean()
        loss.backward()
        return loss

    step()
    assert all(p.grad is None for p in dino.parameters())
    # Zero init: on the first step only the zero-initialised output projections can learn (every
    # other guidance parameter sits behind a zero weight, so its gradient is exactly zero).
    for name, p in model.guidance.named_parameters():
        if ".proj_out." in name:
            assert p.grad.abs().sum() > 0, name
        else:
            assert torch.count_nonzero(p.grad) == 0, name
    assert all(p.grad.abs().sum() > 0 for p in model.restormer.parameters() if p.requires_grad)
    opt.step()
    step()  # now proj_out != 0: the whole guidance path receives gradient
    for name, p in model.guidance.named_parameters():
        assert p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in dino.parameters())


def test_few_steps_reduce_loss(dinov2_reg_dir):
    torch.manual_seed(0)
    config = tiny_config(dinov2_reg_dir, "latent", patch=14)
    dino = DinoBackbone(config.dino)
    model = build_model(config).train()
    x = frames(2, 32, 48)
    target = (x * 4).clamp(0, 1)
    maps = dino(x)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = (model(x, dino_maps=maps) - target).abs().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_guidance_dropout(dinov3_dir):
    x = frames(8, 32, 48)
    config = tiny_config(dinov3_dir, "latent", dropout=0.5)
    model = build_model(config)
    randomize_guidance(model, scale=0.1)
    maps = DinoBackbone(config.dino)(x)
    with torch.no_grad():
        plain = model(x)
        model.eval()  # no dropout in eval
        assert not any(torch.allclose(a, b) for a, b in zip(model(x, dino_maps=maps), plain))
        model.train()
        torch.manual_seed(3)
        out = model(x, dino_maps=maps)
        dropped = [torch.equal(a, b) for a, b in zip(out, plain)]
        assert 0 < sum(dropped) < len(dropped), dropped  # per-sample, and a dropped sample == plain
        model.config.guidance.dropout = 1.0
        assert torch.equal(model(x, dino_maps=maps), plain)


@pytest.mark.parametrize("mode", ["modulation", "cross_attention"])
def test_bf16_autocast_on_cpu(dinov3_dir, mode):
    config = tiny_config(dinov3_dir, "multiscale", mode)
    dino = DinoBackbone(config.dino)
    model = build_model(config).eval()
    randomize_guidance(model, scale=0.1)
    x = frames(1, 35, 50)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, dino_maps=dino(x))
    assert out.shape == x.shape and torch.isfinite(out.float()).all()


def test_save_load_round_trip(tmp_path, dinov3_dir):
    config = tiny_config(dinov3_dir, "multiscale", "modulation")
    model = build_model(config).eval()
    randomize_guidance(model, scale=0.1)
    path = save_model(model, tmp_path / "guided.safetensors", {"note": "test"})
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        stored = json.loads(f.metadata()["config"])
    assert keys == set(model.state_dict())  # DINO referenced, not copied
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not safetensors' private 0600
    assert not list(tmp_path.glob(".*.tmp"))
    assert all(k.startswith(("restormer.", "guidance.")) for k in keys)
    assert stored["dino"]["backbone"] == dinov3_dir
    loaded = load_model(path)
    assert loaded.config == model.config
    x = frames()
    maps = DinoBackbone(loaded.config.dino)(x)
    with torch.no_grad():
        assert torch.equal(loaded(x, dino_maps=maps), model(x, dino_maps=maps))
        assert torch.equal(loaded(x), model(x))


# ---------------------------------------------------------------- info


def test_info_counts(dinov3_dir):
    config = tiny_config(dinov3_dir, "multiscale", "cross_attention")
    model = build_model(config)
    dino = DinoBackbone(config.dino)
    d = describe(model, height=40, width=56, dino=dino)
    n_dino = sum(p.numel() for p in dino.parameters())
    assert d["params_dino"] == n_dino and d["params_frozen"] == n_dino
    assert d["params_trainable"] == sum(p.numel() for p in model.parameters())
    assert d["params_guidance"] > 0 and d["macs_guidance"] > 0 and d["macs_dino"] > 0
    assert d["macs_total"] == d["macs_model"] + d["macs_dino"]
    assert d["injection_levels"] == ["enc2", "enc3", "latent", "dec3", "dec2"]
    # The meta-device count equals a count over a real forward pass (math attention: the fused
    # CPU attention kernel is invisible to the counter). DINO attention over N tokens, 4 layers:
    # QK^T and AV are N*N*C MACs each -- the part a fused-kernel count would miss.
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 3, 40, 56)
    maps = dino(x)
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH), torch.no_grad():
        model(x, dino_maps=maps)
    assert d["macs_model"] == counter.get_total_flops() // 2
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        dino(x)
    assert d["macs_dino"] == counter.get_total_flops() // 2
    n_tokens = 1 + 4 + 2 * 3  # CLS + 4 registers + 2x3 patches (40x56 -> 32x45 -> padded 32x48)
    with FlopCounterMode(display=False) as fused:
        dino(x)
    assert d["macs_dino"] - fused.get_total_flops() // 2 in (0, 4 * 2 * n_tokens * n_tokens * HIDDEN)
    text = format_info(d)
    assert "MACs/frame" in text and dinov3_dir in text and "multiscale" in text

    # Unloadable DINO: reported, not raised; the plain body has no guidance cost.
    missing = describe(tiny_config("/nonexistent/dino"), height=40, width=56)
    assert missing["params_dino"] is None and "not loaded" in missing["dino_status"]
    unguided = describe("tiny-unguided", height=40, width=56)
    assert unguided["macs_guidance"] == 0 and unguided["injection_levels"] == []
    assert model_macs(variant_config("tiny-unguided"), 40, 56) == unguided["macs_model"]
