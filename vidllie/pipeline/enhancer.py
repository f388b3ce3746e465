"""The frame path's Python API: :class:`Enhancer`.

:class:`Enhancer` owns the per-stream state and the order of the device steps on a batch: integer
frames are uploaded and converted on the device (:mod:`~vidllie.pipeline.transfer`), scene cuts
are detected, DINO maps come from the key-frame cache, the model runs within the device's memory
(:mod:`~vidllie.pipeline.runner`: pixel budget, exact chunks, out-of-memory ladder), the output
is clamped, temporally smoothed, quantised on the device and downloaded. Cache and smoothing state
carry over from batch to batch, so a stream is enhanced as one sequence. Its options are the
typed :class:`~vidllie.pipeline.options.EnhanceConfig`. It knows frames only: files, streams and
folders are the jobs' (:mod:`vidllie.jobs`), which feed it::

    from vidllie import Enhancer
    enhancer = Enhancer("default", device="auto")
    for out in enhancer.enhance_frames(frames):      # frames: iterable of (H, W, 3) uint8
        show(out)                                    # (H, W, 3) uint8, same order
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from vidllie.models.checkpoint import scene_exposure_default
from vidllie.models.dino import load_dino
from vidllie.ops.grey import keep_grey
from vidllie.pipeline.device import (
    device_name,
    peak_device_memory,
    peak_host_rss,
    precision_name,
    reset_peak_memory,
    resolve_device,
    resolve_precision,
)
from vidllie.pipeline.dino_cache import DinoCache
from vidllie.pipeline.exposure import SceneExposure
from vidllie.pipeline.hdr import HdrConversion
from vidllie.pipeline.environment import SMALL_STAGE_THREADS, default_cpu_threads, library_versions, torch_threads
from vidllie.pipeline.openvino_runtime import PRECISION_HINTS, OpenVinoModel, resolve_runtime
from vidllie.pipeline.options import EnhanceConfig
from vidllie.pipeline.reuse import RegionReuse
from vidllie.pipeline.runner import ModelRunner
from vidllie.pipeline.scene import SceneCutDetector, luma_thumbnails
from vidllie.pipeline.temporal import TemporalSmoother
from vidllie.pipeline.timing import StageTimer
from vidllie.pipeline.transfer import check_image, download, to_float, upload

# The enhancer's option names (the fields of EnhanceConfig), e.g. to split mixed keyword options.
ENHANCER_OPTIONS = EnhanceConfig.names()


class Enhancer:
    """Loads a vidllie model once and enhances frame streams and video files.

    Args:
        model: ``"default"`` (the bundled model), a checkpoint path, or a ``GuidedRestormer``.
        config: an :class:`EnhanceConfig`; keyword ``options`` (its field names: ``dino``,
            ``device``, ``precision``, ``batch_size``, ``chunk``, ``tile_overlap``, ``temporal``,
            ``scene_exposure``, ``dino_cache``, ``cache_threshold``, ``cache_max_age``, ``reuse``, ``scene_cut_threshold``,
            ``compile``, ``runtime``, ``channels_last``, ``threads``) override it. Unknown names are refused.

    Example:
        >>> enhancer = Enhancer("default", device="cpu", temporal=0.0)
        >>> frame = np.zeros((36, 64, 3), np.uint8)
        >>> [out.shape for out in enhancer.enhance_frames([frame, frame])]
        [(36, 64, 3), (36, 64, 3)]
    """

    def __init__(
        self, model: str | os.PathLike | nn.Module | None = None, *, config: EnhanceConfig | None = None,
        **options: Any,
    ) -> None:
        base = {} if config is None else {k: getattr(config, k) for k in EnhanceConfig.names()}
        if model is not None:  # else config's model, else the default
            base["model"] = model
        self.options = EnhanceConfig.from_dict({**base, **options})
        opts = self.options
        self.device = resolve_device(opts.device)
        self.dtype = resolve_precision(opts.precision, self.device)
        self.batch_size = opts.batch_size
        self.channels_last = opts.channels_last
        self.threads = (opts.threads or default_cpu_threads()) if self.device.type == "cpu" else None
        self.timer = StageTimer(self.device)

        self.model, self.model_source = _load_model(opts.model)
        self.model.to(self.device)
        if opts.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.model.eval().requires_grad_(False)
        self.config = getattr(self.model, "config", None)
        guided = bool(getattr(self.config, "guided", False))
        dino_config = self.config.dino if guided else None
        self.dino, self.dino_source = load_dino(dino_config, opts.dino, needed=guided)
        if self.dino is not None:
            self.dino.to(self.device)

        self.runtime = resolve_runtime(opts.runtime, self.device, self.model, self.dino, opts.compile)
        if self.runtime == "openvino":
            # precision auto: OpenVINO's choice for the CPU (bf16 where the CPU computes it natively:
            # 1.5x f32 on `fast`, -0.01 dB on the held-out pairs; docs/benchmarks.md).
            hint = None if opts.precision in (None, "auto") else PRECISION_HINTS[self.dtype]
            # A batch's frames in parallel, one thread each (a busy machine: no thread waits for
            # another inside a frame); batch 1 keeps every thread on its frame (latency).
            streams = min(self.threads or 1, opts.batch_size)
            model_fn = OpenVinoModel(self.model, threads=self.threads, streams=streams, precision=hint)
        else:
            model_fn = torch.compile(self.model) if opts.compile else self.model
        # Torch's CPU threads for the run. The small element-wise stages (conversion, scene check,
        # smoothing; on a GPU the host copies) run on one thread: with more, every op waits for
        # all of them, and on a busy machine one of them is often not running (smoothing 6-11x
        # slower under load on the CPU; on a GPU machine the upload 3.3x slower beside 12 busy
        # processes). On the OpenVINO runtime and on a GPU torch's CPU threads run nothing else;
        # on the CPU's torch runtime the model stage gets ``threads``.
        cpu = self.device.type == "cpu"
        self.small_threads = SMALL_STAGE_THREADS
        self.torch_threads = self.threads if cpu and self.runtime != "openvino" else self.small_threads
        self.runner = ModelRunner(
            self.model, self.device, self.dtype, chunk=opts.chunk, tile_overlap=opts.tile_overlap,
            batch_size=opts.batch_size, model_fn=model_fn,
        )
        self.align = self.runner.align
        self.cache = (
            DinoCache(
                lambda frames: self.runner.run_dino(self.dino, frames), enabled=opts.dino_cache,
                threshold=opts.cache_threshold, max_age=opts.cache_max_age,
            )
            if self.dino is not None
            else None
        )
        self.cuts = SceneCutDetector(opts.scene_cut_threshold)
        # Change-driven inference; off = every frame whole (its stats still count the frames).
        reuse = self.device.type == "cpu" if opts.reuse is None else bool(opts.reuse)
        self.reuse = RegionReuse(enabled=reuse, max_age=opts.cache_max_age, align=self.align)
        self.smoother = TemporalSmoother(opts.temporal)
        # Scene-level exposure and restraint at the noise floor (pipeline/exposure.py). It follows
        # light changes itself, so the smoother's brightness jump after a persisting change is off.
        use = scene_exposure_default(opts.model) if opts.scene_exposure is None else bool(opts.scene_exposure)
        self.exposure = SceneExposure(enabled=use)
        if use:
            self.smoother.step = float("inf")
        self._frame_size: tuple[int, int] | None = None
        # HDR input's conversion to the model's SDR and back (set per video run by video_job).
        self.hdr: HdrConversion | None = None

    @property
    def precision_name(self) -> str:
        """The precision the model runs in (``fp32``, ``fp16``, ``bf16``)."""
        fn = self.runner.model_fn
        return fn.precision_name if isinstance(fn, OpenVinoModel) else precision_name(self.dtype)

    @property
    def oom_retries(self) -> int:
        """Out-of-memory retries of the current run (model and DINO)."""
        return self.runner.oom_retries

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Start a new stream: forget smoothing state, the DINO key frame and the last scene."""
        self.smoother.reset()
        self.exposure.reset()
        self.cuts.reset()
        self.reuse.reset()
        if self.cache is not None:
            self.cache.reset()
        self._frame_size = None

    def reset_stats(self) -> None:
        """Start new run statistics: stage timers, cut and OOM counts, cache hits, memory peaks."""
        self.timer = StageTimer(self.device)
        self.cuts.cuts = 0
        self.runner.oom_retries = 0
        self.reuse.reset_stats()
        if self.cache is not None:
            self.cache.reset_stats()
        reset_peak_memory(self.device)

    def to_float(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) integer frames on the device -> (B, 3, H, W) float32 in [0, 1] (see
        :func:`vidllie.pipeline.transfer.to_float`)."""
        with torch_threads(self.small_threads):
            return to_float(x, self.channels_last)

    # ------------------------------------------------------------------ one batch
    def process_batch(
        self, images: list[np.ndarray], *, wide_output: bool | None = None
    ) -> tuple[np.ndarray, Callable[[], None] | None]:
        """Enhance consecutive same-sized frames; returns ``(array (B, H, W, 3), ready)``.

        The building block of :meth:`enhance_frames` and of the video jobs; call ``ready()``
        (when not None) before reading the array. Keeps the stream state. The output is uint16
        when ``wide_output`` (default: when the input is uint16), else uint8.
        """
        if not images:
            raise ValueError("empty batch")
        images = [check_image(img) for img in images]
        first = images[0]
        if any(img.shape != first.shape or img.dtype != first.dtype for img in images):
            raise ValueError("all frames of a batch must have one shape and dtype")
        size = first.shape[:2]
        if self._frame_size is not None and size != self._frame_size:
            self.reset()  # new resolution: nothing to compare with
        self._frame_size = size
        wide = first.dtype == np.uint16 if wide_output is None else wide_output
        n, timer, one = len(images), self.timer, self.small_threads == 1
        with torch.inference_mode(), torch_threads(self.torch_threads):
            with timer.stage("upload", n, on_thread=one), torch_threads(self.small_threads):
                x = upload(images, self.device, self.channels_last)
            if self.hdr is not None:
                with timer.stage("hdr_in", n, on_thread=one), torch_threads(self.small_threads):
                    x, ratio = self.hdr.to_sdr(x)
            y = self.compute(x)
            if self.hdr is not None:
                with timer.stage("hdr_out", n, on_thread=one), torch_threads(self.small_threads):
                    y = self.hdr.to_output(y, ratio)
            with timer.stage("download", n, on_thread=one), torch_threads(self.small_threads):
                return download(y, self.device, wide)

    def compute(self, x: torch.Tensor) -> torch.Tensor:
        """The device work on a batch already on the device: scene check, DINO (through the
        cache), model, smoothing. (B, 3, H, W) in [0, 1] -> (B, 3, H, W) in [0, 1]; keeps the
        stream state. ``vidllie bench`` times this alone as "model-only"."""
        # ``one``: the small stages' work runs on this thread, so its CPU time is theirs.
        n, timer, one = x.shape[0], self.timer, self.small_threads == 1
        with torch.inference_mode(), torch_threads(self.torch_threads):
            with timer.stage("scene", n, on_thread=one), torch_threads(self.small_threads):
                thumbs = luma_thumbnails(x)
                cuts = self.cuts(thumbs)
                plan = self.reuse.plan(x, cuts) if self.reuse.enabled else None
            dino_maps = None
            if self.cache is not None:
                with timer.stage("dino", n):
                    # With reuse on, DINO's key frames are the reuse planner's full refreshes.
                    refresh = None if plan is None else [r if f else None for f, r in zip(plan.full, plan.reasons)]
                    dino_maps = self.cache(x, thumbs, cuts, refresh)
            with timer.stage("model", n):
                if plan is None:
                    y = self.runner.infer(x, dino_maps).clamp_(0.0, 1.0)
                else:
                    grid = getattr(self.model, "dino_grid", None)
                    y = self.reuse.run(x, plan, self.runner.infer, dino_maps, grid)
            if self.exposure.enabled:
                with timer.stage("exposure", n, on_thread=one), torch_threads(self.small_threads):
                    y = self.exposure(y, x, cuts)
            with timer.stage("smoothing", n, on_thread=one), torch_threads(self.small_threads):
                # Grey in, grey out: an IR camera's frames (R = G = B) must not come out tinted.
                return keep_grey(self.smoother(y, cuts, source=x), x)

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
            frame = check_image(np.asarray(frame))
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
            "reuse": self.reuse.stats(),
            "recomputed_share": self.reuse.stats()["recomputed_share"] if self.reuse.enabled else 1.0,
            "scene_cuts": self.cuts.cuts,
            "temporal": self.smoother.strength,
            "scene_exposure": {"enabled": self.exposure.enabled, "key_frames": self.exposure.keys},
            "device": str(self.device),
            "device_name": device_name(self.device),
            "torch_threads": self.torch_threads or torch.get_num_threads(),
            "model_threads": self.threads,  # the model stage's (torch's or OpenVINO's) on the CPU
            "small_stage_threads": self.small_threads,
            "precision": self.precision_name,
            "runtime": self.runtime,
            "batch_size": self.batch_size,
            "effective_batch_size": self.runner.max_batch,
            **self.runner.settings(),
            "tile_overlap": self.runner.tile_overlap,
            "oom_retries": self.oom_retries,
            "model": {
                "source": self.model_source,
                "name": getattr(config, "name", None),
                "parameters": sum(p.numel() for p in self.model.parameters()),
            },
            "dino": self.dino_source,
            "peak_host_rss_mb": round(peak_host_rss() / 2**20, 1),
            "peak_device_memory_mb": None if peak_dev is None else round(peak_dev / 2**20, 1),
            "versions": library_versions(),
        }


def _load_model(model: str | os.PathLike | nn.Module | None) -> tuple[nn.Module, str]:
    """The network and a label of where it came from."""
    if isinstance(model, nn.Module):
        return model, type(model).__name__
    from vidllie.models import load_model

    return load_model(model if model is not None else "default"), str(model)

