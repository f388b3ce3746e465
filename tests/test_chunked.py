"""Exact chunked inference (vidllie.models.chunked): the same output as the whole-frame model,
without ever holding a block's wide intermediates for the whole frame. Tiny models, 2 CPU cores."""

from __future__ import annotations

import kornia
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import DINO_HIDDEN, randomize_guidance
from vidllie.models import DinoConfig, GuidanceConfig, ModelConfig, RestormerConfig, build_model
from vidllie.models.chunked import chunked_forward
from vidllie.models.dino import DinoBackbone

pytestmark = pytest.mark.usefixtures("one_thread")


def restormer_config(layer_norm: str = "WithBias", unshuffle: int = 1, bias: bool = False) -> RestormerConfig:
    # Several heads and blocks per level so per-head statistics and block chaining are exercised.
    return RestormerConfig(
        dim=8, num_blocks=(1, 2, 1, 1), num_refinement_blocks=1, heads=(1, 2, 2, 4),
        pixel_unshuffle=unshuffle, layer_norm=layer_norm, bias=bias,
    )


def plain_model(**kw):
    torch.manual_seed(0)
    config = ModelConfig(
        name="chunk-test", restormer=restormer_config(**kw), dino=DinoConfig(backbone=None),
        guidance=GuidanceConfig(levels="none"),
    )
    return build_model(config).eval()


def frames(b: int = 2, h: int = 67, w: int = 131, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 0.3


@pytest.mark.parametrize("layer_norm,unshuffle,bias", [
    ("WithBias", 1, False), ("BiasFree", 1, True), ("WithBias", 2, True), ("BiasFree", 2, False),
])
@pytest.mark.parametrize("chunk", [24, 50])
def test_chunked_equals_whole_frame(layer_norm, unshuffle, bias, chunk):
    """Odd frame size (padding), chunks that do not divide the maps, halos at every chunk edge."""
    model = plain_model(layer_norm=layer_norm, unshuffle=unshuffle, bias=bias)
    x = frames()
    with torch.inference_mode():
        want = model(x)
        got = chunked_forward(model, x, chunk=chunk)
        bare = chunked_forward(model.restormer, x, chunk=chunk)
    assert got.shape == want.shape == (2, 3, 67, 131)
    assert (got - want).abs().max().item() <= 1e-4
    assert torch.equal(got, bare)


def test_chunked_handles_channels_last_and_one_pixel_chunks():
    model = plain_model(unshuffle=2).to(memory_format=torch.channels_last)
    x = frames(1, 20, 36).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        want = model(x)
        got = chunked_forward(model, x, chunk=1)  # every feature pixel its own chunk
    assert (got - want).abs().max().item() <= 1e-4


def guided_model(backbone: str, mode: str, levels: str, unshuffle: int):
    torch.manual_seed(0)
    config = ModelConfig(
        name="chunk-guided",
        restormer=restormer_config(unshuffle=unshuffle),
        dino=DinoConfig(backbone=backbone, hidden_size=DINO_HIDDEN, patch_size=16, layers=(2, 4), short_side=32),
        guidance=GuidanceConfig(levels=levels, mode=mode, dim=16),
    )
    model = build_model(config).eval()
    randomize_guidance(model)  # proj_out is zero-initialised
    return model, DinoBackbone(config.dino)


@pytest.mark.parametrize("mode,levels,unshuffle", [
    ("modulation", "latent", 1), ("modulation", "multiscale", 2),
    ("cross_attention", "latent", 2), ("cross_attention", "multiscale", 1),
])
def test_chunked_guided_equals_whole_frame(dinov3_dir, mode, levels, unshuffle):
    model, dino = guided_model(dinov3_dir, mode, levels, unshuffle)
    x = frames()
    with torch.inference_mode():
        maps = dino(x)
        want = model(x, dino_maps=maps)
        unguided = model(x)
        got = chunked_forward(model, x, dino_maps=maps, chunk=24)
        # A tile of the frame, placed by `region` as in GuidedRestormer.forward.
        tile = x[..., 16:64, 32:112]
        want_tile = model(tile, dino_maps=maps, region=(16, 32, 67, 131))
        got_tile = chunked_forward(model, tile, dino_maps=maps, chunk=24, region=(16, 32, 67, 131))
    assert (want - unguided).abs().max().item() > 1e-2  # the guidance matters
    assert (got - want).abs().max().item() <= 1e-4
    assert (got_tile - want_tile).abs().max().item() <= 1e-4


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any op produces (numel), and its shape."""

    def __init__(self) -> None:
        super().__init__()
        self.numel, self.shape = 0, None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() > self.numel:
                self.numel, self.shape = t.numel(), tuple(t.shape)
        return out


def test_1280x720_is_exact_and_never_holds_a_full_frame_block_intermediate():
    """Micro model on a 1280x720 frame in 256 px chunks: ≥ 40 dB is the issue's bar; the result
    is in fact equal to float rounding. Memory: the whole-frame pass creates the level-1 GDFN
    hidden map (B, 2*hidden, H/s, W/s); the chunked pass's largest tensor is a C-channel stage map."""
    model = plain_model(unshuffle=2)
    x = frames(1, 720, 1280, seed=3)
    with torch.inference_mode():
        with LargestTensor() as whole:
            want = model(x)
        with LargestTensor() as chunked:
            got = chunked_forward(model, x, chunk=256)
    diff = (got - want).abs().max().item()
    psnr = kornia.metrics.psnr(got.clamp(0, 1), want.clamp(0, 1), 1.0).item()
    print(f"chunked vs whole, 1280x720: max |diff| {diff:.2e}, PSNR {psnr:.1f} dB; largest tensor "
          f"{chunked.shape} vs {whole.shape} ({whole.numel / chunked.numel:.1f}x)")
    assert diff <= 1e-4 and psnr >= 40.0

    rc, pixels = model.config.restormer, (720 // 2) * (1280 // 2)  # working resolution, unshuffle 2
    hidden = int(2 * rc.dim * rc.ffn_expansion_factor)  # GDFN of the 2*dim decoder level 1
    assert whole.numel >= 2 * hidden * pixels  # the reference really holds it ...
    assert chunked.numel <= 2 * rc.dim * pixels  # ... the chunked pass at most a (1, 2d, H, W) map
