"""Batch jobs: many video files through N workers (Ray actors, optional), with a resumable manifest.

This module owns the job over a list of files: which files still need work (the manifest), who
runs them (:class:`FileWorker`, one per process: the model is loaded once and whole files stream
through :func:`~vidllie.jobs.video_job.enhance_video_file`, so audio passthrough, timestamps
and atomic outputs are the single-file pipeline's), progress, and the summary. Ray is imported
only when ``workers >= 1``; ``workers=0`` runs the same job in this process without Ray::

    rows = enhance_many(["clips/"], "out/", workers=2)          # local Ray, 2 worker processes
    rows = enhance_many(["/nfs/clips/"], "/nfs/out/", workers=8, ray_address="auto")  # a cluster
    [r["status"] for r in rows]                                  # "done" | "failed"

The manifest (``vidllie-manifest.jsonl`` in the output folder) gets one JSON line per event
(``running`` when a file is handed to a worker, then ``done`` or ``failed``); the last line of an
input wins. Only the driver writes it. A re-run skips files whose last line is ``done`` with the
same input size and mtime, the same settings and the output still there; redoes interrupted ones
(last line ``running``) and new ones; retries a ``failed`` one when its input or the settings
changed, or with ``retry_failed`` (a failure on the same bytes with the same settings is
deterministic, e.g. a corrupt file, so it is reported again rather than re-run); ``force`` redoes
everything. Granularity is the whole file: the DINO cache and temporal smoothing carry state from
frame to frame, so cutting a file at keyframes would reset them at every join (a visible step in
brightness) and need a second, lossless join pass, for a gain only when there are fewer files
than workers. Files are handed out largest first, which bounds the tail of the job by about one
file.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from vidllie.errors import DeviceError, InputError, OutputError, VidllieError, WeightsError
from vidllie.jobs.batch_report import BatchSummary, JobProgress, format_summary
from vidllie.jobs.manifest import (
    MANIFEST_NAME,
    VIDEO_OPTIONS,
    FileTask,
    Manifest,
    decide,
    file_stat,
    remove_partial_outputs,
    settings_of,
    utc_now,
)
from vidllie.jobs.plan import Job, is_url, plan_jobs
from vidllie.pipeline.options import EnhanceConfig

INSTALL_RAY = 'Ray is not installed; --workers needs it: pip install "vidllie[ray]" (or pip install -e ".[ray]" in a checkout)'


# ---------------------------------------------------------------------------- worker
class FileWorker:
    """Loads the model once and enhances whole files; one per process (a Ray actor, or in-process).

    ``run`` never raises for a file's own problem: it returns ``status="failed"`` with the error
    line, so one bad file never stops the others. ``progress()`` is the current file's frame count
    (Ray actors answer it from a second thread while ``run`` works).
    """

    def __init__(self, config: dict[str, Any], video: dict[str, Any]) -> None:
        self.video = video
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.current: dict[str, Any] = {"input": None, "frames": 0, "total": None, "started": None}
        self.finished_frames, self.busy_seconds = 0, 0.0
        self.error: VidllieError | None = None
        try:
            from vidllie.pipeline.enhancer import Enhancer

            options = EnhanceConfig.from_dict(config)
            self.enhancer = Enhancer(options.model, config=options)  # model: Enhancer's own argument wins
        except VidllieError as err:  # reported once by the driver (e.g. missing weights)
            self.error = err

    def ready(self) -> tuple[str, str | None, int]:
        """``(worker name, error line or None, exit code)``: the driver checks every worker starts."""
        if self.error is not None:
            return self.name, str(self.error), self.error.exit_code
        return self.name, None, 0

    def progress(self) -> dict[str, Any]:
        return {"worker": self.name, **self.current, "finished_frames": self.finished_frames,
                "busy_seconds": self.busy_seconds}

    def run(self, src: str, dst: str, overwrite: bool = False,
            on_progress: Callable[[int, int | None], None] | None = None) -> dict[str, Any]:
        from vidllie.jobs.video_job import enhance_video_file

        t0 = time.perf_counter()
        self.current = {"input": src, "frames": 0, "total": None, "started": time.time()}

        def progress(done: int, total: int | None) -> None:
            self.current.update(frames=done, total=total)
            if on_progress is not None:
                on_progress(done, total)

        result: dict[str, Any] = {"worker": self.name, "frames": 0, "error": None, "exit_code": 0}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if self.error is not None:
                    raise self.error
                stats = enhance_video_file(self.enhancer, src, dst, overwrite=overwrite, progress=progress, **self.video)
                result.update(status="done", frames=stats["frames"], fps=stats["fps"], model=stats["model"]["name"],
                              device=stats["device"], torch_threads=stats["torch_threads"])
            except VidllieError as err:
                result.update(status="failed", error=str(err), exit_code=err.exit_code)
            except Exception as err:  # a bug or a library error on one file: report it, keep going
                result.update(status="failed", error=f"{type(err).__name__}: {err}".splitlines()[0], exit_code=1)
        seconds = time.perf_counter() - t0
        result.update(seconds=round(seconds, 3), warnings=[str(w.message) for w in caught])
        if result["status"] == "done":
            self.finished_frames += result["frames"]
        self.busy_seconds += seconds
        self.current = {"input": None, "frames": 0, "total": None, "started": None}
        return result


# ---------------------------------------------------------------------------- the job
def plan_batch(inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike | None) -> tuple[list[Job], Path]:
    """The job's files and its manifest path (``out_dir/vidllie-manifest.jsonl``; without
    ``out_dir``, the outputs' common folder, which must be one)."""
    sources = [str(i) for i in inputs]
    for s in sources:
        if is_url(s) or s == "-":
            raise InputError(f"batch jobs take files and folders, not streams ({s}); enhance a stream without --workers")
    if out_dir is not None:
        out = Path(out_dir).expanduser()
        if out.exists() and not out.is_dir():
            raise OutputError(f"-o {out}: a batch job writes into a folder")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot create output folder {out}: {err.strerror}") from None
    jobs = plan_jobs(sources, out_dir)
    folders = {j.dst.resolve().parent for j in jobs}
    if len(folders) != 1:
        raise OutputError("the outputs would go to several folders; give one with -o so the job has one manifest")
    return jobs, folders.pop() / MANIFEST_NAME


def enhance_many(
    inputs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike | None = None,
    *,
    workers: int | None = 0,
    gpus_per_worker: float | None = None,
    ray_address: str | None = None,
    retry_failed: bool = False,
    force: bool = False,
    overwrite: bool = False,
    config: EnhanceConfig | None = None,
    progress: bool = False,
    on_file: Callable[[dict[str, Any]], None] | None = None,
    summary: dict[str, Any] | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Enhance many files into ``out_dir`` with ``workers`` Ray actors; returns the manifest rows.

    Args:
        inputs: files and folders of videos (not streams).
        out_dir: output folder (created); None = beside the inputs (which must share a folder).
        workers: Ray actors, each with the model loaded once (0 = in this process, no Ray;
            None with ``ray_address``: one per GPU of the cluster, or one per node without GPUs).
        gpus_per_worker: GPUs each actor reserves (fractions share a GPU); None = 1 where the
            cluster has GPUs and ``device`` is not ``cpu``, else 0.
        ray_address: an existing cluster (``"auto"`` or ``host:port``); None starts a local one.
        retry_failed: re-run files that failed before on the same bytes and settings.
        force: redo every file, done or not (overwrites outputs).
        overwrite: overwrite outputs the manifest does not know (``-y``).
        config, options: enhance options (:class:`EnhanceConfig` fields) and video options
            (``start end codec crf preset pix_fmt audio hdr video_stream``).
        progress: job and per-worker progress bars on stderr.
        on_file: called with each manifest row as a file finishes (done or failed).
        summary: if given, filled with the job's :class:`BatchSummary` as a dict.

    Returns:
        One row per input, in input order: ``input size mtime settings status output frames
        seconds error`` (+ ``worker``, ``exit_code``, ``finished``, ``warnings``), the last line
        the manifest holds for it; ``action`` says what this run did: ``enhanced``, ``failed``,
        ``skipped`` (done earlier) or ``not retried`` (failed earlier).

    Example:
        >>> rows = enhance_many(["clips/"], "out/", workers=2)  # doctest: +SKIP
    """
    base = {} if config is None else {k: getattr(config, k) for k in EnhanceConfig.names()}
    enhance_opts, video = EnhanceConfig.split({**base, **options})
    unknown = set(video) - set(VIDEO_OPTIONS)
    if unknown:
        raise TypeError(f"unknown options: {sorted(unknown)}")
    if workers is None and ray_address is None:
        workers = 0
    if workers != 0:
        _import_ray()  # before anything is written: without Ray, say how to install it
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    jobs, manifest_path = plan_batch(inputs, out_dir)
    settings = settings_of(enhance_opts, video)
    manifest = Manifest(manifest_path)

    tasks, actions = [], {}
    for job in jobs:
        src, dst = str(Path(job.src).resolve()), str(job.dst.resolve())
        size, mtime = file_stat(src)
        prev = manifest.last(src)
        task = FileTask(src, dst, size, mtime, previous=prev)
        actions[src] = decide(task, settings, retry_failed=retry_failed, force=force)
        ours = prev is not None and prev.get("output") == dst
        task.overwrite = force or overwrite or ours
        tasks.append(task)
    todo = [t for t in tasks if actions[t.input] == "run"]
    todo.sort(key=lambda t: -(t.size or 0))  # largest first: the job's tail is about one file

    t0 = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}

    def record(task: FileTask, result: dict[str, Any]) -> dict[str, Any]:
        row = {"input": task.input, "size": task.size, "mtime": task.mtime, "settings": settings,
               "status": result["status"], "output": task.output, "frames": result.get("frames", 0),
               "seconds": result.get("seconds"), "error": result.get("error"),
               "exit_code": result.get("exit_code", 0), "worker": result.get("worker"),
               **{k: result[k] for k in ("model", "device", "torch_threads") if k in result},
               "warnings": result.get("warnings", []), "finished": utc_now()}
        manifest.append(row)
        results[task.input] = row
        if on_file is not None:
            on_file(row)
        return row

    def start(task: FileTask, worker: str | None = None) -> bool:
        """Mark ``task`` running; False (and a failed row) when its output is not ours to replace."""
        if Path(task.output).exists() and not task.overwrite:
            record(task, {"status": "failed", "error": f"{task.output} exists; pass -y to overwrite", "exit_code": 3})
            return False
        if task.previous is not None and task.previous.get("status") == "running":
            remove_partial_outputs(task.output)  # left by a killed worker
        manifest.append({"input": task.input, "size": task.size, "mtime": task.mtime, "settings": settings,
                         "status": "running", "output": task.output, "frames": 0, "seconds": None,
                         "error": None, "worker": worker, "started": utc_now()})
        return True

    display = JobProgress(len(todo), sum(t.size or 0 for t in todo), workers or 0, enabled=progress)
    sizes = {t.input: t.size for t in todo}
    config_dict = {k: getattr(enhance_opts, k) for k in EnhanceConfig.names()}
    plan: dict[str, Any] = {"workers": workers, "gpus_per_worker": 0.0, "cpus_per_worker": None, "per_worker": {},
                            "startup_seconds": None, "t0": t0}
    try:
        if todo and workers == 0:
            _run_here(todo, config_dict, video, start, record, display, sizes, plan)
        elif todo:
            _run_on_ray(todo, config_dict, video, start, record, display, sizes, plan,
                        workers=workers, gpus_per_worker=gpus_per_worker, ray_address=ray_address)
    finally:
        display.close()
    wall = time.perf_counter() - t0

    rows = []
    for task in tasks:
        row = dict(results.get(task.input) or manifest.last(task.input) or {})
        act = actions[task.input]
        if task.input in results:
            row["action"] = "enhanced" if row["status"] == "done" else "failed"
        else:
            row["action"] = "skipped" if act == "skip" else "not retried"
        rows.append(row)
    if summary is not None:
        ran = [r for r in rows if r["action"] in ("enhanced", "failed")]
        frames = sum(r["frames"] or 0 for r in ran if r["status"] == "done")
        n_done = sum(r["action"] == "enhanced" for r in rows)
        summary.update(BatchSummary(
            files=len(rows), done=n_done, failed=sum(r["status"] == "failed" for r in rows),
            skipped=sum(r["action"] == "skipped" for r in rows), frames=frames, wall_seconds=round(wall, 3),
            fps=round(frames / wall, 3) if wall > 0 else 0.0,
            files_per_hour=round(3600 * n_done / wall, 1) if wall > 0 else 0.0,
            workers=plan["workers"], gpus_per_worker=plan["gpus_per_worker"], cpus_per_worker=plan["cpus_per_worker"],
            manifest=str(manifest_path), startup_seconds=plan["startup_seconds"], per_worker=plan["per_worker"], rows=rows,
        ).to_dict())
    return rows


def _run_here(todo, config, video, start, record, display, sizes, plan) -> None:
    """``workers=0``: the same job in this process, one file after another."""
    display.add_workers(1)
    worker = FileWorker(config, video)
    name, error, code = worker.ready()
    if error is not None:
        raise worker.error  # type: ignore[misc]
    plan["per_worker"][name] = {"files": 0, "frames": 0, "busy_seconds": 0.0}
    plan["startup_seconds"] = round(time.perf_counter() - plan["t0"], 3)
    for task in todo:
        if not start(task, name):
            display.file_done(task.size, 0)
            continue
        result = worker.run(task.input, task.output, task.overwrite,
                            on_progress=lambda d, t: display.update([worker.progress()], sizes))
        row = record(task, result)
        display.file_done(task.size, row["frames"] if row["status"] == "done" else 0)
        _tally(plan["per_worker"][name], row)


def _tally(stats: dict[str, Any], row: dict[str, Any]) -> None:
    stats["files"] += 1
    stats["frames"] += row["frames"] if row["status"] == "done" else 0
    stats["busy_seconds"] = round(stats["busy_seconds"] + (row["seconds"] or 0.0), 3)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InputError(INSTALL_RAY) from None
    return ray


def _run_on_ray(todo, config, video, start, record, display, sizes, plan, *, workers, gpus_per_worker, ray_address) -> None:
    """Hand files one at a time to ``workers`` Ray actors (largest first); the driver alone writes
    the manifest. A worker process that dies fails its file and leaves the pool."""
    ray = _import_ray()
    started_here = False
    if not ray.is_initialized():
        import logging

        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
        if ray_address is None:
            kwargs["num_cpus"] = os.cpu_count() or 1
        try:
            ray.init(address=ray_address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise InputError(f"cannot connect to the Ray cluster {ray_address!r}: {str(err).splitlines()[0]}") from None
        started_here = True
    try:
        _drive(ray, todo, config, video, start, record, display, sizes, plan, workers, gpus_per_worker)
    finally:
        if started_here:
            ray.shutdown()


def _drive(ray, todo, config, video, start, record, display, sizes, plan, workers, gpus_per_worker) -> None:
    resources = ray.cluster_resources()
    cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if gpus > 0 and str(config["device"]) != "cpu" else 0.0
    if workers is None:  # --ray without --workers: the whole cluster
        alive = sum(1 for node in ray.nodes() if node.get("Alive"))
        workers = max(1, int(gpus // gpus_per_worker) if gpus_per_worker > 0 else alive)
    plan["workers"] = workers
    display.add_workers(workers)
    if gpus_per_worker * workers > gpus + 1e-9:
        raise InputError(f"{workers} workers x {gpus_per_worker:g} GPU need {workers * gpus_per_worker:g} GPUs; "
                         f"the cluster has {gpus:g} (share one with --gpus-per-worker 0.5)")
    # Each worker reserves an equal share of the cluster's CPUs (or --threads of them) and runs
    # torch on that many threads: Ray sets OMP_NUM_THREADS=1 in its workers otherwise.
    cpus_per_worker = float(config["threads"]) if config["threads"] else max(0.01, cpus / workers)
    if cpus_per_worker * workers > cpus + 1e-9:
        raise InputError(f"{workers} workers x {cpus_per_worker:g} CPUs need more than the cluster's {cpus:g} CPUs")
    worker_config = dict(config, threads=max(1, int(cpus_per_worker)))
    if gpus_per_worker > 0:
        worker_config["device"] = "cuda" if str(config["device"]) in ("auto", "cuda") or str(config["device"]).startswith("cuda:") else config["device"]
    elif str(config["device"]) == "auto":
        worker_config["device"] = "cpu"
    plan.update(gpus_per_worker=gpus_per_worker, cpus_per_worker=round(cpus_per_worker, 3))

    Actor = ray.remote(FileWorker).options(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, max_concurrency=2)
    actors = [Actor.remote(worker_config, video) for _ in range(workers)]
    names: dict[Any, str] = {}
    try:
        for actor, (name, error, code) in zip(actors, ray.get([a.ready.remote() for a in actors])):
            if error is not None:
                raise _error_of(code, error)
            names[actor] = name
            plan["per_worker"][name] = {"files": 0, "frames": 0, "busy_seconds": 0.0}
        plan["startup_seconds"] = round(time.perf_counter() - plan["t0"], 3)  # Ray start, model loads
        queue = deque(todo)
        idle = list(actors)
        inflight: dict[Any, tuple[Any, FileTask]] = {}
        while queue or inflight:
            while idle and queue:
                task = queue.popleft()
                actor = idle[-1]
                if not start(task, names[actor]):
                    display.file_done(task.size, 0)
                    continue
                idle.pop()
                inflight[actor.run.remote(task.input, task.output, task.overwrite)] = (actor, task)
            if not inflight:
                break
            finished, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5)
            for ref in finished:
                actor, task = inflight.pop(ref)
                try:
                    result = ray.get(ref)
                    idle.append(actor)
                except ray.exceptions.RayActorError as err:  # the worker process died (OOM kill, node lost)
                    result = {"status": "failed", "error": f"worker {names[actor]} died: {str(err).splitlines()[0]}",
                              "exit_code": 1, "worker": names[actor]}
                    actors.remove(actor)
                    if not actors:
                        queue.clear()
                row = record(task, result)
                display.file_done(task.size, row["frames"] if row["status"] == "done" else 0)
                _tally(plan["per_worker"][names[actor]], row)
            busy = {a for a, _ in inflight.values()}
            try:
                polled = dict(zip(busy, ray.get([a.progress.remote() for a in busy], timeout=5)))
            except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError):
                polled = {}
            display.update([polled.get(a, {"input": None}) for a in actors], sizes)
    finally:
        for actor in actors:
            ray.kill(actor)


def _error_of(code: int, message: str) -> VidllieError:
    """A worker's start-up error (sent as text and exit code) as the driver's own exception."""
    for cls in (InputError, OutputError, WeightsError, DeviceError):
        if cls.exit_code == code:
            return cls(message)
    return VidllieError(message)


__all__ = ["MANIFEST_NAME", "BatchSummary", "FileWorker", "Manifest", "decide", "enhance_many",
           "format_summary", "plan_batch", "settings_of"]
