"""The enhancement pipeline and the Python API.

:class:`Enhancer` loads a model (and its DINO guide) once and enhances frames batch by batch on a
device: uint8/uint16 frames are uploaded and converted there, DINO features come from the key-frame
cache, the model runs under autocast (tiled when a frame is too large), the output is clamped,
temporally smoothed, quantised on the device and downloaded. Cache and smoothing state carry over
from batch to batch, so a stream is enhanced as one sequence::

    from vidllie import Enhancer
    enhancer = Enhancer("default", device="auto")
    for out in enhancer.enhance_frames(frames):      # frames: iterable of (H, W, 3) uint8
        show(out)                                    # (H, W, 3) uint8, same order
    stats = enhancer.enhance_video("night.mp4", "night_enhanced.mp4")

Tiling is exact: a large frame runs through the model in spatial chunks
(:func:`vidllie.models.chunked.chunked_forward`) with frame-wide attention statistics, so the
output equals the untiled one. On an out-of-memory error the same frames are retried with half the
batch, then in chunks of decreasing size, and, when even the frame's stage maps do not fit, in
independent feathered tiles (approximate, no seams); no frame is ever dropped, and if nothing fits
a ``DeviceError`` is raised.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

from vidllie.errors import DeviceError, WeightsError
from vidllie.models.chunked import chunked_forward
from vidllie.models.guided_restormer import GuidedRestormer
from vidllie.pipeline.device import (
    autocast,
    device_name,
    device_total_memory,
    empty_cache,
    is_oom,
    peak_device_memory,
    peak_host_rss,
    precision_name,
    reset_peak_memory,
    resolve_device,
    resolve_precision,
)
from vidllie.pipeline.dino_cache import DinoCache
from vidllie.pipeline.scene import SceneCutDetector, luma_thumbnails
from vidllie.pipeline.temporal import TemporalSmoother
from vidllie.pipeline.tiling import tiled_forward
from vidllie.pipeline.timing import StageTimer

DEFAULT_BATCH_SIZE = 4
DEFAULT_TILE_OVERLAP = 32
DEFAULT_TEMPORAL = 0.8
MIN_TILE = 128  # below this the overlaps dominate; an OOM here is reported instead
# Rough peak activation memory of the network per pixel at its working resolution, in units of
# (dim x element size): Restormer's level-1 GDFN holds ~2 x 2.66 x 2*dim channels plus skips.
_ACTIVATION_FACTOR = 40
# What chunked execution still holds for the whole frame, same units: the C-channel stage maps and
# skips (level 1: enc1, the 2*dim decoder input and output, the upsampled map; deeper levels add
# about half of that again).
_CHUNKED_MAP_FACTOR = 12
_MEMORY_FRACTION = 0.5  # share of the device memory the automatic pixel budget may plan for

ENHANCER_OPTIONS = (
    "model", "dino", "device", "precision", "batch_size", "tile", "tile_overlap", "temporal",
    "dino_cache", "cache_threshold", "cache_max_age", "scene_cut_threshold", "compile",
    "channels_last", "threads",
)


def default_cpu_threads() -> int:
    """Torch threads for CPU inference: every core this process may use.

    Decoding and encoding cost a few percent of the model's time, so they fit between the
    model's ops. Measured on an idle 2-core machine (`vidllie bench`, real 640x360 night clip):
    tiny model 1.24 fps with 2 threads vs 0.70 fps with 1, micro model 4.39 vs 2.64 fps.
    On a machine shared with other busy processes, torch's spin-waiting OpenMP workers lose
    whole scheduler slices: then pass fewer (``--threads``).
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (None: leave as is), then restore."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _versions() -> dict[str, str | None]:
    import av
    import kornia
    import transformers

    import vidllie

    return {
        "vidllie": vidllie.__version__, "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "av": av.__version__, "ffmpeg": _ffmpeg_version(av),
        "kornia": kornia.__version__, "transformers": transformers.__version__, "numpy": np.__version__,
    }


def _ffmpeg_version(av_module) -> str | None:
    try:
        return av_module.library_versions.get("libavcodec") and ".".join(
            map(str, av_module.library_versions["libavcodec"])
        )
    except Exception:  # noqa: BLE001 - informational only
        return None


def _bits_of(pix_fmt: str | None) -> int:
    """Bits per component of a pixel format name (``yuv420p10le`` -> 10, ``yuv420p`` -> 8)."""
    m = re.search(r"p(\d+)(le|be)$", pix_fmt or "")
    return int(m.group(1)) if m else 8


class Enhancer:
    """Loads a vidllie model once and enhances frame streams and video files.

    Args:
        model: ``"default"`` (the bundled model), a checkpoint path, or a ``GuidedRestormer``.
        dino: for a DINO-guided model: ``None`` = the backbone named in the model config, a hub id
            or local folder to load it from, ``"none"`` to run without guidance, or a module
            (e.g. a ``DinoGuide``) mapping (B, 3, H, W) frames to a list of maps.
        device: ``auto|cpu|cuda|cuda:N|mps``.
        precision: ``auto|fp32|fp16|bf16`` (autocast; auto = fp16 on CUDA, fp32 elsewhere).
        batch_size: frames per model call.
        tile: tile (chunk) size in pixels; ``None`` = automatic (tiles only when a frame exceeds
            the device's pixel budget, CUDA/MPS), ``0`` = never tile. Tiling is exact for
            Restormer models: every block runs chunk by chunk with frame-wide attention
            statistics (:func:`~vidllie.models.chunked.chunked_forward`), so the output equals the
            untiled one and only memory changes. Independent feathered tiles (approximate) are
            the fallback when even that does not fit, and the mode for other models.
        tile_overlap: overlap of neighbouring independent tiles (feathered fallback), pixels.
        temporal: temporal smoothing strength in [0, 1]; 0 turns it off.
        dino_cache, cache_threshold, cache_max_age: DINO key-frame cache (see ``DinoCache``).
        scene_cut_threshold: thumbnail difference that counts as a scene cut (resets smoothing
            and the cache).
        compile: wrap the model in ``torch.compile``.
        channels_last: run convolutions in channels-last layout (faster on CPU and GPU).
        threads: torch intra-op threads while enhancing on the CPU (``None``: all cores,
            see :func:`default_cpu_threads`); restored afterwards. Ignored on GPUs.

    Example:
        >>> enhancer = Enhancer("model.safetensors", device="cpu", temporal=0.8)   # doctest: +SKIP
        >>> out = list(enhancer.enhance_frames(frames))                            # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | os.PathLike | nn.Module = "default",
        *,
        dino: str | os.PathLike | nn.Module | None = None,
        device: str | torch.device = "auto",
        precision: str = "auto",
        batch_size: int = DEFAULT_BATCH_SIZE,
        tile: int | None = None,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        temporal: float = DEFAULT_TEMPORAL,
        dino_cache: bool = True,
        cache_threshold: float = 0.02,
        cache_max_age: int = 30,
        scene_cut_threshold: float = 0.1,
        compile: bool = False,
        channels_last: bool = True,
        threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if tile is not None and tile < 0:
            raise ValueError(f"tile must be >= 0 (0 = off), got {tile}")
        if tile and tile <= 3 * tile_overlap:
            raise ValueError(f"tile ({tile}) must be more than three times the overlap ({tile_overlap})")
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.batch_size = batch_size
        self.tile = tile
        self.tile_overlap = tile_overlap
        self.channels_last = channels_last
        self.threads = (threads or default_cpu_threads()) if self.device.type == "cpu" else None
        self.timer = StageTimer(self.device)

        self.model, self.model_source = self._load_model(model)
        self.model.to(self.device)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.model.eval().requires_grad_(False)
        self._model_fn: nn.Module | Callable = torch.compile(self.model) if compile else self.model
        self.config = getattr(self.model, "config", None)
        self.align = int(getattr(self.model, "size_multiple", 8))

        self.dino, self.dino_source = self._load_dino(dino)
        if self.dino is not None:
            self.dino.to(self.device)
        self.cache = (
            DinoCache(self._dino_call, enabled=dino_cache, threshold=cache_threshold, max_age=cache_max_age)
            if self.dino is not None
            else None
        )
        self.cuts = SceneCutDetector(scene_cut_threshold)
        self.smoother = TemporalSmoother(temporal)
        # Adapted on out-of-memory errors and kept for the rest of the run.
        self._max_batch = batch_size
        self._oom_tile: int | None = None
        # Exact chunked tiling until the frame's stage maps alone do not fit (or the model is not
        # a Restormer); then independent feathered tiles.
        self._feathered = not isinstance(self.model, GuidedRestormer)
        self.oom_retries = 0
        self._frame_size: tuple[int, int] | None = None

    # ------------------------------------------------------------------ loading
    def _load_model(self, model) -> tuple[nn.Module, str]:
        if isinstance(model, nn.Module):
            return model, type(model).__name__
        from vidllie.models import load_model

        return load_model(model if model is not None else "default"), str(model)

    def _load_dino(self, dino) -> tuple[nn.Module | None, str | None]:
        config = self.config
        guided = bool(config is not None and getattr(config, "guided", False))
        if isinstance(dino, nn.Module):
            if not guided:
                raise WeightsError("a DINO module was given but the model is not DINO-guided")
            return dino, type(dino).__name__
        if dino is not None and str(dino).lower() == "none":
            return None, None
        if not guided:
            if dino is not None:
                warnings.warn(f"the model is not DINO-guided; ignoring --dino {dino}", UserWarning, stacklevel=3)
            return None, None
        from vidllie.models.dino import DinoGuide

        guide = DinoGuide(config.dino, source=dino) if dino is not None else DinoGuide(config.dino)
        return guide, str(dino if dino is not None else config.dino.backbone)

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Start a new stream: forget smoothing state, the DINO key frame and the last scene."""
        self.smoother.reset()
        self.cuts.reset()
        if self.cache is not None:
            self.cache.reset()
        self._frame_size = None

    def reset_stats(self) -> None:
        """Start new run statistics: stage timers, cut and OOM counts, cache hits, memory peaks."""
        self.timer = StageTimer(self.device)
        self.cuts.cuts = 0
        self.oom_retries = 0
        if self.cache is not None:
            self.cache.reset_stats()
        reset_peak_memory(self.device)

    # ------------------------------------------------------------------ device steps
    def _upload(self, images: list[np.ndarray]) -> torch.Tensor:
        """HxWx3 uint8/uint16 frames -> (B, 3, H, W) float32 in [0, 1] on the device.

        The integer frames travel (4x less than float32) and are converted on the device; on CUDA
        through pinned memory with a non-blocking copy.
        """
        first = images[0]
        wide = first.dtype == np.uint16
        # uint16 travels as int16 bits (not every device backend has uint16 kernels).
        host_dtype = torch.int16 if wide else torch.uint8
        shape = (len(images), *first.shape)
        if self.device.type == "cuda":
            host = torch.empty(shape, dtype=host_dtype, pin_memory=True)
            for i, img in enumerate(images):
                host[i].copy_(torch.from_numpy(img.view(np.int16) if wide else img))
            x = host.to(self.device, non_blocking=True)
        else:
            stacked = np.stack(images)
            x = torch.from_numpy(stacked.view(np.int16) if wide else stacked).to(self.device)
        return self.to_float(x)

    def to_float(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 (or uint16 carried as int16 bits) on the device -> (B, 3, H, W)
        float32 in [0, 1], converted on the device."""
        x = x.permute(0, 3, 1, 2)  # a free view, and already channels-last in memory
        if x.dtype == torch.int16:
            x = x.to(torch.int32).bitwise_and_(0xFFFF).float().div_(65535.0)
        else:
            x = x.float().div_(255.0)
        if not self.channels_last:
            x = x.contiguous()
        return x

    def _download(self, y: torch.Tensor, wide: bool) -> tuple[np.ndarray, Callable[[], None] | None]:
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
        if self.device.type == "cuda":
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

    def _dino_call(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """DINO on ``frames`` with OOM fallback: halve the sub-batch down to one frame."""
        outs: list[list[torch.Tensor]] = []
        i, step = 0, frames.shape[0]
        while i < frames.shape[0]:
            n = min(step, frames.shape[0] - i)
            try:
                with autocast(self.device, self.dtype):
                    outs.append(self.dino(frames[i : i + n]))
                i += n
            except Exception as err:
                if not is_oom(err):
                    raise
                del err
                empty_cache(self.device)
                self.oom_retries += 1
                if n == 1:
                    raise DeviceError(
                        f"out of memory on {self.device} running DINO on a single frame; "
                        "try --dino none, --device cpu or a smaller DINO"
                    ) from None
                step = max(1, n // 2)
        if len(outs) == 1:
            return outs[0]
        return [torch.cat(parts) for parts in zip(*outs)]

    def _auto_tile(self, h: int, w: int) -> int | None:
        """Tile size for an h x w frame (None = whole frames), and cap the batch to the budget."""
        if self.tile == 0:
            return None
        if self._oom_tile is not None:
            return self._oom_tile
        if self.tile:
            return self.tile
        total = device_total_memory(self.device)
        if total is None or self.config is None:
            return None  # host memory: no budget, the OOM fallback is the safety net
        rc = self.config.restormer
        elem = 4 if self.dtype is torch.float32 else 2
        bytes_per_pixel = _ACTIVATION_FACTOR * rc.dim * elem / rc.pixel_unshuffle**2
        budget = int(_MEMORY_FRACTION * total / bytes_per_pixel)  # pixels per model call
        if h * w * self._max_batch > budget:
            self._max_batch = max(1, budget // (h * w))
        if h * w <= budget:
            return None
        if h * w * _CHUNKED_MAP_FACTOR > budget * _ACTIVATION_FACTOR:
            self._feathered = True  # even the chunked path's full-frame maps exceed the budget
        side = int(math.sqrt(budget)) // self.align * self.align
        return max(MIN_TILE, side)

    def _forward(self, x: torch.Tensor, guidance: list[torch.Tensor] | None, tile: int | None) -> torch.Tensor:
        def fn(t: torch.Tensor, g: list[torch.Tensor] | None) -> torch.Tensor:
            return self._model_fn(t, guidance=g) if g is not None else self._model_fn(t)

        with autocast(self.device, self.dtype):
            if tile and tile >= max(x.shape[-2:]):
                return fn(x, guidance).float()  # one tile: the plain forward is the same thing
            if tile and not self._feathered:
                # Exact: the same output as untiled, in the memory of the stage maps + one chunk.
                return chunked_forward(self.model, x, guidance, chunk=tile).float()
            if tile:
                grid = None
                if self.config is not None and guidance is not None:
                    from vidllie.models.dino import dino_grid

                    dc = self.config.dino
                    grid = lambda hh, ww: dino_grid(hh, ww, dc.short_side, dc.patch_size)  # noqa: E731
                return tiled_forward(fn, x, tile, self.tile_overlap, guidance=guidance, grid=grid, align=self.align)
            return fn(x, guidance).float()

    def _infer(self, x: torch.Tensor, guidance: list[torch.Tensor] | None) -> torch.Tensor:
        """The model on a batch, with the out-of-memory fallback (same frames, smaller pieces)."""
        h, w = x.shape[-2:]
        outs: list[torch.Tensor] = []
        i = 0
        while i < x.shape[0]:
            tile = self._auto_tile(h, w)
            n = min(self._max_batch, x.shape[0] - i)
            g = None if guidance is None else [m[i : i + n] for m in guidance]
            try:
                outs.append(self._forward(x[i : i + n], g, tile))
                i += n
            except Exception as err:
                if not is_oom(err):
                    raise
                del err
                g = None
                empty_cache(self.device)
                self._shrink_after_oom(n, tile, h, w)
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def _shrink_after_oom(self, n: int, tile: int | None, h: int, w: int) -> None:
        self.oom_retries += 1
        if n > 1:
            self._max_batch = max(1, n // 2)
            warnings.warn(f"out of memory on {self.device}: batch size lowered to {self._max_batch}", UserWarning, stacklevel=4)
            return
        current = tile or max(h, w)
        smaller = (current // 2) // self.align * self.align
        too_small = smaller < MIN_TILE or smaller <= 3 * self.tile_overlap
        if too_small and tile and not self._feathered:
            # Small chunks still failed: the frame's full-size stage maps are what does not fit.
            # Last resort, independent tiles (each holds only its own maps), from half the frame.
            self._feathered = True
            smaller = (max(h, w) // 2) // self.align * self.align
            too_small = smaller < MIN_TILE or smaller <= 3 * self.tile_overlap
        if too_small:
            raise DeviceError(
                f"out of memory on {self.device} even with one frame in tiles of {current} px; "
                "try --device cpu, --precision fp16 or a smaller model"
            )
        self._oom_tile = smaller
        kind = "independent tiles (approximate)" if self._feathered else "chunks (exact)"
        warnings.warn(f"out of memory on {self.device}: tiling frames into {smaller} px {kind}", UserWarning, stacklevel=4)

    # ------------------------------------------------------------------ one batch
    def process_batch(
        self, images: list[np.ndarray], *, wide_output: bool | None = None
    ) -> tuple[np.ndarray, Callable[[], None] | None]:
        """Enhance consecutive same-sized frames; returns ``(array (B, H, W, 3), ready)``.

        The building block of :meth:`enhance_frames` and :meth:`enhance_video`; call ``ready()``
        (when not None) before reading the array. Keeps the stream state. The output is uint16
        when ``wide_output`` (default: when the input is uint16), else uint8.
        """
        if not images:
            raise ValueError("empty batch")
        images = [_check_image(img) for img in images]
        first = images[0]
        if any(img.shape != first.shape or img.dtype != first.dtype for img in images):
            raise ValueError("all frames of a batch must have one shape and dtype")
        size = first.shape[:2]
        if self._frame_size is not None and size != self._frame_size:
            self.reset()  # new resolution: nothing to compare with
        self._frame_size = size
        wide = first.dtype == np.uint16 if wide_output is None else wide_output
        n, timer = len(images), self.timer
        with torch.inference_mode(), torch_threads(self.threads):
            with timer.stage("upload", n):
                x = self._upload(images)
            y = self.compute(x)
            with timer.stage("download", n):
                return self._download(y, wide)

    def compute(self, x: torch.Tensor) -> torch.Tensor:
        """The device work on a batch already on the device: scene check, DINO (through the
        cache), model, smoothing. (B, 3, H, W) in [0, 1] -> (B, 3, H, W) in [0, 1]; keeps the
        stream state. ``vidllie bench`` times this alone as "model-only"."""
        n, timer = x.shape[0], self.timer
        with torch.inference_mode(), torch_threads(self.threads):
            with timer.stage("scene", n):
                thumbs = luma_thumbnails(x)
                cuts = self.cuts(thumbs)
            guidance = None
            if self.cache is not None:
                with timer.stage("dino", n):
                    guidance = self.cache(x, thumbs, cuts)
            with timer.stage("model", n):
                y = self._infer(x, guidance)
            with timer.stage("smoothing", n):
                return self.smoother(y.clamp_(0.0, 1.0), cuts)

    # ------------------------------------------------------------------ public API
    def enhance_frames(self, frames: Iterable[np.ndarray], *, reset: bool = True) -> Iterator[np.ndarray]:
        """Enhance a stream of (H, W, 3) uint8 (or uint16) RGB frames; yields frames in order.

        Frames are pulled one at a time and yielded as soon as their batch is done (the tail is
        flushed at the end), so it works on a live source; use ``batch_size=1`` for the lowest
        latency. ``reset=False`` continues the previous stream's smoothing and cache state.

        Example:
            >>> for out in Enhancer(model_path).enhance_frames(camera_frames()):  # doctest: +SKIP
            ...     display(out)
        """
        if reset:
            self.reset()
        batch: list[np.ndarray] = []
        for frame in frames:
            frame = _check_image(np.asarray(frame))
            if batch and (frame.shape != batch[0].shape or frame.dtype != batch[0].dtype):
                yield from self._run(batch)
                batch = []
            batch.append(frame)
            if len(batch) >= self.batch_size:
                yield from self._run(batch)
                batch = []
        if batch:
            yield from self._run(batch)

    def _run(self, batch: list[np.ndarray]) -> Iterator[np.ndarray]:
        out, ready = self.process_batch(batch)
        if ready is not None:
            ready()
        yield from out

    def enhance_video(
        self,
        src: str | os.PathLike | BinaryIO,
        dst: str | os.PathLike | BinaryIO,
        *,
        start: float | None = None,
        end: float | None = None,
        codec: str = "libx264",
        crf: int | None = 18,
        preset: str | None = "medium",
        pix_fmt: str | None = None,
        audio: bool = True,
        overwrite: bool = False,
        progress: Callable[[int, int | None], None] | None = None,
        queue_size: int = 8,
        max_frames: int | None = None,
        format: str | None = None,
        input_format: str | None = None,
        input_options: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Enhance a video file (or URL) into ``dst``; returns the stats dict.

        Audio and other passthrough streams are copied unchanged; per-frame timestamps are kept
        (``start``/``end`` in seconds trim, and the output then starts at 0). The output appears
        under ``dst`` only when complete. ``progress(frames_done, total_or_None)`` is called at
        the start and after every batch written. ``max_frames`` stops after that many frames
        (audio stops with them).

        ``src``/``dst`` may be ``"-"`` (standard input/output) or file objects, read and written
        as streams (see :mod:`vidllie.video.pipes`); ``format`` names the output container
        (default: from the suffix, Matroska for a stream; ``"rawvideo"`` for bare frames),
        ``input_format``/``input_options`` the demuxer and its options (e.g. "rawvideo" with
        :func:`~vidllie.video.pipes.raw_video_options`).
        """
        from vidllie.pipeline.streaming import run_stream
        from vidllie.video import VideoReader, VideoWriter

        self.reset()
        self.reset_stats()
        t_start = time.perf_counter()
        with VideoReader(src, start=start, end=end, max_frames=max_frames, format=input_format,
                         options=input_options) as reader:
            info = reader.info
            offset = info.start_time if (start or end is not None) else 0.0
            writer = VideoWriter(
                dst, info, codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt, audio=audio,
                time_offset=offset, overwrite=overwrite, format=format,
            )
            total = info.estimated_frames
            done = 0

            def on_written(n: int) -> None:
                nonlocal done
                done += n
                if progress is not None:
                    progress(done, total)

            if progress is not None:
                progress(0, total)
            out_wide = info.bit_depth > 8 or _bits_of(writer.pix_fmt) > 8

            def process(images: list[np.ndarray]):
                # 16-bit frames for >8-bit input or output: the writer takes both for any pix_fmt.
                return self.process_batch(images, wide_output=out_wide)

            # Set torch's thread count once for the run: resizing its pool per batch costs ~10 ms.
            with torch_threads(self.threads):
                counts = run_stream(
                    reader.stream(), writer, process, batch_size=self.batch_size, timer=self.timer,
                    queue_size=queue_size, progress=on_written,
                )
        wall = time.perf_counter() - t_start
        stats = self.stats(wall_seconds=wall, frames=counts.frames_out)
        stats.update(
            input=reader.source, output=str(writer.path),
            video={
                "width": info.width, "height": info.height,
                "fps": float(info.fps) if info.fps else None, "vfr": info.vfr,
                "bit_depth": info.bit_depth, "codec": codec, "pix_fmt": writer.pix_fmt,
                "crf": crf, "preset": preset, "start": start, "end": end,
                "passthrough_packets": counts.packets, "audio": audio,
            },
            waits={
                "compute_waiting_for_decode_s": round(counts.wait_decode_s, 4),
                "compute_waiting_for_encode_s": round(counts.wait_encode_s, 4),
            },
        )
        return stats

    def stats(self, *, wall_seconds: float | None = None, frames: int | None = None) -> dict[str, Any]:
        """Per-stage timings, cache hit rate, memory peaks and versions of the current run."""
        stages = self.timer.summary()
        if frames is None:
            frames = max((s["frames"] for s in stages.values()), default=0)
        peak_dev = peak_device_memory(self.device)
        config = self.config
        return {
            "frames": frames,
            "wall_seconds": None if wall_seconds is None else round(wall_seconds, 4),
            "fps": round(frames / wall_seconds, 3) if wall_seconds else None,
            "stages": stages,
            "dino_cache": self.cache.stats() if self.cache is not None else None,
            "scene_cuts": self.cuts.cuts,
            "temporal": self.smoother.strength,
            "device": str(self.device),
            "device_name": device_name(self.device),
            "torch_threads": self.threads or torch.get_num_threads(),
            "precision": precision_name(self.dtype),
            "batch_size": self.batch_size,
            "effective_batch_size": self._max_batch,
            "tile": self._oom_tile or self.tile,
            "tile_overlap": self.tile_overlap,
            "oom_retries": self.oom_retries,
            "model": {
                "source": self.model_source,
                "name": getattr(config, "name", None),
                "parameters": sum(p.numel() for p in self.model.parameters()),
            },
            "dino": self.dino_source,
            "peak_host_rss_mb": round(peak_host_rss() / 2**20, 1),
            "peak_device_memory_mb": None if peak_dev is None else round(peak_dev / 2**20, 1),
            "versions": _versions(),
        }


def _check_image(img: np.ndarray) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        shape = getattr(img, "shape", None)
        raise ValueError(f"frames must be (H, W, 3) RGB arrays, got shape {shape}")
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"frames must be uint8 (or uint16 for >8-bit video), got {img.dtype}")
    if not img.flags.c_contiguous:
        img = np.ascontiguousarray(img)
    return img


def enhance_video(src: str | os.PathLike, dst: str | os.PathLike, **options: Any) -> dict[str, Any]:
    """Enhance ``src`` into ``dst`` with a fresh :class:`Enhancer`; returns the stats dict.

    ``options`` are :class:`Enhancer` arguments (model, dino, device, precision, batch_size,
    tile, temporal, dino_cache, ...) and :meth:`Enhancer.enhance_video` arguments (start, end,
    codec, crf, preset, pix_fmt, audio, overwrite, progress).

    Example:
        >>> stats = enhance_video("night.mp4", "night_enhanced.mp4", device="cuda")  # doctest: +SKIP
        >>> stats["fps"], stats["dino_cache"]["hit_rate"]                            # doctest: +SKIP
    """
    enhancer_kw = {k: options.pop(k) for k in ENHANCER_OPTIONS if k in options}
    return Enhancer(**enhancer_kw).enhance_video(src, dst, **options)
