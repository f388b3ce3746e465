"""Typed configuration of vidllie's models.

A :class:`ModelConfig` fully describes a network: the Restormer body, which DINO backbone guides
it (by hub id or folder, never by copied weights) and where the guidance is injected. It is stored
as JSON inside every checkpoint and as YAML for the named variants in ``configs/models/``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

GuidanceLevels = Literal["none", "latent", "multiscale"]
GuidanceMode = Literal["modulation", "cross_attention"]
OutputHead = Literal["residual", "affine"]


@dataclass
class RestormerConfig:
    """Restormer body. Defaults are the paper's (26.13 M parameters)."""

    in_channels: int = 3
    out_channels: int = 3
    dim: int = 48
    num_blocks: tuple[int, int, int, int] = (4, 6, 6, 8)
    num_refinement_blocks: int = 4
    heads: tuple[int, int, int, int] = (1, 2, 4, 8)
    ffn_expansion_factor: float = 2.66
    bias: bool = False
    layer_norm: Literal["WithBias", "BiasFree"] = "WithBias"
    # >1 folds s x s pixels into channels before the U-Net (PixelUnshuffle) and unfolds them at the
    # end: the whole network then runs at 1/s resolution. 1 is the paper's network; the CPU
    # variant uses 2.
    pixel_unshuffle: int = 1
    # How the output is formed. "residual": input + the network's output (the paper's). "affine":
    # additionally a per-pixel 3x4 colour transform predicted at the working resolution, upsampled
    # bilinearly and applied to the full-resolution input before the residual is added
    # (out = A(x) [x; 1] + r). A smooth local gain/colour map keeps detail that a network running at
    # 1/4 or 1/8 resolution cannot carry through its channels, and fits spatially varying light.
    output_head: OutputHead = "residual"
    # >0 adds a detail branch of this many channels at 1/2 of the frame's resolution: it sees every
    # full-resolution pixel of the output (pixel_unshuffle 2) beside the body's upsampled features
    # and adds a full-resolution correction (pixel_shuffle 2). It gives a body running at 1/8
    # resolution what it cannot have: per-pixel denoising and detail. Zero-initialised, so a network
    # trained without it starts unchanged when it is added. 0: none.
    detail_channels: int = 0
    # >0 adds a global context branch of this many hidden units after the latent stage: the mean and
    # standard deviation of the latent map over the whole frame, and the log mean of each input
    # colour channel, go through a 2-layer MLP whose output is added to every latent pixel (the
    # global path of HDRNet). The body's attention is across channels, so the frame-wide exposure
    # and colour of the scene reach each pixel only indirectly without it. Zero-initialised like
    # the detail branch. Measured: `fast` trained 5000 steps with it (stage 4) did not use it
    # (zeroing it changes nothing measurable; docs/benchmarks.md). 0: none.
    global_context: int = 0

    def __post_init__(self) -> None:
        if self.pixel_unshuffle < 1:
            raise ValueError("pixel_unshuffle must be >= 1")
        if self.detail_channels < 0 or self.global_context < 0:
            raise ValueError("detail_channels and global_context must be >= 0")
        if self.output_head not in ("residual", "affine"):
            raise ValueError(f"output_head must be residual or affine, not {self.output_head!r}")
        if self.output_head == "affine" and not self.in_channels == self.out_channels == 3:
            raise ValueError("output_head affine needs 3 input and 3 output channels")
        self.num_blocks = tuple(self.num_blocks)
        self.heads = tuple(self.heads)
        if len(self.num_blocks) != 4 or len(self.heads) != 4:
            raise ValueError("num_blocks and heads need 4 entries (one per U-Net level)")
        for level, heads in enumerate(self.heads):
            if (self.dim * 2**level) % heads:
                raise ValueError(f"level {level + 1}: {self.dim * 2**level} channels not divisible by {heads} heads")
        if self.layer_norm not in ("WithBias", "BiasFree"):
            raise ValueError(f"layer_norm must be WithBias or BiasFree, not {self.layer_norm!r}")


@dataclass
class DinoConfig:
    """Frozen DINO ViT that guides the network.

    ``backbone`` is a hub id (``facebook/dinov3-vits16-pretrain-lvd1689m``), a local folder, or
    ``None`` for an unguided model. ``hidden_size`` and ``patch_size`` must match the backbone
    (checked at load time); they are stored so the guidance layers can be built, and DINO patches
    mapped back onto frame pixels, without loading DINO.
    """

    backbone: str | None = "facebook/dinov3-vits16-pretrain-lvd1689m"
    hidden_size: int = 384
    patch_size: int = 16  # 16 for DINOv3, 14 for DINOv2
    layers: tuple[int, ...] = (3, 6, 9, 12)  # 1-based transformer layers whose tokens are used
    short_side: int = 448  # DINO's own resolution (short side), independent of the frame size
    gamma: float = 0.4  # low-light gamma applied before ImageNet normalisation

    def __post_init__(self) -> None:
        self.layers = tuple(self.layers)
        if not self.layers or min(self.layers) < 1:
            raise ValueError("dino layers are 1-based transformer layer indices (at least one)")
        if self.short_side < self.patch_size or self.gamma <= 0:
            raise ValueError("dino short_side must be >= patch_size and gamma > 0")


@dataclass
class GuidanceConfig:
    """How DINO features steer the Restormer."""

    levels: GuidanceLevels = "latent"
    mode: GuidanceMode = "modulation"
    dim: int = 64  # channels of the fused DINO map
    dropout: float = 0.0  # probability of training a sample without guidance

    def __post_init__(self) -> None:
        if self.levels not in ("none", "latent", "multiscale"):
            raise ValueError(f"guidance levels must be none, latent or multiscale, not {self.levels!r}")
        if self.mode not in ("modulation", "cross_attention"):
            raise ValueError(f"guidance mode must be modulation or cross_attention, not {self.mode!r}")


@dataclass
class ModelConfig:
    name: str = "restormer"
    restormer: RestormerConfig = field(default_factory=RestormerConfig)
    dino: DinoConfig = field(default_factory=DinoConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)

    @property
    def guided(self) -> bool:
        return self.dino.backbone is not None and self.guidance.levels != "none"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(
            name=data.get("name", "restormer"),
            restormer=_build(RestormerConfig, data.get("restormer", {})),
            dino=_build(DinoConfig, data.get("dino", {})),
            guidance=_build(GuidanceConfig, data.get("guidance", {})),
        )


def _build(cls, values: dict[str, Any] | None):
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    return cls(**values)
