"""Host <-> device transfer of frames as integers (4x less traffic than float32).

This module owns the integer formats on the wire and their conversion on the device: uint8, and
uint16 carried as int16 bits (not every device backend has uint16 kernels); on CUDA through
pinned memory with non-blocking copies::

    x = upload(images, device)                 # list of (H, W, 3) uint8 -> (B, 3, H, W) float32
    arr, ready = download(y, device, wide=False)
    if ready is not None:
        ready()                                # wait for the non-blocking copy
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import torch


def bits_per_component(pix_fmt: str | None) -> int:
    """Bits per component of a pixel format name.

    Example:
        >>> bits_per_component("yuv420p10le"), bits_per_component("yuv420p"), bits_per_component(None)
        (10, 8, 8)
    """
    m = re.search(r"p(\d+)(le|be)$", pix_fmt or "")
    return int(m.group(1)) if m else 8


def upload(images: list[np.ndarray], device: torch.device, channels_last: bool = True) -> torch.Tensor:
    """HxWx3 uint8/uint16 frames -> (B, 3, H, W) float32 in [0, 1] on the device.

    The integer frames travel and are converted on the device; on CUDA through pinned memory
    with a non-blocking copy.
    """
    first = images[0]
    wide = first.dtype == np.uint16
    # uint16 travels as int16 bits (not every device backend has uint16 kernels).
    host_dtype = torch.int16 if wide else torch.uint8
    shape = (len(images), *first.shape)
    if device.type == "cuda":
        host = torch.empty(shape, dtype=host_dtype, pin_memory=True)
        for i, img in enumerate(images):
            host[i].copy_(torch.from_numpy(img.view(np.int16) if wide else img))
        x = host.to(device, non_blocking=True)
    else:
        stacked = np.stack(images)
        x = torch.from_numpy(stacked.view(np.int16) if wide else stacked).to(device)
    return to_float(x, channels_last)


def to_float(x: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """(B, H, W, 3) uint8 (or uint16 carried as int16 bits) on the device -> (B, 3, H, W)
    float32 in [0, 1], converted on the device.

    Example:
        >>> to_float(torch.full((1, 2, 2, 3), 255, dtype=torch.uint8)).shape
        torch.Size([1, 3, 2, 2])
    """
    x = x.permute(0, 3, 1, 2)  # a free view, and already channels-last in memory
    if x.dtype == torch.int16:
        x = x.to(torch.int32).bitwise_and_(0xFFFF).float().div_(65535.0)
    else:
        x = x.float().div_(255.0)
    if not channels_last:
        x = x.contiguous()
    return x


def download(y: torch.Tensor, device: torch.device, wide: bool) -> tuple[np.ndarray, Callable[[], None] | None]:
    """(B, 3, H, W) in [0, 1] -> (B, H, W, 3) uint8/uint16 on the host, quantised on the device.

    Returns the array and ``ready()``, which waits until a non-blocking copy has landed (None
    when the array is ready at once).
    """
    if wide:
        # Offset into int16's range: int16 exists on every backend, uint16 does not.
        q = (y.mul(65535.0).round() - 32768.0).to(torch.int16)
    else:
        q = y.mul(255.0).round().to(torch.uint8)
    q = q.permute(0, 2, 3, 1).contiguous()
    ready = None
    if device.type == "cuda":
        host = torch.empty(q.shape, dtype=q.dtype, pin_memory=True)
        host.copy_(q, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        ready = event.synchronize
    else:
        host = q.cpu()
    arr = host.numpy()
    if wide:
        arr = arr.view(np.uint16)
        if ready is None:
            arr ^= 0x8000
        else:
            sync = ready

            def ready() -> None:
                sync()
                np.bitwise_xor(arr, 0x8000, out=arr)

    return arr, ready


def check_image(img: np.ndarray) -> np.ndarray:
    """A frame as the pipeline takes it: (H, W, 3) uint8/uint16, C-contiguous (ValueError otherwise)."""
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        shape = getattr(img, "shape", None)
        raise ValueError(f"frames must be (H, W, 3) RGB arrays, got shape {shape}")
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"frames must be uint8 (or uint16 for >8-bit video), got {img.dtype}")
    if not img.flags.c_contiguous:
        img = np.ascontiguousarray(img)
    return img
