"""Frozen DINOv3 / DINOv2 backbone that turns frames into DINO maps, and loading it.

This module owns :class:`DinoBackbone` (the frozen ViT wrapper), its geometry (:func:`dino_grid`)
and :func:`load_dino`, the one place where a DINO option (hub id, folder, ``"none"``, a module)
becomes a backbone for the enhancer, the trainer and the evaluator.

The backbone is loaded with ``transformers``' ``AutoModel.from_pretrained`` (safetensors only) from
a hub id, a local folder or the Hugging Face cache. It is never part of a vidllie checkpoint: the
model config names it and :class:`DinoBackbone` is a separate module that the pipeline calls (and
caches) before the guided network::

    backbone = DinoBackbone(config.dino)   # or DinoBackbone(config.dino, source="/path/to/dinov3")
    maps = backbone(frames)                # list of (B, C_dino, h, w) patch-token maps ("DINO maps")
    out = model(frames, dino_maps=maps)

Preprocessing happens on tensors (no PIL): low-light gamma, ImageNet normalisation, resize so the
short side is ``short_side`` and pad bottom/right to the patch multiple. :func:`dino_grid` gives the
exact geometry so the guidance layers can map DINO patches back onto frame pixels.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from vidllie.errors import WeightsError
from vidllie.models.configuration import DinoConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GAMMA_FLOOR = 1e-4  # darkest value fed to the gamma curve (0.4: maps to 0.025, slope finite)
# model_type values of the backbones we know how to read tokens from.
SUPPORTED_MODEL_TYPES = ("dinov3_vit", "dinov2", "dinov2_with_registers")


def dino_resize(height: int, width: int, short_side: int) -> tuple[int, int]:
    """Size (h, w) a (height, width) frame is resized to before DINO: short side = ``short_side``."""
    scale = short_side / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def dino_grid(
    height: int, width: int, short_side: int, patch_size: int
) -> tuple[int, int, float, float]:
    """Token grid of a frame: (rows, cols, valid_rows, valid_cols).

    ``rows x cols`` is the map :class:`DinoBackbone` returns; ``valid_rows``/``valid_cols`` (in patch
    units, fractional) is the part of it that covers the frame, the rest covers the bottom/right
    padding to the patch multiple.
    """
    rh, rw = dino_resize(height, width, short_side)
    return math.ceil(rh / patch_size), math.ceil(rw / patch_size), rh / patch_size, rw / patch_size


def _looks_like_path(source: str) -> bool:
    # A hub id is "name" or "org/name"; anything with more parts or a path prefix is a folder.
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source


def _how_to_supply(source: str, is_path: bool = False) -> str:
    if is_path:
        hub = "pass an existing folder (config.json + model.safetensors) or a hub id with --dino PATH"
    elif "dinov3" in source.lower():
        hub = (
            f"accept the DINOv3 licence on huggingface.co/{source} and run `huggingface-cli login` "
            "(then it downloads once into the HF cache), or pass a local folder with --dino PATH"
        )
    else:
        hub = "download it once while online into the HF cache, or pass a local folder with --dino PATH"
    return f"{hub}, or run without guidance with --dino none"


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint (HF_ENDPOINT honoured) answers a TCP connect."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _from_pretrained(auto_model, target: str, hub: bool) -> nn.Module:
    """A folder loads as is. A hub id loads from the HF cache first; the hub is asked only when it
    is reachable, so an offline machine gets the one-line error at once instead of a minute of
    retry warnings."""
    if not hub:
        return auto_model.from_pretrained(target, use_safetensors=True)
    from huggingface_hub import constants, snapshot_download

    try:
        # The cache alone, with no network at all (from_pretrained's local_files_only still asks
        # the hub for an adapter config in transformers 5.x).
        cached = snapshot_download(target, local_files_only=True)
    except Exception:  # noqa: BLE001 - any miss: not cached (or not fully)
        cached = None
    if cached is not None:
        return auto_model.from_pretrained(cached, use_safetensors=True)
    if constants.HF_HUB_OFFLINE:
        raise OSError("not in the Hugging Face cache and HF_HUB_OFFLINE is set")
    if not _hub_reachable():
        raise OSError(f"not in the Hugging Face cache and {constants.ENDPOINT} is unreachable")
    from huggingface_hub.utils import logging as hub_logging

    hub_logger = hub_logging.get_logger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel("ERROR")  # retry chatter; a final failure still becomes one line
    try:
        return auto_model.from_pretrained(target, use_safetensors=True)
    finally:
        hub_logger.setLevel(level)


def load_dino_backbone(source: str | Path) -> nn.Module:
    """``AutoModel.from_pretrained(source)`` with every failure turned into one-line WeightsError."""
    from transformers import AutoModel  # heavy import, only when DINO is actually used

    source = str(source)
    local = Path(source).expanduser()
    if local.exists():
        if not local.is_dir():
            raise WeightsError(
                f"DINO backbone {source!r} is a file; pass the folder holding config.json and "
                "model.safetensors"
            )
        target, hub = str(local), False
    elif _looks_like_path(source):
        raise WeightsError(f"DINO backbone folder not found: {source}; {_how_to_supply(source, True)}")
    else:
        target, hub = source, True
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a per-tensor "Loading weights" bar is noise in a video CLI
    try:
        model = _from_pretrained(AutoModel, target, hub=hub)
    except Exception as err:  # noqa: BLE001 - hub/OS/format errors all mean "weights not available"
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise WeightsError(
            f"DINO weights {source!r} are not available ({reason}); {_how_to_supply(source)}"
        ) from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model_type = getattr(model.config, "model_type", "?")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise WeightsError(
            f"DINO backbone {source!r} is a {model_type!r} model; expected DINOv3 or DINOv2 "
            f"({', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    return model


class DinoBackbone(nn.Module):
    """Frozen DINO ViT: (B, 3, H, W) frames in [0, 1] -> list of (B, C_dino, h, w) token maps.

    Always in eval mode with ``requires_grad=False``; putting a parent module in train mode does
    not change that. ``source`` overrides ``config.backbone`` (``--dino PATH``) without changing
    which backbone the model expects: ``hidden_size`` and ``patch_size`` must still match.
    """

    def __init__(
        self, config: DinoConfig, source: str | Path | None = None, backbone: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.source = str(source if source is not None else config.backbone)
        if backbone is None:
            if source is None and config.backbone is None:
                raise WeightsError("this model has no DINO backbone configured (dino.backbone is null)")
            backbone = load_dino_backbone(self.source)
        bconf = backbone.config
        if bconf.hidden_size != config.hidden_size:
            raise WeightsError(
                f"DINO backbone {self.source!r} has hidden size {bconf.hidden_size}, but the model "
                f"was built for {config.hidden_size} (use the backbone named in the model config)"
            )
        patch = bconf.patch_size
        patch = int(patch[0] if isinstance(patch, (list, tuple)) else patch)  # square patches
        if patch != config.patch_size:
            raise WeightsError(
                f"DINO backbone {self.source!r} has patch size {patch}, but the model "
                f"was built for {config.patch_size}"
            )
        bad = [layer for layer in config.layers if not 1 <= layer <= bconf.num_hidden_layers]
        if bad:
            raise WeightsError(
                f"DINO layers {bad} out of range: {self.source!r} has {bconf.num_hidden_layers} layers"
            )
        self.backbone = backbone
        self.patch_size = patch
        # Tokens are [CLS, registers..., patches...]; DINOv2 without registers has no such field.
        self.num_prefix_tokens = 1 + int(getattr(bconf, "num_register_tokens", 0) or 0)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD), persistent=False)
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> DinoBackbone:
        # Frozen feature extractor: dropout/drop-path must never switch on, whatever the parent does.
        return super().train(False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, h*p, w*p) normalised, at DINO's resolution."""
        h, w = x.shape[-2:]
        # x**gamma is NaN below 0 and has an infinite slope at 0: clamp just above 0 so the
        # gradient stays finite when a training loss backpropagates through DINO.
        x = x.float().clamp(GAMMA_FLOOR, 1.0)
        if self.config.gamma != 1.0:
            # DINO was trained on well-exposed photos: lift the shadows so the tokens see content.
            x = kornia.enhance.adjust_gamma(x, self.config.gamma)
        x = kornia.enhance.normalize(x, self.mean.float(), self.std.float())  # buffers may be half
        rh, rw = dino_resize(h, w, self.config.short_side)
        if (rh, rw) != (h, w):
            # antialias only matters when shrinking; kornia applies it then.
            x = kornia.geometry.transform.resize(x, (rh, rw), interpolation="bilinear", antialias=True)
        p = self.patch_size
        ph, pw = (-rh) % p, (-rw) % p
        if ph or pw:
            # Replicate: the stride-p patch conv would silently drop a partial last row/column.
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x

    def final_norm(self) -> nn.Module:
        # hidden_states are raw block outputs (in transformers 5.x the last one too); DINO's own
        # features are read after the final LayerNorm, so it is applied to every selected layer.
        norm = getattr(self.backbone, "norm", None)  # DINOv3
        return norm if norm is not None else self.backbone.layernorm  # DINOv2

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> one (B, C_dino, h, w) map per configured layer (no autograd:
        guidance features are constants; a perceptual loss uses :meth:`features`)."""
        return self.features(x)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """:meth:`forward` with autograd: gradients flow to ``x`` (the backbone stays frozen)."""
        pixels = self.preprocess(x)
        dtype = next(self.backbone.parameters()).dtype
        b = pixels.shape[0]
        rows, cols = pixels.shape[-2] // self.patch_size, pixels.shape[-1] // self.patch_size
        out = self.backbone(pixel_values=pixels.to(dtype), output_hidden_states=True)
        norm = self.final_norm()
        maps = []
        for layer in self.config.layers:
            tokens = norm(out.hidden_states[layer])  # (B, prefix + h*w, C)
            patches = tokens[:, self.num_prefix_tokens :]  # (B, h*w, C)
            if patches.shape[1] != rows * cols:
                raise RuntimeError(
                    f"DINO returned {patches.shape[1]} patch tokens, expected {rows}x{cols}"
                )
            maps.append(patches.transpose(1, 2).reshape(b, -1, rows, cols))  # (B, C, h, w)
        return maps

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.backbone.parameters())


def load_dino(
    config: DinoConfig, dino: str | os.PathLike | nn.Module | None = None, *, needed: bool = True
) -> tuple[nn.Module | None, str | None]:
    """The DINO backbone a run uses, and where it came from: ``(module | None, source | None)``.

    ``dino``: ``None`` = the backbone named in ``config``, a hub id or folder to load instead (the
    ``--dino`` option), ``"none"`` = no DINO, or a ready module mapping (B, 3, H, W) frames to a
    list of maps. ``needed`` says whether the caller uses DINO at all (a guided model, a DINO
    loss); when it does not, a given id/folder is ignored with a warning and a module is refused.
    """
    if isinstance(dino, nn.Module):
        if not needed:
            raise WeightsError("a DINO module was given but the model is not DINO-guided")
        return dino, type(dino).__name__
    if dino is not None and str(dino).lower() == "none":
        return None, None
    if not needed:
        if dino is not None:
            warnings.warn(f"the model is not DINO-guided; ignoring DINO backbone {dino}", UserWarning, stacklevel=3)
        return None, None
    backbone = DinoBackbone(config, source=dino)
    return backbone, backbone.source
