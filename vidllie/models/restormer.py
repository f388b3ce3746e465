"""Restormer (Zamir et al., CVPR 2022), written from the paper.

Multi-Dconv head Transposed Attention (MDTA) and the Gated-Dconv Feed-forward Network (GDFN) in a
4-level U-Net. With the paper's defaults (dim 48, blocks [4, 6, 6, 8], 4 refinement blocks,
heads [1, 2, 4, 8], expansion 2.66, bias-free convs, WithBias LayerNorm) the network has 26.13 M
parameters.

This module owns the network's layers and its one U-Net wiring (:meth:`Restormer.forward_padded`).
The wiring takes two optional callables, so other execution strategies reuse it instead of copying
it:

* ``level_hook(name, features) -> features``, called on the output of every level;
  :class:`vidllie.models.guided_restormer.GuidedRestormer` uses it to inject DINO guidance without
  changing the parameter names of the plain network;
* ``run_stage(stage, features) -> features``, which runs one stage (an ``nn.Sequential`` of
  transformer blocks); the default calls it whole, :mod:`vidllie.models.chunked` runs it in
  spatial chunks with the same result.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vidllie.models.configuration import RestormerConfig

LevelHook = Callable[[str, torch.Tensor], torch.Tensor]
StageRunner = Callable[[nn.Sequential, torch.Tensor], torch.Tensor]

# Names of the points where ``level_hook`` is called, in forward order.
LEVEL_NAMES = ("enc1", "enc2", "enc3", "latent", "dec3", "dec2", "dec1")
# Channel multiplier of each level relative to ``dim`` and its downsampling factor.
LEVEL_CHANNELS = {"enc1": 1, "enc2": 2, "enc3": 4, "latent": 8, "dec3": 4, "dec2": 2, "dec1": 2}
LEVEL_STRIDE = {"enc1": 1, "enc2": 2, "enc3": 4, "latent": 8, "dec3": 4, "dec2": 2, "dec1": 1}
# Peak activation memory per pixel at the working resolution, in units of (dim x element size):
# whole stages (level-1 GDFN: ~2 x 2.66 x 2*dim channels plus skips) ...
ACTIVATION_FACTOR = 40
# ... and what a chunked run still holds for the whole frame: the C-channel stage maps and skips
# (level 1: enc1, the 2*dim decoder input and output, the upsampled map; deeper levels add about
# half of that again).
CHUNKED_MAP_FACTOR = 12
# The affine output head's full-resolution maps per input pixel, in elements: 12 upsampled
# coefficients, the 3x3 products and the output.
AFFINE_HEAD_ELEMENTS = 24


def apply_affine(coeffs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-pixel colour transform ``x + A x + b``: coeffs (B, 12, H, W) = 9 entries of A (row-major)
    then 3 of b, x (B, 3, H, W) -> (B, 3, H, W). Zero coefficients are the identity.

    Example:
        >>> x = torch.rand(1, 3, 4, 5)
        >>> torch.equal(apply_affine(torch.zeros(1, 12, 4, 5), x), x)
        True
    """
    if coeffs.shape[1] != 12 or x.shape[1] != 3 or coeffs.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"expected coeffs (B, 12, H, W) and x (B, 3, H, W), got {tuple(coeffs.shape)}, {tuple(x.shape)}")
    b, _, h, w = x.shape
    matrix = coeffs[:, :9].reshape(b, 3, 3, h, w)  # (B, out, in, H, W)
    return x + (matrix * x.unsqueeze(1)).sum(dim=2) + coeffs[:, 9:]


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of every pixel of a (B, C, H, W) map.

    ``with_bias=False`` is Restormer's "BiasFree" variant: the input is scaled by its standard
    deviation but not centred, and there is no bias.
    """

    def __init__(self, channels: int, with_bias: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if with_bias else None
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is not None:
            # F.layer_norm over the last dim of the (B, H, W, C) view is one fused kernel (and a
            # free view when x is channels_last), much faster on CPU than a strided var_mean.
            y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
            return y.permute(0, 3, 1, 2)
        var = x.var(dim=1, keepdim=True, unbiased=False)
        return x * torch.rsqrt(var + self.eps) * self.weight.view(1, -1, 1, 1)


class MDTA(nn.Module):
    """Multi-Dconv head Transposed Attention: attention across channels, not pixels.

    The (C/heads x C/heads) attention map costs O(H*W) so it runs on full-resolution frames.
    """

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        # (B, heads, C/heads, H*W)
        q = q.reshape(b, self.num_heads, c // self.num_heads, h * w)
        k = k.reshape(b, self.num_heads, c // self.num_heads, h * w)
        v = v.reshape(b, self.num_heads, c // self.num_heads, h * w)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.temperature  # (B, heads, C/h, C/h)
        out = attn.softmax(dim=-1) @ v
        return self.project_out(out.reshape(b, c, h, w))


class GDFN(nn.Module):
    """Gated-Dconv Feed-forward Network: GELU(x1) * x2 after a depthwise 3x3 conv."""

    def __init__(self, dim: int, expansion: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, config: RestormerConfig) -> None:
        super().__init__()
        with_bias = config.layer_norm == "WithBias"
        self.norm1 = ChannelLayerNorm(dim, with_bias)
        self.attn = MDTA(dim, num_heads, config.bias)
        self.norm2 = ChannelLayerNorm(dim, with_bias)
        self.ffn = GDFN(dim, config.ffn_expansion_factor, config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def run_whole_stage(stage: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The default :data:`StageRunner`: the stage on the whole map."""
    return stage(x)


def _no_hook(_name: str, feat: torch.Tensor) -> torch.Tensor:
    return feat


def _stage(dim: int, depth: int, num_heads: int, config: RestormerConfig) -> nn.Sequential:
    return nn.Sequential(*[TransformerBlock(dim, num_heads, config) for _ in range(depth)])


class Downsample(nn.Sequential):
    """(B, C, H, W) -> (B, 2C, H/2, W/2): 3x3 conv to C/2, then PixelUnshuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__(
            nn.Conv2d(channels, channels // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2)
        )


class Upsample(nn.Sequential):
    """(B, C, H, W) -> (B, C/2, 2H, 2W): 3x3 conv to 2C, then PixelShuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__(
            nn.Conv2d(channels, channels * 2, 3, padding=1, bias=False), nn.PixelShuffle(2)
        )


class HalfResolutionDetail(nn.Module):
    """Per-pixel correction of a full-resolution image, computed at 1/2 resolution.

    The image's 2x2 blocks are folded into channels (every pixel is seen), the body's features are
    upsampled beside them, three 3x3 convs run at H/2 x W/2 and the result is unfolded into a
    (B, C, H, W) correction. The last conv starts at zero: a fresh branch adds nothing.

    Example:
        >>> branch = HalfResolutionDetail(image_channels=3, feature_channels=48, channels=16)
        >>> branch(torch.rand(1, 3, 64, 96), torch.rand(1, 48, 8, 12)).abs().max().item()
        0.0
    """

    def __init__(self, image_channels: int, feature_channels: int, channels: int) -> None:
        super().__init__()
        self.context = nn.Conv2d(feature_channels, channels, 1)
        self.conv1 = nn.Conv2d(image_channels * 4 + channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.out = nn.Conv2d(channels, image_channels * 4, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, image: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """image (B, C, H, W), features (B, F, h, w) at any coarser grid -> correction (B, C, H, W)."""
        if image.shape[-2] % 2 or image.shape[-1] % 2:
            raise ValueError(f"image H and W must be even, got {tuple(image.shape)}")
        # Channels-last: these convs are several times faster on CPU in that layout.
        half = F.pixel_unshuffle(image, 2).contiguous(memory_format=torch.channels_last)  # (B, 4C, H/2, W/2)
        context = F.interpolate(self.context(features), size=half.shape[-2:], mode="bilinear", align_corners=False)
        h = F.leaky_relu(self.conv1(torch.cat([half, context.to(half.dtype)], dim=1)), 0.1)  # (B, c, H/2, W/2)
        h = F.leaky_relu(self.conv2(h), 0.1)
        return F.pixel_shuffle(self.out(h), 2)  # (B, C, H, W)


class GlobalContext(nn.Module):
    """Frame-wide context for every pixel of a feature map (HDRNet's global path).

    Per channel mean and standard deviation of ``features`` over the whole map, and ``log(mean + 1e-3)``
    of each image channel, feed a 2-layer MLP; its output is a per-channel offset added to every
    pixel. The last layer starts at zero: a fresh branch adds nothing.

    Example:
        >>> branch = GlobalContext(feature_channels=192, image_channels=3, hidden=64)
        >>> branch(torch.rand(2, 192, 5, 8), torch.rand(2, 3, 320, 512)).shape
        torch.Size([2, 192, 1, 1])
    """

    def __init__(self, feature_channels: int, image_channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2 * feature_channels + image_channels, hidden)
        self.fc2 = nn.Linear(hidden, feature_channels)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """features (B, F, h, w), image (B, C, H, W) -> offset (B, F, 1, 1)."""
        # Statistics in float32: a bf16 std over thousands of pixels loses most of its digits.
        f = features.float()
        mean = f.mean(dim=(2, 3))  # (B, F)
        std = (f - mean[..., None, None]).square().mean(dim=(2, 3)).add(1e-6).sqrt()  # (B, F)
        light = torch.log(image.float().mean(dim=(2, 3)).clamp(min=0) + 1e-3)  # (B, C)
        offset = self.fc2(F.gelu(self.fc1(torch.cat([mean, std, light], dim=1))))  # (B, F)
        return offset.to(features.dtype)[..., None, None]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad H and W at the bottom/right up to a multiple; reflect where the frame allows it."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


class Restormer(nn.Module):
    """Restormer U-Net. Input and output are (B, C, H, W) images; any H, W."""

    def __init__(self, config: RestormerConfig) -> None:
        super().__init__()
        self.config = config
        s = config.pixel_unshuffle
        self.size_multiple = 8 * s  # three 2x downsamplings after the optional unshuffle stem
        d, nb, heads = config.dim, config.num_blocks, config.heads
        self.patch_embed = nn.Conv2d(config.in_channels * s * s, d, 3, padding=1, bias=config.bias)
        self.encoder_level1 = _stage(d, nb[0], heads[0], config)
        self.down1_2 = Downsample(d)
        self.encoder_level2 = _stage(d * 2, nb[1], heads[1], config)
        self.down2_3 = Downsample(d * 2)
        self.encoder_level3 = _stage(d * 4, nb[2], heads[2], config)
        self.down3_4 = Downsample(d * 4)
        self.latent = _stage(d * 8, nb[3], heads[3], config)
        self.up4_3 = Upsample(d * 8)
        self.reduce_chan_level3 = nn.Conv2d(d * 8, d * 4, 1, bias=config.bias)
        self.decoder_level3 = _stage(d * 4, nb[2], heads[2], config)
        self.up3_2 = Upsample(d * 4)
        self.reduce_chan_level2 = nn.Conv2d(d * 4, d * 2, 1, bias=config.bias)
        self.decoder_level2 = _stage(d * 2, nb[1], heads[1], config)
        self.up2_1 = Upsample(d * 2)
        # Level 1 keeps the concatenated 2*dim channels (no reduction), as in the paper.
        self.decoder_level1 = _stage(d * 2, nb[0], heads[0], config)
        self.refinement = _stage(d * 2, config.num_refinement_blocks, heads[0], config)
        self.output = nn.Conv2d(d * 2, config.out_channels * s * s, 3, padding=1, bias=config.bias)
        if config.output_head == "affine":
            # Zero-initialised: the transform starts as the identity (the residual network).
            self.affine = nn.Conv2d(d * 2, 12, 3, padding=1)
            nn.init.zeros_(self.affine.weight)
            nn.init.zeros_(self.affine.bias)
        self.detail = (
            HalfResolutionDetail(config.out_channels, d * 2, config.detail_channels) if config.detail_channels else None
        )
        self.global_context = (
            GlobalContext(d * 8, config.in_channels, config.global_context) if config.global_context else None
        )

    def forward(
        self, x: torch.Tensor, level_hook: LevelHook | None = None, run_stage: StageRunner | None = None
    ) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W); the global residual adds the input."""
        padded, (h, w) = pad_to_multiple(x, self.size_multiple)
        out = self.forward_padded(padded, level_hook, run_stage)
        return out[..., :h, :w]

    def forward_padded(
        self, x: torch.Tensor, level_hook: LevelHook | None = None, run_stage: StageRunner | None = None
    ) -> torch.Tensor:
        """Forward on an input whose H and W are multiples of :attr:`size_multiple`.

        ``level_hook`` sees every level's output; ``run_stage`` runs each stage (default: whole).
        The convs between stages always run on full maps: they only ever hold C-channel maps,
        like the stage outputs kept for the skips.
        """
        hook = level_hook or _no_hook
        run = run_stage or run_whole_stage
        s = self.config.pixel_unshuffle
        stem = F.pixel_unshuffle(x, s) if s > 1 else x  # (B, C*s*s, H/s, W/s)
        # Shape comments below are at the network's working resolution H/s x W/s.
        enc1 = hook("enc1", run(self.encoder_level1, self.patch_embed(stem)))  # (B, d, H, W)
        enc2 = hook("enc2", run(self.encoder_level2, self.down1_2(enc1)))  # (B, 2d, H/2, W/2)
        enc3 = hook("enc3", run(self.encoder_level3, self.down2_3(enc2)))  # (B, 4d, H/4, W/4)
        latent = hook("latent", run(self.latent, self.down3_4(enc3)))  # (B, 8d, H/8, W/8)
        if self.global_context is not None:
            # On the whole latent map (after any chunked stage), so chunked runs stay exact.
            latent = latent + self.global_context(latent, x)

        # Skips are released as soon as they are used (what lets a chunked run stay small).
        dec3 = self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], dim=1))
        del latent, enc3
        dec3 = hook("dec3", run(self.decoder_level3, dec3))  # (B, 4d, H/4, W/4)
        dec2 = self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], dim=1))
        del dec3, enc2
        dec2 = hook("dec2", run(self.decoder_level2, dec2))  # (B, 2d, H/2, W/2)
        dec1 = torch.cat([self.up2_1(dec2), enc1], dim=1)  # (B, 2d, H, W)
        del dec2, enc1
        dec1 = hook("dec1", run(self.decoder_level1, dec1))
        refined = run(self.refinement, dec1)  # (B, 2d, H, W)
        out = self.output(refined)  # (B, C_out*s*s, H, W)
        if s > 1:
            out = F.pixel_shuffle(out, s)  # (B, C_out, H*s, W*s)
        if self.config.output_head == "affine":
            # Channels-first from here: on a CPU, bilinear upsampling and the per-pixel products on
            # these 3- and 12-channel full-resolution maps are 2-6x faster than in channels-last.
            coeffs = self.affine(refined).contiguous()  # (B, 12, H, W): a colour transform per working pixel
            if s > 1:
                # Smooth at full resolution; the detail comes from x itself.
                coeffs = F.interpolate(coeffs, size=x.shape[-2:], mode="bilinear", align_corners=False)
            out = out.contiguous() + apply_affine(coeffs.to(x.dtype), x.contiguous())
        elif self.config.in_channels == self.config.out_channels:
            out = out + x
        if self.detail is not None:
            out = out + self.detail(out, refined).contiguous()
        if x.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous(memory_format=torch.channels_last):
            # Back to the caller's layout: the cropped output of a channels-first result would be a
            # strided view that makes every later op (smoothing, download) several times slower.
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def activation_bytes_per_pixel(self, element_size: int, chunked: bool = False) -> float:
        """Rough peak activation memory of one forward pass per input pixel, in bytes.

        Whole stages: Restormer's level-1 GDFN holds ~2 x 2.66 x 2*dim channels plus the skips
        (:data:`ACTIVATION_FACTOR` x dim at the working resolution). ``chunked``: what a chunked
        run still holds for the whole frame, the C-channel stage maps and skips
        (:data:`CHUNKED_MAP_FACTOR` x dim).
        """
        factor = CHUNKED_MAP_FACTOR if chunked else ACTIVATION_FACTOR
        per_pixel = factor * self.config.dim * element_size / self.config.pixel_unshuffle**2
        if self.config.output_head == "affine":
            per_pixel += AFFINE_HEAD_ELEMENTS * element_size
        if self.config.detail_channels:
            # At 1/2 resolution: the folded image, the upsampled context, two c-channel maps and the
            # folded correction; then the full-resolution correction and sum.
            c = self.config.detail_channels
            per_pixel += ((12 + 3 * c + 12) / 4 + 6) * element_size
        return per_pixel
