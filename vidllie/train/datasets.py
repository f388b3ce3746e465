"""Training data: paired folders (LOL layout), synthetic pairs from normal-light images, clips.

Everything random takes an explicit ``torch.Generator`` so a run is reproducible and resumable
(the trainer checkpoints the generator state).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

import kornia
import numpy as np
import torch

from vidllie.errors import InputError
from vidllie.train.degrade import DegradeConfig, degrade_pair, sample_degradation

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LOW_DIRS = ("low", "Low", "LOW", "input")
HIGH_DIRS = ("high", "High", "HIGH", "normal", "Normal", "gt", "GT", "target")
_NAME_PREFIXES = ("low", "normal", "high")


# ----------------------------------------------------------------------------------------- files
def list_images(root: str | Path) -> list[Path]:
    """All ``.jpg/.jpeg/.png`` files under ``root`` (recursive), sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"image folder not found: {root}")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def is_held_out(name: str, fraction: float = 0.1) -> bool:
    """Whether a file (by its relative path, e.g. ``bsds500/100007.jpg``) is in the fixed held-out
    split: the first 4 bytes of its MD5 as a fraction of 2**32 below ``fraction``.

    Example:
        >>> is_held_out("bsds500/100007.jpg", 0.0), is_held_out("bsds500/100007.jpg", 1.0)
        (False, True)
    """
    h = int.from_bytes(hashlib.md5(name.encode("utf-8")).digest()[:4], "big")
    return h / 2**32 < fraction


def split_images(root: str | Path, fraction: float = 0.1) -> tuple[list[Path], list[Path]]:
    """``(train, held_out)`` image paths under ``root``, split by :func:`is_held_out` on the path
    relative to ``root`` — the same split on every machine, whatever the listing order."""
    root = Path(root)
    train, val = [], []
    for p in list_images(root):
        (val if is_held_out(p.relative_to(root).as_posix(), fraction) else train).append(p)
    return train, val


def load_image(path: str | Path) -> torch.Tensor:
    """(3, H, W) uint8 RGB tensor from a JPEG/PNG file (kornia-rs decoder)."""
    path = Path(path)
    try:
        return kornia.io.load_image(str(path), kornia.io.ImageLoadType.RGB8)
    except Exception as err:  # kornia-rs raises plain exceptions with a message
        raise InputError(f"{path}: cannot read image ({err})") from None


def save_image(path: str | Path, image: torch.Tensor) -> Path:
    """Write a (3, H, W) float [0, 1] or uint8 tensor as PNG (lossless)."""
    path = Path(path)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected (3, H, W), got {tuple(image.shape)}")
    if image.dtype != torch.uint8:
        image = (image.clamp(0, 1) * 255.0).round().to(torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    kornia.io.write_image(str(path.with_suffix(".png")), image.contiguous())
    return path.with_suffix(".png")


def to_float(image: torch.Tensor) -> torch.Tensor:
    return image.float().div_(255.0) if image.dtype == torch.uint8 else image.float()


# --------------------------------------------------------------------------------- paired folder
def _pair_key(stem: str) -> str:
    for prefix in _NAME_PREFIXES:
        if stem.lower().startswith(prefix) and stem[len(prefix):].isdigit():
            return stem[len(prefix):]
    return stem


def _find_dir(root: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


class PairedFolder(torch.utils.data.Dataset):
    """Paired images in the LOL layout: ``root/low/<name>`` with ``root/high/<name>``.

    Files are matched by name (stem; ``normal``/``high`` folders and LOL-v2's ``low00001`` /
    ``normal00001`` prefixes are accepted). Items are ``(low, high, name)`` with float (3, H, W)
    tensors in [0, 1]. An unmatched file or a size mismatch is an :class:`InputError`.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        low_dir, high_dir = _find_dir(self.root, LOW_DIRS), _find_dir(self.root, HIGH_DIRS)
        if low_dir is None or high_dir is None:
            raise InputError(f"{self.root}: expected low/ and high/ folders (LOL layout)")
        lows = {_pair_key(p.stem): p for p in list_images(low_dir)}
        highs = {_pair_key(p.stem): p for p in list_images(high_dir)}
        unmatched = sorted(set(lows) ^ set(highs))
        if unmatched:
            raise InputError(
                f"{self.root}: {len(unmatched)} file(s) without a partner in low/ and high/ "
                f"(e.g. {unmatched[0]!r})"
            )
        if not lows:
            raise InputError(f"{self.root}: no images in {low_dir.name}/")
        self.keys = sorted(lows)
        self.pairs = [(lows[k], highs[k]) for k in self.keys]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        low_path, high_path = self.pairs[i]
        low, high = to_float(load_image(low_path)), to_float(load_image(high_path))
        if low.shape != high.shape:
            raise InputError(f"{low_path.name}: low {tuple(low.shape)} and high {tuple(high.shape)} differ in size")
        return low, high, self.keys[i]


# ------------------------------------------------------------------------------ synthetic pairs
def random_crop_scaled(image: torch.Tensor, crop: int, generator: torch.Generator, scale: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
    """A random ``crop`` x ``crop`` patch of a (3, H, W) image, taken from a region
    ``crop / s`` wide (s uniform in ``scale``) and resized down (antialiased), then randomly
    flipped. Images smaller than the region are upscaled first."""
    _, h, w = image.shape
    s = scale[0] + (scale[1] - scale[0]) * float(torch.rand((), generator=generator))
    region = max(crop, int(round(crop / s)))
    img = to_float(image)
    if min(h, w) < region:
        img = kornia.geometry.transform.resize(img[None], region, side="short", antialias=True)[0]
        _, h, w = img.shape
    top = int(torch.randint(0, h - region + 1, (), generator=generator))
    left = int(torch.randint(0, w - region + 1, (), generator=generator))
    patch = img[:, top : top + region, left : left + region]
    if region != crop:
        patch = kornia.geometry.transform.resize(patch[None], (crop, crop), antialias=True)[0].clamp(0, 1)
    flips = torch.rand(2, generator=generator)
    if flips[0] < 0.5:
        patch = patch.flip(-1)
    if flips[1] < 0.5:
        patch = patch.flip(-2)
    return patch.contiguous()


class SyntheticPairs:
    """Synthetic low-light batches on the fly from normal-light images held in RAM (uint8).

    ``batch(generator)`` -> ``(low, high)`` float (B, 3, crop, crop). All randomness (image choice,
    crop, scale, flips, degradation, noise) comes from ``generator``.
    """

    def __init__(self, paths: Sequence[str | Path], *, crop: int = 128, batch_size: int = 8,
                 degradation: DegradeConfig | None = None, scale: tuple[float, float] = (0.6, 1.0)) -> None:
        if not paths:
            raise InputError("no training images")
        self.paths = [Path(p) for p in paths]
        self.images = [load_image(p) for p in self.paths]
        self.crop, self.batch_size, self.scale = int(crop), int(batch_size), tuple(scale)
        self.degradation = degradation or DegradeConfig()

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(self.images), (self.batch_size,), generator=generator).tolist()
        high = torch.stack([random_crop_scaled(self.images[i], self.crop, generator, self.scale) for i in idx])
        params = sample_degradation(self.batch_size, generator, self.degradation)
        return degrade_pair(high, params, generator)  # the target is `high` unless night light changes it


def name_seed(name: str, seed: int) -> int:
    """A stable 63-bit seed from a file name and a base seed (same pair on every machine)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "big") >> 1


def fixed_pair(image: torch.Tensor, name: str, seed: int, degradation: DegradeConfig | None = None,
               max_side: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out pair for one image: deterministic per ``(name, seed)``; optionally downscaled
    so the long side is at most ``max_side`` and cropped to even sizes (4:2:0 for the H.264 pass)."""
    img = to_float(image)
    if max_side is not None and max(img.shape[-2:]) > max_side:
        img = kornia.geometry.transform.resize(img[None], max_side, side="long", antialias=True)[0].clamp(0, 1)
    h, w = img.shape[-2] // 2 * 2, img.shape[-1] // 2 * 2
    high = img[:, :h, :w][None].contiguous()
    g = torch.Generator().manual_seed(name_seed(name, seed))
    params = sample_degradation(1, g, degradation)
    low, target = degrade_pair(high, params, g)
    return low[0], target[0]


def validation_pairs(paths: Sequence[Path], root: str | Path, *, seed: int = 1234, crop: int | None = 256,
                     degradation: DegradeConfig | None = None, limit: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor, str]]:
    """Fixed held-out pairs (centre ``crop`` of each image, or the whole image) for validation
    during training: ``[(low, high, name)]``."""
    root = Path(root)
    out = []
    for p in list(paths)[: limit or None]:
        name = p.relative_to(root).as_posix()
        img = load_image(p)
        if crop is not None:
            _, h, w = img.shape
            c = min(crop, h, w) // 16 * 16
            top, left = (h - c) // 2, (w - c) // 2
            img = img[:, top : top + c, left : left + c]
        low, high = fixed_pair(img, name, seed, degradation)
        out.append((low, high, name))
    return out


# ------------------------------------------------------------------------------------------ clips
def read_video_window(path: str | Path, start: int, length: int) -> torch.Tensor:
    """``length`` consecutive decoded frames from index ``start`` of a video file, as uint8
    (T, 3, H, W). decord (the ``train`` extra) when installed, else PyAV (decodes from the start)."""
    path = Path(path)
    try:
        import decord  # type: ignore

        vr = decord.VideoReader(str(path))
        if start + length > len(vr):
            raise InputError(f"{path}: window {start}+{length} past the end ({len(vr)} frames)")
        frames = vr.get_batch(list(range(start, start + length))).asnumpy()
    except ImportError:
        import av

        frames_list = []
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i >= start:
                    frames_list.append(frame.to_ndarray(format="rgb24"))
                if len(frames_list) == length:
                    break
        if len(frames_list) < length:
            raise InputError(f"{path}: window {start}+{length} past the end")
        frames = np.stack(frames_list)
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()


def video_frame_count(path: str | Path) -> int:
    try:
        import decord  # type: ignore

        return len(decord.VideoReader(str(path)))
    except ImportError:
        import av

        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode(video=0))


def camera_motion_clip(image: torch.Tensor, frames: int, crop: int, generator: torch.Generator,
                       max_shift: float = 6.0, max_zoom: float = 0.02) -> torch.Tensor:
    """A (T, 3, crop, crop) clip of a still (3, H, W) image seen by a drifting camera: a random
    linear pan of up to ``max_shift`` px per frame plus jitter and a slow zoom (kornia warp).

    Example:
        >>> camera_motion_clip(torch.rand(3, 96, 96), 4, 32, torch.Generator().manual_seed(0)).shape
        torch.Size([4, 3, 32, 32])
    """
    img = to_float(image)[None]
    _, _, h, w = img.shape
    margin = int(math.ceil(max_shift * frames + 2))
    if min(h, w) < crop + 2 * margin:
        raise ValueError(f"image {h}x{w} too small for a {crop} px clip with {max_shift} px/frame motion")
    r = torch.rand(6, generator=generator)
    cy = margin + crop / 2 + float(r[0]) * (h - crop - 2 * margin)
    cx = margin + crop / 2 + float(r[1]) * (w - crop - 2 * margin)
    vy, vx = (float(r[2]) * 2 - 1) * max_shift, (float(r[3]) * 2 - 1) * max_shift
    dz = (float(r[4]) * 2 - 1) * max_zoom
    jitter = (torch.rand(frames, 2, generator=generator) - 0.5)
    mats = []
    for t in range(frames):
        z = 1.0 + dz * t
        oy, ox = cy + vy * t + float(jitter[t, 0]), cx + vx * t + float(jitter[t, 1])
        # output pixel (u, v) samples source (ox + (u - crop/2) / z, oy + (v - crop/2) / z);
        # warp_affine wants the source -> output matrix.
        mats.append(torch.tensor([[z, 0.0, crop / 2 - z * ox], [0.0, z, crop / 2 - z * oy]]))
    m = torch.stack(mats)
    return kornia.geometry.transform.warp_affine(img.expand(frames, -1, -1, -1), m, (crop, crop), align_corners=True).clamp(0, 1)


class ClipPairs:
    """Synthetic low-light clips (B, T, 3, crop, crop) with one degradation per clip and per-frame
    noise, from frame folders (a folder of consecutive frames per sequence), video files, or still
    images with random camera motion. ``batch(generator)`` -> ``(low, high)``."""

    def __init__(self, *, frame_dirs: Sequence[str | Path] = (), videos: Sequence[str | Path] = (),
                 stills: Sequence[str | Path] = (), frames: int = 3, crop: int = 96, batch_size: int = 2,
                 degradation: DegradeConfig | None = None) -> None:
        self.sequences = [list_images(d) for d in frame_dirs]
        self.sequences = [s for s in self.sequences if len(s) >= frames]
        self.videos = [(Path(v), video_frame_count(v)) for v in videos]
        self.videos = [(v, n) for v, n in self.videos if n >= frames]
        self.stills = [Path(p) for p in stills]
        self.sources = [("seq", i) for i in range(len(self.sequences))] + \
                       [("video", i) for i in range(len(self.videos))] + \
                       [("still", i) for i in range(len(self.stills))]
        if not self.sources:
            raise InputError("no clip sources (frame folders, videos or still images)")
        self.frames, self.crop, self.batch_size = int(frames), int(crop), int(batch_size)
        self.degradation = degradation or DegradeConfig()

    def _clip(self, generator: torch.Generator) -> torch.Tensor:
        kind, i = self.sources[int(torch.randint(0, len(self.sources), (), generator=generator))]
        if kind == "still":
            return camera_motion_clip(load_image(self.stills[i]), self.frames, self.crop, generator)
        if kind == "seq":
            seq = self.sequences[i]
            start = int(torch.randint(0, len(seq) - self.frames + 1, (), generator=generator))
            window = torch.stack([load_image(p) for p in seq[start : start + self.frames]])
        else:
            path, n = self.videos[i]
            start = int(torch.randint(0, n - self.frames + 1, (), generator=generator))
            window = read_video_window(path, start, self.frames)
        _, _, h, w = window.shape
        top = int(torch.randint(0, h - self.crop + 1, (), generator=generator))
        left = int(torch.randint(0, w - self.crop + 1, (), generator=generator))
        return to_float(window[:, :, top : top + self.crop, left : left + self.crop])

    def batch(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        high = torch.stack([self._clip(generator) for _ in range(self.batch_size)])
        params = sample_degradation(self.batch_size, generator, self.degradation)
        return degrade_pair(high, params, generator)  # the target is `high` unless night light changes it


class PairedCrops:
    """Random aligned crops of a :class:`PairedFolder` (images held in RAM as uint8), flipped
    together: ``batch(generator)`` -> ``(low, high)`` float (B, 3, crop, crop)."""

    def __init__(self, root: str | Path, *, crop: int = 128, batch_size: int = 8) -> None:
        folder = PairedFolder(root)
        self.pairs = [(load_image(lo), load_image(hi)) for lo, hi in folder.pairs]
        for (lo, hi), key in zip(self.pairs, folder.keys):
            if lo.shape != hi.shape:
                raise InputError(f"{folder.root}: {key}: low and high differ in size")
            if min(lo.shape[-2:]) < crop:
                raise InputError(f"{folder.root}: {key} is smaller than the {crop} px crop")
        self.crop, self.batch_size = int(crop), int(batch_size)

    def __len__(self) -> int:
        return len(self.pairs)

    def batch(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        lows, highs = [], []
        for i in torch.randint(0, len(self.pairs), (self.batch_size,), generator=generator).tolist():
            lo, hi = self.pairs[i]
            _, h, w = lo.shape
            top = int(torch.randint(0, h - self.crop + 1, (), generator=generator))
            left = int(torch.randint(0, w - self.crop + 1, (), generator=generator))
            pair = torch.stack([lo, hi])[:, :, top : top + self.crop, left : left + self.crop]
            flips = torch.rand(2, generator=generator)
            if flips[0] < 0.5:
                pair = pair.flip(-1)
            if flips[1] < 0.5:
                pair = pair.flip(-2)
            lows.append(pair[0])
            highs.append(pair[1])
        return to_float(torch.stack(lows)), to_float(torch.stack(highs))
