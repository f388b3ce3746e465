"""The ``vidllie enhance`` command (thin: options -> the jobs in :mod:`vidllie.jobs`): files,
folders, URLs and pipes one after the other in this process, or a batch job on Ray workers with
``--workers``/``--ray``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from pathlib import Path
from typing import Optional

import typer

from vidllie.cli_common import Progress, say, user_errors, write_json
from vidllie.errors import OutputClosedError, OutputError, VidllieError
from vidllie.pipeline.options import DEFAULTS as ENHANCE


def enhance(
    inputs: list[str] = typer.Argument(..., metavar="INPUT...", help="Video files, folders of videos, stream URLs, or - (standard input)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file (one input) or folder (several), or - (standard output). Default: <stem>_enhanced.<ext> beside each input (.mkv where the input is not a video container by name, e.g. .gif)."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Overwrite existing outputs."),
    model: str = typer.Option(ENHANCE.model, "--model", help="Checkpoint (.safetensors) or a bundled model: 'default' (the fast network with scene exposure), 'fast' (the same network judging exposure frame by frame) or 'quality' (a tiny Restormer at half resolution, darker on night scenes, about 3.5x slower on a CPU)."),
    dino: Optional[str] = typer.Option(ENHANCE.dino, "--dino", help="DINO backbone hub id or folder for guided models; 'none' runs without guidance."),
    device: str = typer.Option(ENHANCE.device, "--device", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option(ENHANCE.precision, "--precision", help="auto, fp32, fp16 or bf16 (auto: fp16 on CUDA, fp32 otherwise)."),
    batch_size: int = typer.Option(ENHANCE.batch_size, "--batch-size", min=1, help="Frames per model call."),
    chunk: Optional[int] = typer.Option(ENHANCE.chunk, "--chunk", "--tile", min=0, help="Exact chunk size in pixels (0 = never; default: automatic by device memory): the model runs in chunks of this size with frame-wide attention, same output as whole frames, less memory. --tile is an old name."),
    tile_overlap: int = typer.Option(ENHANCE.tile_overlap, "--tile-overlap", min=0, help="Overlap of independent feathered tiles, pixels (only the out-of-memory last resort uses them)."),
    codec: Optional[str] = typer.Option(None, "--codec", help="Video encoder (libx264, libx265, libvpx-vp9, libsvtav1, ffv1, ...). Default: libx264; VP9 for .webm."),
    crf: int = typer.Option(18, "--crf", help="Quality for x264/x265 (lower = better)."),
    preset: str = typer.Option("medium", "--preset", help="x264/x265 speed preset."),
    pix_fmt: Optional[str] = typer.Option(None, "--pix-fmt", help="Output pixel format (default yuv420p; yuv420p10le for 10-bit). With --input-format rawvideo: the raw frames' format (rgb24, bgr24, yuv420p; default rgb24), in and, with --format rawvideo, out."),
    out_format: Optional[str] = typer.Option(None, "--format", help="Output container (matroska, mpegts, nut, mp4, ...; default: from the suffix, matroska for -o -). rawvideo: bare frames, no audio."),
    video_stream: Optional[int] = typer.Option(None, "--video-stream", min=0, metavar="N", help="Enhance video stream N of the input (FFmpeg's stream number, e.g. 1 for the rear camera of a dual-channel dashcam file). Default: the first video stream; the others are named in a warning."),
    input_format: Optional[str] = typer.Option(None, "--input-format", help="Input container when it cannot be guessed (e.g. mpegts on a pipe); rawvideo: bare frames, with --size, --rate and --pix-fmt."),
    size: Optional[str] = typer.Option(None, "--size", help="Raw input frame size, WxH."),
    rate: Optional[str] = typer.Option(None, "--rate", help="Raw input frame rate, frames/s (default 25)."),
    start: Optional[str] = typer.Option(None, "--start", help="Start time: seconds or [hh:]mm:ss."),
    end: Optional[str] = typer.Option(None, "--end", help="End time: seconds or [hh:]mm:ss (streams: counted from the first frame)."),
    duration: Optional[str] = typer.Option(None, "--duration", help="Length to process from --start (seconds or [hh:]mm:ss); a live stream stops by itself after it."),
    segment: Optional[float] = typer.Option(None, "--segment", min=1.0, help="Write rolling files of this many seconds, each complete, named <stem>_YYYYmmdd-HHMMSS.<ext> by start time (cameras)."),
    reconnect: int = typer.Option(5, "--reconnect", min=0, help="Reopen a dropped live stream up to this many times in a row (0 = never)."),
    no_audio: bool = typer.Option(False, "--no-audio", help="Leave the audio out."),
    hdr: str = typer.Option("sdr", "--hdr", help="HDR (HLG/PQ) input: sdr = convert to SDR BT.709 (tone-mapped in linear light), keep = write 10-bit HEVC HLG BT.2020 with the highlights, as-is = enhance the code values untouched. Files only."),
    temporal: float = typer.Option(ENHANCE.temporal, "--temporal", min=0.0, max=1.0, help="Temporal smoothing strength, 0 = off."),
    scene_exposure: Optional[bool] = typer.Option(ENHANCE.scene_exposure, "--scene-exposure/--no-scene-exposure", help="Exposure judged on key frames and held across a scene, near-black kept dark (default: on for the default model, off for others)."),
    dino_cache: bool = typer.Option(ENHANCE.dino_cache, "--dino-cache/--no-dino-cache", help="Reuse DINO features across similar frames."),
    cache_threshold: float = typer.Option(ENHANCE.cache_threshold, "--cache-threshold", min=0.0, help="Max thumbnail difference to reuse DINO features."),
    cache_max_age: int = typer.Option(ENHANCE.cache_max_age, "--cache-max-age", min=1, help="Max frames a key frame's DINO features are reused."),
    reuse: Optional[bool] = typer.Option(ENHANCE.reuse, "--reuse/--no-reuse", help="Fixed cameras: recompute only the regions that changed (whole frames at cuts, every --cache-max-age frames, on light changes and camera motion). Default: on the CPU, off on a GPU."),
    compile: bool = typer.Option(ENHANCE.compile, "--compile", help="torch.compile the model (slow start, faster on long videos)."),
    runtime: str = typer.Option(ENHANCE.runtime, "--runtime", help="CPU runtime: auto (OpenVINO when installed and no DINO runs), torch or openvino."),
    threads: Optional[int] = typer.Option(ENHANCE.threads, "--threads", min=1, help="Torch CPU threads (default: all cores; fewer on a machine shared with busy processes)."),
    stats_json: Optional[Path] = typer.Option(None, "--stats-json", help="Write per-stage timings, fps, cache hit rate, memory and versions here."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar or summary."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Batch job on N Ray workers, each loading the model once (pip install \"vidllie[ray]\"); 0 = the same job in this process. Resumable: a manifest beside the outputs skips finished files on a re-run."),
    gpus_per_worker: Optional[float] = typer.Option(None, "--gpus-per-worker", min=0.0, help="GPUs per worker (0.5: two share one; default 1 where there are GPUs, else 0)."),
    ray_address: Optional[str] = typer.Option(None, "--ray", metavar="ADDRESS", help="Run the batch job on an existing Ray cluster: 'auto' or host:port (default: a local Ray instance)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Batch job: also redo files that failed before on the same input and settings."),
    force: bool = typer.Option(False, "--force", help="Batch job: redo every file, even finished ones."),
) -> None:
    """Enhance videos; audio is copied unchanged, timestamps are kept."""
    if workers is not None or ray_address is not None:
        stream_options = {"--segment": segment, "--duration": duration, "--format": out_format,
                          "--input-format": input_format, "--size": size, "--rate": rate}
        if given := [k for k, v in stream_options.items() if v is not None] or [i for i in inputs if i == "-"]:
            with user_errors():
                raise typer.BadParameter(f"batch jobs (--workers/--ray) take files and folders: not {', '.join(given)}")
        return _enhance_batch(
            inputs, output, yes=yes, quiet=quiet, stats_json=stats_json, workers=workers,
            gpus_per_worker=gpus_per_worker, ray_address=ray_address, retry_failed=retry_failed, force=force,
            options=dict(
                model=model, dino=dino, device=device, precision=precision, batch_size=batch_size, chunk=chunk,
                tile_overlap=tile_overlap, temporal=temporal, scene_exposure=scene_exposure, dino_cache=dino_cache,
                cache_threshold=cache_threshold, cache_max_age=cache_max_age, compile=compile, threads=threads,
                runtime=runtime, reuse=reuse, start=start, end=end, codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt, audio=not no_audio, hdr=hdr,
                video_stream=video_stream,
            ),
        )
    with user_errors(), contextlib.ExitStack() as claims:
        if retry_failed or force or gpus_per_worker is not None:
            raise typer.BadParameter("--retry-failed, --force and --gpus-per-worker belong to batch jobs (--workers N)")
        from vidllie.jobs.interrupts import Interrupted, exit_code, signal_name, signals_finish, signals_interrupt
        from vidllie.jobs.live import enhance_live
        from vidllie.jobs.plan import check_output_file, is_pipe, is_url, parse_time, plan_jobs
        from vidllie.jobs.video_job import enhance_video_file
        from vidllie.pipeline.enhancer import Enhancer
        from vidllie.video.pipes import special_output_kind, stdout_for_video

        jobs = plan_jobs(inputs, output)
        t0, t1 = parse_time(start), parse_time(end)
        length = parse_time(duration)
        if length is not None:
            if t1 is not None:
                raise typer.BadParameter("give --end or --duration, not both")
            if length <= 0:
                raise typer.BadParameter("--duration must be > 0")
            t1 = (t0 or 0.0) + length
        if segment is not None and is_pipe(jobs[0].dst):
            raise typer.BadParameter("--segment writes files: give -o NAME.mkv, not -o -")
        if hdr not in ("sdr", "keep", "as-is"):
            raise typer.BadParameter(f"--hdr must be sdr, keep or as-is (got {hdr!r})")
        if stats_json is not None:
            check_output_file(stats_json, "--stats-json")  # before the run, not after it
        pipe_kw, pix_fmt = _pipe_options(jobs, out_format, input_format, size, rate, pix_fmt)
        # -o -: standard output belongs to the video from here on (model loading included).
        video_out = claims.enter_context(stdout_for_video()) if is_pipe(jobs[0].dst) else None
        try:
            enhancer = Enhancer(
                model, dino=dino, device=device, precision=precision, batch_size=batch_size,
                chunk=chunk, tile_overlap=tile_overlap, temporal=temporal, scene_exposure=scene_exposure, dino_cache=dino_cache,
                cache_threshold=cache_threshold, cache_max_age=cache_max_age, compile=compile,
                threads=threads, reuse=reuse, runtime=runtime,
            )
        except ValueError as err:
            raise typer.BadParameter(str(err)) from None
        runs, failed = [], 0
        for job in jobs:
            progress = Progress("stdin" if is_pipe(job.src) else Path(job.src).name, quiet)
            # Streams (URLs, standard input) run live: the window is counted from the first frame
            # and the first stop signal finishes the output; files abort on a signal (nothing).
            streamed = is_url(job.src) or is_pipe(job.src)
            dst = video_out if is_pipe(job.dst) else job.dst
            stop = threading.Event()
            video = dict(start=t0, end=t1, codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt,
                         audio=not no_audio, overwrite=yes, progress=progress, video_stream=video_stream, **pipe_kw)
            # An existing FIFO or device is written into as a stream (never replaced): no -y.
            special = not is_pipe(job.dst) and special_output_kind(job.dst) is not None
            try:
                if not is_pipe(job.dst) and job.dst.exists() and not yes and segment is None and not special:
                    if not (is_url(job.src) or is_pipe(job.src)) and Path(job.src).exists() and job.dst.samefile(job.src):
                        raise OutputError(f"output path is the input file ({job.dst}); give another name with -o")
                    raise OutputError(f"{job.dst} exists; pass -y to overwrite")
                if streamed or segment is not None:
                    with signals_finish(stop) if streamed else signals_interrupt():
                        stats = enhance_live(enhancer, job.src, dst, segment=segment, stop=stop,
                                             reconnect=reconnect, **video)
                    if stop.is_set():
                        progress.close()
                        say(f"vidllie: stopped ({signal_name(Interrupted(stop.signum))}); "
                             f"output finished")
                else:
                    with signals_interrupt():  # SIGTERM/SIGHUP abort like Ctrl-C: no temp file left
                        stats = enhance_video_file(enhancer, job.src, dst, hdr=hdr, **video)
            except OutputClosedError as err:
                progress.close()  # the reader downstream stopped (| head): end quietly
                raise typer.Exit(err.exit_code) from None
            except KeyboardInterrupt as err:
                progress.close()  # end the bar's line first: the message gets its own line
                if segment is not None:
                    what = "finished segments are kept"
                elif video_out is not None or special:
                    sent = f"{video_out.bytes_written:,} bytes, " if video_out is not None else ""
                    what = (f"the stream to {job.dst} was cut after {sent}{progress.done} frames "
                            "(no trailer: Matroska/MPEG-TS/NUT players play it up to the cut)")
                else:
                    what = f"nothing was written to {job.dst}"
                say(f"vidllie: interrupted ({signal_name(err)}); {what}")
                raise typer.Exit(exit_code(err)) from None
            except VidllieError as err:
                progress.close()
                if len(jobs) == 1:
                    raise
                say(f"vidllie: error: {err}")
                failed = failed or err.exit_code
                continue
            progress.close()
            runs.append(stats)
            if not quiet:
                cache = stats["dino_cache"]
                hit = f", DINO cache {100 * cache['hit_rate']:.0f}% reused" if cache and cache["hit_rate"] is not None else ""
                share = stats["reuse"]["recomputed_share"] if stats["reuse"]["enabled"] else None
                hit += f", {100 * share:.0f}% of pixels recomputed" if share is not None else ""
                where = stats["output"] if segment is None else f"{len(stats['live']['segments'])} segment(s) {job.dst.stem}_*{job.dst.suffix}"
                say(f"{where}: {stats['frames']} frames, {stats['fps']:.2f} fps{hit}")
        if stats_json is not None and runs:
            write_json(stats_json, runs[0] if len(jobs) == 1 else {"runs": runs})
        if failed:
            raise typer.Exit(failed)


def _pipe_options(jobs, out_format, input_format, size, rate, pix_fmt) -> tuple[dict, Optional[str]]:
    """enhance_video's format arguments and the output pix_fmt for pipes and raw frames.

    --pix-fmt names the raw input's frames; a raw output keeps that layout, an encoded output
    from raw input gets the encoder's default."""
    from vidllie.errors import InputError
    from vidllie.jobs.plan import is_pipe
    from vidllie.pipeline.options import parse_size
    from vidllie.video.pipes import DEFAULT_PIPE_FORMAT, check_pipe_format, raw_video_options, stdout_seekable

    kw: dict = {"format": out_format, "input_format": input_format}
    raw_in = input_format == "rawvideo"
    if not raw_in and (size is not None or rate is not None):
        raise InputError("--size and --rate describe raw input frames: add --input-format rawvideo")
    if raw_in:
        if size is None:
            raise InputError("--input-format rawvideo needs the frame size: --size WxH")
        try:
            width, height = parse_size(size)
        except InputError:
            raise InputError(f"--size must look like 640x360, got {size!r}") from None
        kw["input_options"] = raw_video_options(width, height, rate or "25", pix_fmt or "rgb24")
        pix_fmt = (pix_fmt or "rgb24") if out_format == "rawvideo" else None
    if any(is_pipe(j.dst) for j in jobs):
        check_pipe_format(out_format or DEFAULT_PIPE_FORMAT, stdout_seekable())
        if sys.stdout.isatty():
            raise OutputError("standard output is a terminal: redirect it (> out.mkv) or pipe it (| ffplay -)")
    if any(is_pipe(j.src) for j in jobs) and sys.stdin.isatty():
        raise InputError("standard input is a terminal: pipe a video in (... | vidllie enhance - -o ...)")
    return kw, pix_fmt


def _enhance_batch(inputs, output, *, yes, quiet, stats_json, workers, gpus_per_worker, ray_address,
                   retry_failed, force, options) -> None:
    """``enhance --workers N`` / ``--ray``: the resumable batch job (``vidllie.jobs.batch``)."""
    with user_errors():
        from vidllie.jobs.batch import enhance_many, format_summary
        from vidllie.jobs.plan import parse_time

        options.update(start=parse_time(options["start"]), end=parse_time(options["end"]))
        summary: dict = {}
        try:
            rows = enhance_many(
                inputs, output, workers=workers, gpus_per_worker=gpus_per_worker,
                ray_address=ray_address, retry_failed=retry_failed, force=force, overwrite=yes,
                progress=not quiet, summary=summary, **options,
            )
        except ValueError as err:
            raise typer.BadParameter(str(err)) from None
        for row in rows:
            for message in (row.get("warnings") or []) if row.get("action") in ("enhanced", "failed") else []:
                say(f"vidllie: warning: {Path(row['input']).name}: {message}")
        if not quiet:
            say(format_summary(rows))
            say(f"{summary['frames']} frames in {summary['wall_seconds']:.1f} s: {summary['fps']:.2f} frames/s, "
                 f"{summary['files_per_hour']:.0f} files/hour; manifest {summary['manifest']}")
        if stats_json is not None:
            write_json(stats_json, summary)
        failed = [r for r in rows if r.get("status") == "failed"]
        if failed:
            raise typer.Exit(failed[0].get("exit_code") or 1)
