"""What a model is and costs: parameters (trainable / frozen), MACs per frame, DINO, guidance.

Backs ``vidllie info MODEL``. MACs are counted, not estimated: the forward pass runs under
``torch.utils.flop_counter.FlopCounterMode`` on the ``meta`` device (shapes only, no arithmetic,
no memory), and MACs = FLOPs / 2. The counter covers convolutions, matmuls and attention, which is
where the cost is; element-wise ops (norms, GELU, softmax) are not counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from vidllie.errors import WeightsError
from vidllie.models.checkpoint import build_model, load_model, variant_names
from vidllie.models.configuration import ModelConfig
from vidllie.models.dino import DinoBackbone, dino_grid, load_dino
from vidllie.models.guidance import injection_levels
from vidllie.models.guided_restormer import GuidedRestormer


def _count(params) -> int:
    return sum(p.numel() for p in params)


def _resolve_model(model: GuidedRestormer | ModelConfig | str | Path) -> tuple[GuidedRestormer, str]:
    if isinstance(model, GuidedRestormer):
        return model, model.config.name
    if isinstance(model, ModelConfig):
        return build_model(model), model.name
    text = str(model)
    if text in variant_names() or text.endswith((".yaml", ".yml")):
        return build_model(text), f"{text} (variant, untrained)"
    return load_model(text), text


def _macs(module: torch.nn.Module, *args: Any) -> int:
    # The math SDPA backend decomposes attention into matmuls the counter sees (the fused CPU
    # kernel is not in its table and would count as zero).
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH), torch.no_grad():
        module(*args)
    return counter.get_total_flops() // 2


def model_macs(config: ModelConfig, height: int, width: int, guided: bool = True) -> int:
    """MACs of one (1, 3, height, width) frame through the network (DINO not included)."""
    with torch.device("meta"):
        model = GuidedRestormer(config).eval()
        x = torch.empty(1, 3, height, width)
        maps = None
        if guided and config.guided:
            rows, cols, _, _ = dino_grid(height, width, config.dino.short_side, config.dino.patch_size)
            maps = [torch.empty(1, config.dino.hidden_size, rows, cols) for _ in config.dino.layers]
    return _macs(model, x, maps)


def dino_macs(backbone: DinoBackbone, height: int, width: int) -> int:
    """MACs of the DINO backbone on one frame (at its own ``short_side`` resolution)."""
    from transformers import AutoModel

    with torch.device("meta"):
        vit = AutoModel.from_config(backbone.backbone.config)
    meta_backbone = DinoBackbone(backbone.config, source=backbone.source, backbone=vit).to("meta")
    return _macs(meta_backbone, torch.empty(1, 3, height, width, device="meta"))


def describe(
    model_or_name_or_path: GuidedRestormer | ModelConfig | str | Path,
    height: int = 360,
    width: int = 640,
    dino: DinoBackbone | str | Path | bool | None = None,
) -> dict[str, Any]:
    """Facts about a model for ``vidllie info``.

    ``dino``: a loaded :class:`DinoBackbone`, a hub id / folder to load, ``None`` to try the
    backbone named in the model config, or ``False`` not to load DINO. When DINO cannot be
    loaded its frozen parameters and MACs are reported as ``None`` with the reason.
    """
    model, label = _resolve_model(model_or_name_or_path)
    config = model.config
    backbone: DinoBackbone | None = None
    dino_status = "not used (unguided model)"
    if config.guided and dino is not False:
        try:
            if isinstance(dino, DinoBackbone):
                backbone = dino
            else:
                backbone, _ = load_dino(config.dino, None if dino in (None, True) else dino)
            dino_status = "loaded"
        except WeightsError as err:
            dino_status = f"not loaded: {err}"
    elif config.guided:
        dino_status = "not loaded (skipped)"

    guidance_params = _count(model.guidance.parameters()) if model.guidance is not None else 0
    model_trainable = _count(p for p in model.parameters() if p.requires_grad)
    model_frozen = _count(p for p in model.parameters() if not p.requires_grad)
    dino_params = backbone.num_parameters() if backbone is not None else None
    macs_model = model_macs(config, height, width)
    macs_plain = model_macs(config, height, width, guided=False)
    macs_dino = dino_macs(backbone, height, width) if backbone is not None else None
    rows = cols = None
    if config.guided:
        rows, cols, _, _ = dino_grid(height, width, config.dino.short_side, config.dino.patch_size)
    return {
        "model": label,
        "name": config.name,
        "height": height,
        "width": width,
        "params_restormer": _count(model.restormer.parameters()),
        "params_guidance": guidance_params,
        "params_trainable": model_trainable,
        "params_frozen": model_frozen + (dino_params or 0),
        "params_dino": dino_params,
        "macs_model": macs_model,
        "macs_guidance": macs_model - macs_plain,
        "macs_dino": macs_dino,
        "macs_total": macs_model + (macs_dino or 0),
        "dino_backbone": config.dino.backbone if config.guided else None,
        "dino_source": backbone.source if backbone is not None else None,
        "dino_status": dino_status,
        "dino_layers": list(config.dino.layers) if config.guided else [],
        "dino_grid": [rows, cols] if rows is not None else None,
        "dino_short_side": config.dino.short_side if config.guided else None,
        "guidance_levels": config.guidance.levels if config.guided else "none",
        "injection_levels": list(injection_levels(config)),
        "guidance_mode": config.guidance.mode if config.guided else None,
        "pixel_unshuffle": config.restormer.pixel_unshuffle,
        "size_multiple": model.size_multiple,
    }


def _m(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.2f} M"


def _g(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e9:.2f} G"


def format_info(d: dict[str, Any]) -> str:
    """Human-readable lines for :func:`describe`'s dict."""
    lines = [
        f"model          {d['model']}",
        f"parameters     {_m(d['params_trainable'])} trainable (Restormer {_m(d['params_restormer'])}"
        f" + guidance {_m(d['params_guidance'])}), {_m(d['params_frozen'])} frozen"
        + (" (DINO not loaded)" if d["params_dino"] is None and d["dino_backbone"] else ""),
        f"MACs/frame     {_g(d['macs_total'])} at {d['width']}x{d['height']}: network {_g(d['macs_model'])}"
        f" (guidance {_g(d['macs_guidance'])}), DINO {_g(d['macs_dino']) if d['dino_backbone'] else '-'}",
        f"internal scale 1/{d['pixel_unshuffle']} (pads frames to multiples of {d['size_multiple']})",
    ]
    if d["dino_backbone"]:
        lines += [
            f"DINO backbone  {d['dino_backbone']}"
            + (f" (from {d['dino_source']})" if d["dino_source"] not in (None, d["dino_backbone"]) else ""),
            f"DINO           {d['dino_status']}; {_m(d['params_dino'])} frozen params; layers {d['dino_layers']};"
            f" short side {d['dino_short_side']} -> {d['dino_grid'][0]}x{d['dino_grid'][1]} patches",
            f"guidance       {d['guidance_mode']} at {d['guidance_levels']} ({', '.join(d['injection_levels'])})",
        ]
    else:
        lines.append("guidance       none (plain Restormer)")
    return "\n".join(lines)
