"""Frame-rate benchmark of the real pipeline, with a per-stage breakdown (``vidllie bench``).

Two measurements on the same frames, after a warm-up:

* **end-to-end**: :func:`~vidllie.jobs.video_job.enhance_video_file` exactly as ``vidllie enhance``
  runs it (decode thread → upload → scene/DINO cache → model → smoothing → download → encode thread), writing a
  real output file that is deleted afterwards;
* **model-only**: the first frames of the same input (up to 64, at most 512 MB), decoded
  beforehand and already on the device as integers, once in order through the same device compute
  (:meth:`Enhancer.compute`: conversion, scene check, DINO through a freshly reset cache, model,
  smoothing) with no decode, copies or encode. The cap keeps host memory independent of
  ``--frames``.

``pipeline_efficiency = end_to_end_fps / model_only_fps``: 1.0 means I/O is fully hidden behind
compute. Nothing is cached across the two runs: the DINO cache, smoothing state and stage timers are
reset before each, and both runs see the frames in the same order.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidllie.errors import InputError
from vidllie.jobs.video_job import enhance_video_file
from vidllie.pipeline.device import peak_host_rss, synchronize
from vidllie.pipeline.enhancer import Enhancer
from vidllie.pipeline.environment import available_cpus, library_versions, torch_threads
from vidllie.pipeline.options import DEFAULTS, parse_size
from vidllie.pipeline.timing import STAGES

# Stages run by each thread of the streaming loop: the slowest thread bounds the throughput.
THREAD_STAGES = {
    "decode thread": ("decode",),
    "compute thread": ("upload", "hdr_in", "scene", "dino", "model", "exposure", "smoothing", "hdr_out", "download"),
    "encode thread": ("encode",),
}
# Model-only runs on the first frames of the input held on the device: at most this many frames
# and bytes, so host memory stays independent of --frames (the frames are never cycled, which
# would let the DINO cache hit more than in the real run).
_RESIDENT_FRAMES = 64
_RESIDENT_BYTES = 512 * 2**20


def _read_frames(source: str, n: int) -> list[np.ndarray]:
    """The first ``n`` frames, fewer if they would pass the resident byte cap."""
    from vidllie.video import VideoReader

    images: list[np.ndarray] = []
    with VideoReader(source, max_frames=n, passthrough=False) as reader:
        for frame in reader:
            if images and (len(images) + 1) * frame.image.nbytes > _RESIDENT_BYTES:
                break
            images.append(frame.image)
    return images


def _model_only(enhancer: Enhancer, images: list[np.ndarray]) -> dict[str, Any]:
    """Device compute on frames already resident on the device, in order; fps and stages.

    Short runs are repeated (up to 3 times or 10 s) and the fastest is kept: the best the
    compute can do, so the efficiency ratio is not flattered by a slow model-only sample. Every
    repeat starts from reset state (cache, smoothing, timers), so nothing carries over.
    """
    bs = enhancer.batch_size
    # (B, H, W, 3) integer batches on the device; conversion to float is part of the timed compute.
    batches = [
        torch.from_numpy(np.stack(images[i : i + bs])).to(enhancer.device) for i in range(0, len(images), bs)
    ]
    synchronize(enhancer.device)
    best: dict[str, Any] | None = None
    spent, repeats = 0.0, 0
    while repeats < 3 and (repeats == 0 or spent < 10.0):
        enhancer.reset()
        enhancer.reset_stats()
        t0 = time.perf_counter()
        with torch.inference_mode(), torch_threads(enhancer.threads):
            for batch in batches:
                enhancer.compute(enhancer.to_float(batch))
        synchronize(enhancer.device)
        seconds = time.perf_counter() - t0
        spent += seconds
        repeats += 1
        if best is None or seconds < best["seconds"]:
            best = {
                "frames": len(images),
                "seconds": round(seconds, 4),
                "fps": round(len(images) / seconds, 3),
                "stages": enhancer.timer.summary(),
                "dino_cache": enhancer.cache.stats() if enhancer.cache is not None else None,
                "reuse": enhancer.reuse.stats(),
            }
    best["repeats"] = repeats
    return best


def run_bench(
    source: str | os.PathLike | None = None,
    *,
    synthetic: str | None = None,
    model: str | os.PathLike = "default",
    dino: str | None = None,
    frames: int = 300,
    warmup: int | None = None,
    batch_size: int = DEFAULTS.batch_size,
    device: str = DEFAULTS.device,
    precision: str = DEFAULTS.precision,
    dino_cache: bool = DEFAULTS.dino_cache,
    temporal: float = DEFAULTS.temporal,
    scene_exposure: bool | None = DEFAULTS.scene_exposure,
    reuse: bool | None = DEFAULTS.reuse,
    chunk: int | None = DEFAULTS.chunk,
    codec: str = "libx264",
    crf: int = 18,
    preset: str = "medium",
    compile: bool = False,
    runtime: str = DEFAULTS.runtime,
    threads: int | None = None,
    workdir: str | os.PathLike | None = None,
    load: int = 0,
    load_sessions: str = "each",
) -> dict[str, Any]:
    """Benchmark the pipeline on ``source`` (a video) or a ``synthetic`` ``WxH`` clip.

    Returns a JSON-ready dict (see :func:`format_report`). ``warmup`` frames (default two
    batches) run through the model first and are not timed. ``load`` > 0: the same measurement
    twice in this call, idle first, then beside ``load`` busy processes
    (:func:`~vidllie.jobs.load.busy_processes`, in a session each or all in one:
    ``load_sessions``); the idle report gets a ``load`` section with
    the loaded figures and the loaded/idle ratios (:func:`~vidllie.jobs.load.load_ratios`).

    Example:
        >>> r = run_bench(synthetic="640x360", model="default", frames=60)  # doctest: +SKIP
        >>> r["end_to_end"]["fps"], r["pipeline_efficiency"]               # doctest: +SKIP
    """
    if (source is None) == (synthetic is None):
        raise InputError("give either an input video or --synthetic WxH")
    if frames < 1:
        raise InputError("--frames must be >= 1")
    if load < 0:
        raise InputError("--load must be >= 0")
    if load_sessions not in ("each", "one"):
        raise InputError(f"--load-sessions must be each or one, got {load_sessions!r}")
    warmup = 2 * batch_size if warmup is None else warmup
    with tempfile.TemporaryDirectory(prefix="vidllie-bench-", dir=workdir) as tmp:
        if synthetic is not None:
            from vidllie.video.synthetic import write_synthetic_clip

            w, h = parse_size(synthetic)
            source = write_synthetic_clip(Path(tmp) / f"synthetic_{w}x{h}.mp4", w, h, frames)
        source = str(source)
        enhancer = Enhancer(
            model, dino=dino, device=device, precision=precision, batch_size=batch_size,
            chunk=chunk, temporal=temporal, scene_exposure=scene_exposure, dino_cache=dino_cache, compile=compile,
            threads=threads, reuse=reuse, runtime=runtime,
        )
        images = _read_frames(source, min(frames, _RESIDENT_FRAMES))
        if not images:
            raise InputError(f"{source}: no frames decoded")
        height, width = images[0].shape[:2]

        # Warm-up: kernels, allocator, autotuning, torch.compile; then every state is reset.
        for i in range(0, max(warmup, 1), batch_size):
            enhancer.process_batch(images[i % len(images) : i % len(images) + batch_size])
        if enhancer.runner.pad_batches:
            # On a GPU partial batches (scene cuts, the last one) run padded to a power of two,
            # and each new batch shape's first call costs seconds: warm them all, so neither the
            # idle nor the loaded measurement pays it (``--reuse`` tiles still bring new shapes).
            k = 1
            while k < enhancer.runner.max_batch:
                enhancer.process_batch([images[j % len(images)] for j in range(k)])
                k *= 2
        synchronize(enhancer.device)

        out = Path(tmp) / f"bench_out{Path(source).suffix or '.mp4'}"

        def measure() -> dict[str, Any]:
            model_only = _model_only(enhancer, images)
            # This process's CPU time over the run, all its threads (not the busy processes, which
            # are children): on a busy machine it tells less CPU from more work per frame.
            c0, t0 = time.process_time(), time.perf_counter()
            e2e = enhance_video_file(enhancer,
                source, out, max_frames=frames, codec=codec, crf=crf, preset=preset, overwrite=True,
            )
            cpu = {"seconds": time.process_time() - c0, "wall_seconds": time.perf_counter() - t0}
            return _report(enhancer, e2e, model_only, source, synthetic, width, height, frames, warmup, cpu)

        report = measure()
        if load:
            from vidllie.jobs.load import busy_processes, load_ratios

            with busy_processes(load, load_sessions):
                time.sleep(0.5)  # let the scheduler spread the loops over the CPUs
                loaded = measure()
            keep = ("end_to_end", "model_only", "pipeline_efficiency", "stages", "threads_busy_seconds",
                    "bound_by", "compute_waits", "cpu")
            report["load"] = {"processes": load, "sessions": load_sessions, "loaded": {k: loaded[k] for k in keep},
                              "ratios": load_ratios(report, loaded)}
    return report


def _report(enhancer: Enhancer, e2e, model_only, source, synthetic, width, height, frames, warmup,
            cpu: dict[str, float]) -> dict[str, Any]:
    from vidllie.models.info import dino_macs, model_macs

    stages = e2e["stages"]
    n = e2e["frames"]
    threads = {
        name: round(sum(stages.get(s, {}).get("seconds", 0.0) for s in names), 4)
        for name, names in THREAD_STAGES.items()
    }
    slowest_stage = max(stages, key=lambda s: stages[s]["seconds"]) if stages else None
    config = enhancer.config
    macs = model_macs(config, height, width) if config is not None else None
    dino_frame_macs = dino_macs(enhancer.dino, height, width) if enhancer.dino is not None else 0
    cache = e2e.get("dino_cache")
    dino_runs = cache["misses"] if cache else 0
    net_seconds = stages.get("model", {}).get("seconds", 0.0) + stages.get("dino", {}).get("seconds", 0.0)
    total_macs = (macs or 0) * n + dino_frame_macs * dino_runs
    efficiency = e2e["fps"] / model_only["fps"] if model_only["fps"] else None
    return {
        "input": None if synthetic else source,
        "synthetic": synthetic,
        "width": width,
        "height": height,
        "frames": n,
        "warmup_frames": warmup,
        "end_to_end": {"fps": e2e["fps"], "seconds": e2e["wall_seconds"], "frames": n},
        # CPUs kept busy on average, and CPU time per frame (all threads of this process).
        "cpu": {"seconds": round(cpu["seconds"], 4),
                "cores_used": round(cpu["seconds"] / cpu["wall_seconds"], 3) if cpu["wall_seconds"] else None,
                "ms_per_frame": round(1000.0 * cpu["seconds"] / n, 2) if n else None},
        "model_only": {k: model_only[k] for k in ("fps", "seconds", "frames", "repeats")},
        "pipeline_efficiency": None if efficiency is None else round(efficiency, 4),
        "stages": {s: stages[s] for s in STAGES if s in stages},
        "threads_busy_seconds": threads,
        "bound_by": max(threads, key=threads.get),
        "slowest_stage": slowest_stage,
        "compute_waits": e2e.get("waits"),
        "dino_cache": cache,
        "dino_cache_hit_rate": cache["hit_rate"] if cache else None,
        "reuse": e2e["reuse"],
        "recomputed_share": e2e["recomputed_share"],
        "peak_host_rss_mb": round(peak_host_rss() / 2**20, 1),
        "peak_device_memory_mb": e2e.get("peak_device_memory_mb"),
        "macs_per_frame": macs,
        "dino_macs_per_computed_frame": dino_frame_macs or None,
        # Counted MACs (convs, matmuls, attention) x 2 over the DINO + model stage time.
        "achieved_tflops": round(2 * total_macs / net_seconds / 1e12, 4) if net_seconds else None,
        "device": e2e["device"],
        "device_name": e2e["device_name"],
        "settings": {
            "model": e2e["model"], "dino": e2e["dino"], "precision": e2e["precision"], "runtime": e2e["runtime"],
            "batch_size": e2e["batch_size"], "effective_batch_size": e2e["effective_batch_size"],
            "chunk": e2e["chunk"], "tile": e2e["tile"], "tile_overlap": e2e["tile_overlap"], "temporal": e2e["temporal"],
            "scene_exposure": e2e["scene_exposure"]["enabled"],
            "dino_cache": enhancer.cache is not None and enhancer.cache.enabled,
            "reuse": enhancer.reuse.enabled,
            "codec": e2e["video"]["codec"], "crf": e2e["video"]["crf"], "preset": e2e["video"]["preset"],
            "torch_threads": e2e.get("torch_threads"), "model_threads": e2e.get("model_threads"),
            "small_stage_threads": e2e.get("small_stage_threads"), "available_cpus": available_cpus(),
        },
        "versions": library_versions(),
    }


def format_report(r: dict[str, Any]) -> str:
    """A plain-text table of a :func:`run_bench` result."""
    src = r["input"] or f"synthetic {r['synthetic']}"
    hit = r["dino_cache_hit_rate"]
    hit_text = "n/a (no DINO)" if hit is None else f"{hit:.3f}"
    load = r.get("load")
    ratios = load["ratios"] if load else None
    lines = [
        f"vidllie bench: {src} ({r['width']}x{r['height']}, {r['frames']} frames after {r['warmup_frames']} warm-up)",
        f"device {r['device']} ({r['device_name']}), {r['settings']['runtime']} runtime, precision {r['settings']['precision']}, "
        f"batch {r['settings']['batch_size']}, model {r['settings']['model']['name']}",
        "",
    ]
    if load:
        lines.append(f"{'':<22}{'idle':>10}{'loaded':>10}{'ratio':>8}   ({load['processes']} busy processes; "
                     "frames/s ratio loaded/idle)")
        for key, label in (("end_to_end", "end-to-end"), ("model_only", "model-only")):
            lines.append(f"{label:<22}{r[key]['fps']:>10.2f}{load['loaded'][key]['fps']:>10.2f}"
                         f"{_num(ratios[key], 8, 2)}   frames/s")
        cpu, other = r["cpu"], load["loaded"]["cpu"]
        lines += [f"{'CPUs busy':<22}{_num(cpu['cores_used'], 10, 2)}{_num(other['cores_used'], 10, 2)}"
                  f"{_num(ratios['cpu']['cores_used'], 8, 2)}   (this process, all threads)",
                  f"{'CPU ms per frame':<22}{_num(cpu['ms_per_frame'], 10, 1)}{_num(other['ms_per_frame'], 10, 1)}"
                  f"{_num(ratios['cpu']['ms_per_frame'], 8, 2)}"]
    else:
        lines += [f"{'end-to-end':<22}{r['end_to_end']['fps']:>10.2f} frames/s",
                  f"{'model-only':<22}{r['model_only']['fps']:>10.2f} frames/s",
                  f"{'CPUs busy':<22}{_num(r['cpu']['cores_used'], 10, 2)}   "
                  f"({r['cpu']['ms_per_frame']} ms CPU per frame, this process, all threads)"]
    lines += [
        f"{'pipeline efficiency':<22}{r['pipeline_efficiency']:>10.3f}",
        "",
        f"{'stage':<12}{'ms/frame':>10}{'seconds':>10}{'CPU ms':>8}"
        + (f"{'loaded ms':>11}{'x idle':>8}{'CPU ms':>8}" if load else ""),
    ]
    for name, s in r["stages"].items():
        ms = s["ms_per_frame"]
        row = (f"{name:<12}{(ms if ms is not None else 0.0):>10.2f}{s['seconds']:>10.3f}"
               f"{_num(s.get('cpu_ms_per_frame'), 8, 2)}")
        if load:
            other = load["loaded"]["stages"].get(name, {})
            row += (f"{_num(other.get('ms_per_frame'), 11, 2)}{_num(ratios['stages'].get(name), 8, 2)}"
                    f"{_num(other.get('cpu_ms_per_frame'), 8, 2)}")
        lines.append(row)
    lines.append("(CPU ms: the stage's thread CPU time, for stages whose work runs on one thread; "
                 "a stage slower than its CPU time waited for a CPU)")
    lines += [
        "",
        "busy seconds per thread: " + ", ".join(f"{k} {v:.2f}" for k, v in r["threads_busy_seconds"].items()),
        f"bound by: {r['bound_by']} (slowest stage: {r['slowest_stage']})",
        f"DINO cache hit rate: {hit_text}",
        f"pixels recomputed: {100 * r['recomputed_share']:.1f} % (reuse {'on' if r['settings']['reuse'] else 'off'})",
        f"MACs/frame: {r['macs_per_frame'] / 1e9:.2f} G; achieved {r['achieved_tflops']} TFLOP/s (counted MACs x 2)",
        f"peak host RSS {r['peak_host_rss_mb']} MB; peak device memory "
        f"{r['peak_device_memory_mb'] if r['peak_device_memory_mb'] is not None else 'n/a'} MB",
        "versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items() if v),
    ]
    return "\n".join(lines)


def _num(x: float | None, width: int, digits: int) -> str:
    return f"{x:>{width}.{digits}f}" if x is not None else f"{'n/a':>{width}}"


def compare_reports(report: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Two :func:`run_bench` results of one run (same input and settings) and their speed ratios.

    Example:
        >>> a = {"end_to_end": {"fps": 12.0}, "model_only": {"fps": 20.0}}
        >>> b = {"end_to_end": {"fps": 2.0}, "model_only": {"fps": 2.5}}
        >>> compare_reports(a, b)["speedup"]
        {'end_to_end': 6.0, 'model_only': 8.0}
    """
    ratio = {k: round(report[k]["fps"] / reference[k]["fps"], 3) if reference[k]["fps"] else None
             for k in ("end_to_end", "model_only")}
    return {"model": report, "reference": reference, "speedup": ratio}


def format_comparison(r: dict[str, Any]) -> str:
    names = [x["settings"]["model"]["name"] for x in (r["model"], r["reference"])]
    setups = [(x["settings"].get("runtime"), x["settings"]["precision"]) for x in (r["model"], r["reference"])]
    if setups[0] != setups[1]:  # say what each ran on
        names = [f"{n} ({rt}, {p})" for n, (rt, p) in zip(names, setups)]
    return (f"{names[0]} vs {names[1]}: {r['speedup']['end_to_end']:.2f}x end to end "
            f"({r['model']['end_to_end']['fps']:.2f} vs {r['reference']['end_to_end']['fps']:.2f} frames/s), "
            f"{r['speedup']['model_only']:.2f}x model-only")


# ---------------------------------------------------------------- DINO at real size, timing only
def random_dinov3_vits16(seed: int = 0) -> torch.nn.Module:
    """A **randomly initialised** DINOv3 ViT-S/16 of the real configuration (hidden 384, 12 layers,
    6 heads, MLP 1536, patch 16, 4 registers): FOR TIMING ONLY. Its features are noise; it is never
    offered for enhancement (no option of ``vidllie enhance`` reaches it)."""
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    torch.manual_seed(seed)
    config = DINOv3ViTConfig(
        hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
        patch_size=16, num_register_tokens=4,
    )
    return DINOv3ViTModel(config).eval()


def time_dino(
    sizes: tuple[str, ...] = ("360p", "720p", "1080p"), *, device: str = "cpu", frames: int = 3,
    short_sides: tuple[int | None, ...] = (224, 448, None), threads: int | None = None,
) -> dict[str, Any]:
    """DINO ms/frame (random ViT-S/16 of the real size, timing only) through the pipeline's
    :class:`~vidllie.models.dino.DinoBackbone` (gamma, normalisation, resize to ``short_side``,
    layers 3/6/9/12) per frame size and DINO short side (``None``: the frame's own short side).
    One warm-up call, then the mean of ``frames`` single-frame calls.

    Example:
        >>> time_dino(("360p",), frames=1, short_sides=(224,))["rows"][0]["size"]  # doctest: +SKIP
        '640x360'
    """
    from vidllie.models.configuration import DinoConfig
    from vidllie.models.dino import DinoBackbone
    from vidllie.pipeline.device import resolve_device

    dev = resolve_device(device)
    vit = random_dinov3_vits16()
    rows = []
    with torch.inference_mode(), torch_threads(threads):
        for size in sizes:
            w, h = parse_size(size)
            for short in short_sides:
                side = short or min(h, w)
                backbone = DinoBackbone(DinoConfig(backbone=None, short_side=side), backbone=vit).to(dev)
                x = torch.rand(1, 3, h, w, device=dev)
                backbone(x)  # warm-up
                synchronize(dev)
                t0 = time.perf_counter()
                for _ in range(frames):
                    backbone(x)
                synchronize(dev)
                ms = 1000 * (time.perf_counter() - t0) / frames
                rows.append({"size": f"{w}x{h}", "short_side": side, "ms_per_frame": round(ms, 1)})
    return {"model": "random DINOv3 ViT-S/16 (timing only)", "device": str(dev), "frames": frames,
            "torch_threads": torch.get_num_threads(), "rows": rows}


def format_dino_timing(r: dict[str, Any]) -> str:
    lines = [f"DINO timing: {r['model']} on {r['device']} ({r['torch_threads']} threads, mean of {r['frames']} frames)",
             f"{'frame':<12}{'DINO short side':>16}{'ms/frame':>10}"]
    lines += [f"{row['size']:<12}{row['short_side']:>16}{row['ms_per_frame']:>10.1f}" for row in r["rows"]]
    return "\n".join(lines)
