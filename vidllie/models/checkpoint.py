"""Build, save and load vidllie models (this module owns the checkpoint format).

Checkpoints are single safetensors files: the network's tensors plus the :class:`ModelConfig` as
JSON in the header metadata. DINO weights are never copied in; the config names the backbone by hub
id or folder. Pickle is never loaded.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from vidllie.errors import WeightsError
from vidllie.models.configuration import ModelConfig
from vidllie.models.guided_restormer import GuidedRestormer

FORMAT = "vidllie-model/1"
DEFAULT_MODEL = "default"
QUALITY_MODEL = "quality"
FAST_MODEL = "fast"
# Bundled models by name (files in vidllie/weights/). `default` is what everything uses unless told
# otherwise: the `fast` network (configs/models/fast.yaml, 1.77 GMAC per 640x360 frame) with the
# scene-exposure stage (vidllie/pipeline/exposure.py), which the pipeline turns on for the models
# named in SCENE_EXPOSURE_MODELS. `fast` is the same network judging exposure frame by frame, and
# `quality` the tiny-unguided Restormer (7.2 GMAC); both are kept by name for comparisons
# (`vidllie bench clip.mp4 --compare quality`).
BUNDLED_MODELS = {
    QUALITY_MODEL: "quality.safetensors",
    DEFAULT_MODEL: "fast.safetensors",
    FAST_MODEL: "fast.safetensors",
}
SCENE_EXPOSURE_MODELS = frozenset({DEFAULT_MODEL})


def scene_exposure_default(model: Any) -> bool:
    """Whether the scene-exposure stage is on for ``model`` unless told otherwise: on for the
    bundled models named in ``SCENE_EXPOSURE_MODELS``, off for other names, files and modules.

    Example:
        >>> scene_exposure_default("default"), scene_exposure_default("quality")
        (True, False)
    """
    return isinstance(model, str) and model in SCENE_EXPOSURE_MODELS


def _weights_dir() -> Path:
    return Path(str(resources.files("vidllie") / "weights"))


def variant_names() -> list[str]:
    """Names of the model variants in ``configs/models/``."""
    folder = resources.files("vidllie.configs") / "models"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def variant_config(name_or_path: str | Path) -> ModelConfig:
    """A :class:`ModelConfig` from a variant name (``tiny``) or a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        text = path.read_text()
    else:
        resource = resources.files("vidllie.configs") / "models" / f"{name_or_path}.yaml"
        if not resource.is_file():
            raise WeightsError(
                f"unknown model variant {str(name_or_path)!r}; known: {', '.join(variant_names())}"
            )
        text = resource.read_text()
    return ModelConfig.from_dict(yaml.safe_load(text))


def build_model(config: ModelConfig | str | Path) -> GuidedRestormer:
    """A freshly initialised network for a config, a variant name or a YAML path."""
    if not isinstance(config, ModelConfig):
        config = variant_config(config)
    return GuidedRestormer(config)


def save_model(model: GuidedRestormer, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (tensors + config) to a safetensors file, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "config": json.dumps(model.config.to_dict())}
    for key, value in (metadata or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return write_safetensors(tensors, path, meta)


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str]) -> Path:
    """``safetensors`` ``save_file`` to a temporary name, then renamed: never a partial file under
    ``path``. The file gets the permissions of any newly created file (safetensors itself makes
    it 0600, which would hide bundled or shared weights from other users)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    # Create the file the ordinary way first to learn its mode (umask, default ACLs), without
    # touching the process-wide umask.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    mode = os.fstat(fd).st_mode & 0o777
    os.close(fd)
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, mode)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def resolve_checkpoint(name_or_path: str | Path | None) -> Path:
    """The checkpoint file for a bundled model's name (``default``/None, ``quality``; see
    :data:`BUNDLED_MODELS`) or a path."""
    name = DEFAULT_MODEL if name_or_path is None else str(name_or_path)
    if name in BUNDLED_MODELS:
        path = _weights_dir() / BUNDLED_MODELS[name]
        if not path.is_file():
            raise WeightsError(f"the bundled {name} model is missing from the install ({path})")
        return path
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        candidates = sorted(path.glob("*.safetensors"))
        if len(candidates) != 1:
            raise WeightsError(f"{path}: expected exactly one .safetensors file in the folder")
        path = candidates[0]
    if not path.is_file():
        hint = f" (variants such as {str(name_or_path)!r} are built with `vidllie train`)" if str(
            name_or_path
        ) in variant_names() else ""
        raise WeightsError(f"model checkpoint not found: {path}{hint}")
    if path.suffix != ".safetensors":
        raise WeightsError(f"{path}: models load from .safetensors files only (no pickle)")
    return path


def read_checkpoint_metadata(path: str | Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{path}: not a readable safetensors file ({err})") from None


def load_model(name_or_path: str | Path | None = DEFAULT_MODEL, *, map_location: str | torch.device = "cpu") -> GuidedRestormer:
    """Load a checkpoint written by :func:`save_model` (``default``, ``quality``: bundled models)."""
    path = resolve_checkpoint(name_or_path)
    meta = read_checkpoint_metadata(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise WeightsError(f"{path}: not a vidllie model checkpoint (no {FORMAT} metadata)")
    config = ModelConfig.from_dict(json.loads(meta["config"]))
    model = build_model(config)
    state = load_file(str(path), device=str(map_location))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsError(
            f"{path}: checkpoint does not match its config "
            f"(missing {len(missing)}, unexpected {len(unexpected)} tensors)"
        )
    return model.eval()
