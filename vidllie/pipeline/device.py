"""Device, precision and memory helpers for the pipeline.

    device = resolve_device("auto")            # cuda if present, else mps, else cpu
    dtype = resolve_precision("auto", device)  # fp16 on CUDA, fp32 elsewhere
    with autocast(device, dtype):
        y = model(x)
"""

from __future__ import annotations

import contextlib
import resource
import sys

import torch

from vidllie.errors import DeviceError, InputError

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto|cpu|cuda|cuda:i|mps`` -> a usable ``torch.device`` (``DeviceError`` otherwise)."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise DeviceError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r} requested but CUDA is not available in this torch build/machine")
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {spec!r} does not exist ({torch.cuda.device_count()} CUDA device(s) found)")
        return torch.device("cuda", index)
    if device.type == "mps":
        if not _mps_available():
            raise DeviceError("device 'mps' requested but Apple MPS is not available")
        return device
    if device.type == "cpu":
        return device
    raise DeviceError(f"unsupported device {spec!r}; use auto, cpu, cuda, cuda:N or mps")


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def resolve_precision(precision: str | None, device: torch.device) -> torch.dtype:
    """``auto|fp32|fp16|bf16`` -> dtype. ``auto`` is fp16 on CUDA and fp32 on CPU/MPS."""
    precision = (precision or "auto").strip().lower()
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision not in PRECISIONS:
        raise InputError(f"--precision {precision!r} is not a precision: use auto, fp32, fp16 or bf16")
    dtype = PRECISIONS[precision]
    if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"bf16 is not supported on {torch.cuda.get_device_name(device)}; use fp16")
    return dtype


def precision_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in PRECISIONS.items()}[dtype]


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` for reduced precision; a no-op for fp32."""
    if dtype is torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def is_oom(err: BaseException) -> bool:
    """True for an out-of-memory error from CUDA (``torch.OutOfMemoryError``) or MPS."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    # MPS reports OOM as a plain RuntimeError.
    return isinstance(err, RuntimeError) and "MPS backend out of memory" in str(err)


def empty_cache(device: torch.device) -> None:
    """Give cached blocks back after an OOM so the retry starts from a clean allocator."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def device_total_memory(device: torch.device) -> int | None:
    """Total memory of the accelerator in bytes (None for the CPU)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "mps":
        return int(torch.mps.recommended_max_memory())
    return None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_device_memory(device: torch.device) -> int | None:
    """Peak bytes allocated by torch on the device since the last reset (None on CPU)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    if device.type == "mps":
        return int(torch.mps.driver_allocated_memory())
    return None


def peak_host_rss() -> int:
    """Peak resident set size of this process in bytes (the OS high-water mark)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS reports bytes, Linux KiB


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return "cpu"
