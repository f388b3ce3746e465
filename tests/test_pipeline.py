"""Pipeline: streaming enhance_video (frames, timestamps, audio), errors and Ctrl-C in every
thread, bounded queues, OOM fallback, enhance_frames on a live source, the DINO feature cache.

Models are random-init micro networks saved to a temp file; DINO is a tiny random DINOv3 saved
with ``save_pretrained`` and loaded back through ``from_pretrained`` (offline).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import kornia
import numpy as np
import pytest
import torch

from media import audio_packets, make_clip, video_times
from vidllie.errors import DeviceError, OutputError
from vidllie.jobs import streaming
from vidllie.jobs.video_job import enhance_video, enhance_video_file
from vidllie.pipeline.enhancer import Enhancer
from vidllie.video import Frame, VideoReader, VideoWriter

FAST = {"preset": "ultrafast"}


# ---------------------------------------------------------------- helpers (plain PyAV)
def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", frames=18, bframes=2)


def scene(h: int = 96, w: int = 160) -> np.ndarray:
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    img = np.stack([0.08 + 0.25 * xx, 0.08 + 0.15 * yy, 0.1 + 0.1 * xx * yy], axis=-1)
    img[h // 4 : h // 2, w // 5 : w // 3] += 0.2
    return img


def noisy(base: np.ndarray, n: int, sigma: float = 5 / 255, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(np.rint((base + rng.normal(0, sigma, base.shape)) * 255), 0, 255).astype(np.uint8) for _ in range(n)]


# ---------------------------------------------------------------- enhance_video streaming


def test_enhance_video_keeps_frames_timestamps_and_audio(micro_path, clip, tmp_path):
    dst = tmp_path / "out.mp4"
    seen = []
    stats = enhance_video(clip, dst, model=micro_path, device="cpu", batch_size=4, progress=lambda d, t: seen.append((d, t)), **FAST)
    assert video_times(dst) == pytest.approx(video_times(clip), abs=1e-6)
    assert len(video_times(dst)) == 18
    assert audio_packets(dst) == audio_packets(clip)  # byte-identical, same count
    assert stats["frames"] == 18 and stats["video"]["passthrough_packets"] == len(audio_packets(clip)[0])
    assert seen[0] == (0, 18) and seen[-1] == (18, 18)
    for stage in ("decode", "upload", "model", "smoothing", "download", "encode"):
        assert stats["stages"][stage]["frames"] == 18 and stats["stages"][stage]["seconds"] > 0
    assert stats["fps"] > 0 and stats["peak_host_rss_mb"] > 0 and stats["versions"]["torch"] == torch.__version__
    assert files_in(tmp_path) == ["out.mp4"]  # no temp file left


def test_vfr_timestamps_survive(micro_path, tmp_path):
    src = make_clip(tmp_path / "vfr.mkv", frames=12, vfr=True)
    dst = tmp_path / "vfr_out.mkv"
    enhance_video(src, dst, model=micro_path, device="cpu", **FAST)
    assert video_times(dst) == pytest.approx(video_times(src), abs=1e-6)
    assert audio_packets(dst) == audio_packets(src)


def test_ten_bit_input_and_output(micro_path, tmp_path):
    src = make_clip(tmp_path / "ten.mkv", frames=6, pix_fmt="yuv420p10le", audio_streams=0)
    dst = tmp_path / "ten_out.mkv"
    stats = enhance_video(src, dst, model=micro_path, device="cpu", pix_fmt="yuv420p10le", **FAST)
    assert stats["video"]["pix_fmt"] == "yuv420p10le"
    with VideoReader(dst) as r:
        assert r.info.bit_depth == 10 and len(list(r)) == 6


def _lossless(path: Path) -> list[np.ndarray]:
    return [f.image for f in VideoReader(path)]


def test_enhance_frames_equals_what_enhance_video_encodes(micro_path, clip, tmp_path):
    """FFV1 + bgr0 in MKV is lossless, so the file holds exactly what the pipeline produced."""
    dst = tmp_path / "lossless.mkv"
    enhancer = Enhancer(micro_path, device="cpu", batch_size=4)
    enhance_video_file(enhancer, clip, dst, codec="ffv1", pix_fmt="bgr0", crf=None, preset=None)
    from_video = _lossless(dst)
    decoded = [f.image for f in VideoReader(clip)]
    from_frames = list(Enhancer(micro_path, device="cpu", batch_size=4).enhance_frames(decoded))
    assert len(from_frames) == len(from_video) == 18
    for a, b in zip(from_frames, from_video):
        assert a.dtype == np.uint8 and a.shape == b.shape
        assert np.array_equal(a, b)


# ---------------------------------------------------------------- failures in every thread


def _fail_model_after(enhancer: Enhancer, calls: int, error: BaseException) -> None:
    original = enhancer.model.forward
    count = itertools.count()

    def forward(*args, **kwargs):
        if next(count) >= calls:
            raise error
        return original(*args, **kwargs)

    enhancer.model.forward = forward


@pytest.mark.parametrize("error", [RuntimeError("boom in the model"), KeyboardInterrupt()])
def test_compute_error_or_ctrl_c_leaves_no_file(micro_path, clip, tmp_path, error):
    enhancer = Enhancer(micro_path, device="cpu", batch_size=2)
    _fail_model_after(enhancer, 3, error)
    with pytest.raises(type(error)):
        enhance_video_file(enhancer, clip, tmp_path / "out.mp4", **FAST)
    assert files_in(tmp_path) == []


def test_encode_thread_error_propagates_and_leaves_no_file(micro_path, clip, tmp_path, monkeypatch):
    original = VideoWriter.write
    count = itertools.count()

    def write(self, *args, **kwargs):
        if next(count) == 5:
            raise OutputError("disk full (simulated)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VideoWriter, "write", write)
    with pytest.raises(OutputError, match="simulated"):
        enhance_video(clip, tmp_path / "out.mp4", model=micro_path, device="cpu", **FAST)
    assert files_in(tmp_path) == []


def test_decode_thread_error_propagates_and_leaves_no_file(clip, tmp_path):
    def items():
        with VideoReader(clip) as reader:
            for i, item in enumerate(reader.stream()):
                if i == 7:
                    raise ValueError("decoder exploded (simulated)")
                yield item

    with VideoReader(clip) as reader:
        writer = VideoWriter(tmp_path / "out.mp4", reader.info, **FAST)
        timer = streaming.StageTimer()
        identity = lambda images: (np.stack(images), None)  # noqa: E731
        with pytest.raises(ValueError, match="simulated"):
            streaming.run_stream(items(), writer, identity, batch_size=2, timer=timer)
    assert files_in(tmp_path) == []


def test_queues_bound_host_memory(clip, tmp_path):
    """A fast decoder never runs more than the queue bound ahead of a slow compute loop."""
    produced, consumed, ahead = [0], [0], []
    frame = np.zeros((96, 160, 3), np.uint8)

    def items():
        with VideoReader(clip) as reader:
            info = reader.info
        for i in range(120):
            produced[0] += 1
            yield Frame(frame, i, info.time_base, float(i * info.time_base), i)

    def slow(images):
        time.sleep(0.01)
        consumed[0] += len(images)
        ahead.append(produced[0] - consumed[0])
        return np.stack(images), None

    with VideoReader(clip) as reader:
        writer = VideoWriter(tmp_path / "out.mp4", reader.info, audio=False, **FAST)
        counts = streaming.run_stream(items(), writer, slow, batch_size=2, timer=streaming.StageTimer(), queue_size=4)
    assert counts.frames_in == counts.frames_out == 120
    assert max(ahead) <= 4 * 2 + 2 + 1  # input queue + one batch in hand + one being produced


# ---------------------------------------------------------------- out-of-memory fallback


def _reference(micro_path, frames, **kw):
    """Whole frames, one after the other's batch (no reuse): what the fallbacks must reproduce."""
    return list(Enhancer(micro_path, device="cpu", temporal=0, **{"reuse": False, **kw}).enhance_frames(frames))


def test_pixel_budget_turns_on_exact_chunking_for_large_frames(micro_path, monkeypatch):
    """A device with little memory: a 1280x720 frame exceeds the pixel budget, so the enhancer
    caps the batch and runs exact chunks by itself; the output is the untiled output."""
    from vidllie.pipeline import runner as runner_module

    frames = noisy(scene(720, 1280), 3)
    want = _reference(micro_path, frames, batch_size=2, chunk=0)
    chunks: list[int] = []
    original = runner_module.chunked_forward

    def spy(model, x, dino_maps=None, chunk=256, **kw):
        chunks.append(chunk)
        return original(model, x, dino_maps, chunk=chunk, **kw)

    monkeypatch.setattr(runner_module, "chunked_forward", spy)
    monkeypatch.setattr(runner_module, "device_total_memory", lambda device: 256 * 2**20)
    enhancer = Enhancer(micro_path, device="cpu", temporal=0, batch_size=2, reuse=False)
    got = list(enhancer.enhance_frames(frames))
    assert chunks and all(c < 720 and c % enhancer.align == 0 for c in chunks)
    assert enhancer.stats()["effective_batch_size"] == 1
    for a, b in zip(got, want, strict=True):
        assert np.abs(a.astype(int) - b).max() <= 1


def test_oom_halves_the_batch_and_keeps_every_frame(micro_path):
    frames = noisy(scene(), 10)
    want = _reference(micro_path, frames, batch_size=4)
    enhancer = Enhancer(micro_path, device="cpu", temporal=0, batch_size=4, reuse=False)  # whole frames: the OOM ladder
    original, calls = enhancer.model.forward, []

    def forward(x, *args, **kwargs):
        calls.append(x.shape[0])
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(x, *args, **kwargs)

    enhancer.model.forward = forward
    with pytest.warns(UserWarning, match="batch size lowered to 2"):
        got = list(enhancer.enhance_frames(frames))
    assert calls[:3] == [4, 2, 2]  # the failed batch of 4 is retried as two halves
    assert len(got) == 10
    for a, b in zip(got, want):
        assert np.abs(a.astype(int) - b).max() <= 1  # batch composition may move a rounding
    assert enhancer.oom_retries == 1 and enhancer.stats()["effective_batch_size"] == 2


def test_oom_at_batch_one_falls_back_to_exact_chunks(micro_path):
    frames = noisy(scene(256, 320), 3)
    enhancer = Enhancer(micro_path, device="cpu", temporal=0, batch_size=2, reuse=False)  # whole frames: the OOM ladder
    original = enhancer.model.forward

    def forward(x, *args, **kwargs):
        if x.shape[0] > 1 or x.shape[-1] > 200:  # whole frames never fit; chunks (no forward) do
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(x, *args, **kwargs)

    enhancer.model.forward = forward
    with pytest.warns(UserWarning) as warned:
        got = list(enhancer.enhance_frames(frames))
    messages = [str(w.message) for w in warned]
    assert messages == [
        "out of memory on cpu: batch size lowered to 1",
        "out of memory on cpu: tiling frames into 160 px chunks (exact)",
    ]
    assert len(got) == 3 and all(g.shape == (256, 320, 3) for g in got)
    want = _reference(micro_path, frames, batch_size=1)
    for a, b in zip(got, want):  # exact chunked execution: at most a uint8 rounding apart
        assert np.abs(a.astype(int) - b).max() <= 1
    assert enhancer.stats()["chunk"] == 160


def test_oom_in_chunks_falls_back_to_independent_tiles(micro_path, monkeypatch):
    """When even small chunks fail (the frame's stage maps do not fit), independent feathered
    tiles from half the frame down are the last resort; every frame still comes out."""
    import vidllie.pipeline.runner as runner_module

    chunks: list[int] = []

    def chunked_oom(model, x, dino_maps=None, chunk=256):
        chunks.append(chunk)
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(runner_module, "chunked_forward", chunked_oom)
    frames = noisy(scene(256, 320), 3)
    enhancer = Enhancer(micro_path, device="cpu", temporal=0, batch_size=1)
    original, tiles = enhancer.model.forward, []

    def forward(x, *args, **kwargs):
        if x.shape[-1] > 200:  # "fits" only one tile of at most 200 px
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        tiles.append(tuple(x.shape[-2:]))
        return original(x, *args, **kwargs)

    enhancer.model.forward = forward
    with pytest.warns(UserWarning) as warned:
        got = list(enhancer.enhance_frames(frames))
    assert [str(w.message) for w in warned] == [
        "out of memory on cpu: tiling frames into 160 px chunks (exact)",
        "out of memory on cpu: tiling frames into 160 px independent tiles (approximate)",
    ]
    assert chunks == [160] and tiles and all(w <= 200 for _, w in tiles)
    assert len(got) == 3 and all(g.shape == (256, 320, 3) for g in got)
    want = _reference(micro_path, frames, batch_size=1)
    for a, b in zip(got, want):  # same model, independent tiles: close, not exact
        assert kornia.metrics.psnr(torch.from_numpy(a).float(), torch.from_numpy(b).float(), 255.0) > 25
    assert enhancer.stats()["tile"] == 160 and enhancer.oom_retries == 2


def test_oom_everywhere_is_a_device_error_and_no_file(micro_path, clip, tmp_path):
    enhancer = Enhancer(micro_path, device="cpu", batch_size=2)
    _fail_model_after(enhancer, 0, torch.OutOfMemoryError("CUDA out of memory (simulated)"))
    with pytest.warns(UserWarning), pytest.raises(DeviceError, match="out of memory"):
        enhance_video_file(enhancer, clip, tmp_path / "out.mp4", **FAST)
    assert files_in(tmp_path) == []


# ---------------------------------------------------------------- enhance_frames on a live source


def test_enhance_frames_is_lazy_ordered_and_flushes_the_tail(micro_path):
    frames = noisy(scene(), 10)
    pulled = [0]

    def camera():
        for f in frames:
            pulled[0] += 1
            yield f

    enhancer = Enhancer(micro_path, device="cpu", temporal=0, batch_size=4, reuse=False)
    out = enhancer.enhance_frames(camera())
    first = next(out)
    assert pulled[0] == 4  # one batch pulled, nothing more: a live source is never drained
    rest = list(out)
    assert len(rest) + 1 == 10 and pulled[0] == 10
    # In order: every output is the enhancement of its own input (batch size 1 as reference).
    want = _reference(micro_path, frames, batch_size=1)
    for a, b in zip([first, *rest], want):
        assert np.abs(a.astype(int) - b).max() <= 1


def test_enhance_frames_rejects_bad_frames(micro_path):
    enhancer = Enhancer(micro_path, device="cpu")
    with pytest.raises(ValueError, match="H, W, 3"):
        list(enhancer.enhance_frames([np.zeros((8, 8), np.uint8)]))
    with pytest.raises(ValueError, match="uint8"):
        list(enhancer.enhance_frames([np.zeros((8, 8, 3), np.float32)]))


# ---------------------------------------------------------------- DINO feature cache

def _count_dino(enhancer: Enhancer) -> list[int]:
    calls: list[int] = []
    original = enhancer.dino.forward

    def forward(x):
        calls.append(x.shape[0])
        return original(x)

    enhancer.dino.forward = forward
    return calls


def _psnr(a: list[np.ndarray], b: np.ndarray | list[np.ndarray]) -> float:
    x = torch.from_numpy(np.stack(a)).float()
    y = torch.from_numpy(np.stack(b) if isinstance(b, list) else np.broadcast_to(b, x.shape).copy()).float()
    return kornia.metrics.psnr(x, y, 255.0).item()


def test_dino_cache_on_a_static_clip(guided_path):
    base = scene()
    frames = noisy(base, 40)
    clean = np.clip(np.rint(base * 255), 0, 255).astype(np.uint8)

    cached = Enhancer(guided_path, device="cpu", temporal=0, batch_size=4)
    dino_frames = _count_dino(cached)
    out_cached = list(cached.enhance_frames(frames))
    stats = cached.stats()["dino_cache"]
    print(f"DINO cache on a static clip: hit rate {stats['hit_rate']:.3f}, key frames {cached.cache.key_frames}")
    assert stats["hit_rate"] >= 0.9
    assert sum(dino_frames) == stats["misses"]  # DINO really ran only on the key frames

    uncached = Enhancer(guided_path, device="cpu", temporal=0, batch_size=4, dino_cache=False)
    dino_frames_off = _count_dino(uncached)
    out_uncached = list(uncached.enhance_frames(frames))
    assert sum(dino_frames_off) == 40 and uncached.stats()["dino_cache"]["hit_rate"] == 0

    unguided = list(Enhancer(guided_path, device="cpu", temporal=0, batch_size=4, dino="none").enhance_frames(frames))
    p_cached, p_uncached = _psnr(out_cached, clean), _psnr(out_uncached, clean)
    between, guidance_effect = _psnr(out_cached, out_uncached), _psnr(out_uncached, unguided)
    print(f"PSNR vs clean: cached {p_cached:.3f} dB, uncached {p_uncached:.3f} dB; cached vs uncached "
          f"{between:.2f} dB; guided vs unguided {guidance_effect:.2f} dB")
    assert abs(p_cached - p_uncached) <= 0.1
    assert guidance_effect < between - 10  # guidance matters, so the comparison means something


def test_dino_cache_refreshes_at_a_hard_cut(guided_path):
    a, b = scene(), scene()[::-1, ::-1] * 0.5 + 0.25
    frames = noisy(a, 11, seed=1) + noisy(b, 9, seed=2)
    enhancer = Enhancer(guided_path, device="cpu", batch_size=4)
    out = list(enhancer.enhance_frames(frames))
    assert len(out) == 20
    assert enhancer.cache.key_frames == [0, 11]
    stats = enhancer.stats()
    assert stats["dino_cache"]["refresh_reasons"]["cut"] == 1 and stats["scene_cuts"] == 1


def test_dino_cache_max_age_and_threshold(guided_path):
    # the key-frame threshold cache alone (with reuse on, its keys are the planner's full refreshes)
    frames = noisy(scene(), 12)
    aged = Enhancer(guided_path, device="cpu", batch_size=4, cache_max_age=5, reuse=False)
    list(aged.enhance_frames(frames))
    assert aged.cache.key_frames == [0, 5, 10]
    strict = Enhancer(guided_path, device="cpu", batch_size=4, cache_threshold=0.0, reuse=False)
    list(strict.enhance_frames(frames))
    assert strict.cache.key_frames == list(range(12))  # every noisy frame differs a little


def test_bundled_default_model_enhances_frames():
    enhancer = Enhancer(device="cpu", dino="none", batch_size=2)  # model="default"
    # the default is the fast network with the scene-exposure stage; the smoother's jump is off
    assert enhancer.exposure.enabled and enhancer.smoother.step == float("inf")
    assert not Enhancer("quality", device="cpu").exposure.enabled
    assert not Enhancer("fast", device="cpu").exposure.enabled
    assert not Enhancer(device="cpu", scene_exposure=False).exposure.enabled
    assert Enhancer("quality", device="cpu", scene_exposure=True).exposure.enabled
    frames = noisy(scene(64, 96) * 0.3, 3)
    out = list(enhancer.enhance_frames(frames))
    assert enhancer.stats()["scene_exposure"] == {"enabled": True, "key_frames": 1}
    assert len(out) == 3 and all(o.shape == (64, 96, 3) and o.dtype == np.uint8 for o in out)
