"""OpenVINO as the CPU runtime of the unguided models (``runtime="openvino"``; ``"auto"`` picks it
on the CPU when the package is installed and the model runs without DINO).

The network is converted once from PyTorch (``openvino.convert_model``, shapes left dynamic) on
its padded core (:meth:`Restormer.forward_padded`: padding and cropping stay in torch, exactly as
in :meth:`Restormer.forward`), kept on disk (OpenVINO IR, full-precision weights) under a key of
the weights, the config and the library versions, and compiled for each padded frame size it
meets, one frame per request (reuse tiles come in batches of any size). With ``streams`` > 1 the
frames of a batch run in parallel streams that share the threads (``THROUGHPUT``; the pipeline
uses one thread per stream when the batch allows): no thread waits for another inside a frame,
which on a busy machine halves the model stage's time (docs/benchmarks.md, "Speed on a shared
machine"); ``streams=1`` runs one frame at a time on every thread (``LATENCY``). Measured on the idle
2-core CPU, 640x360, `fast`: 56 ms per frame in eager PyTorch (channels-last), 38 ms with OpenVINO
in f32 (docs/benchmarks.md); the outputs agree within 1e-5.

    runtime = OpenVinoModel(model, threads=2, precision="f32")
    y = runtime(x)            # (B, 3, H, W) float32 on the CPU, like model(x)
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from vidllie.errors import VidllieError
from vidllie.models.restormer import pad_to_multiple

# Bump when what is converted changes (the traced function, the saved format).
IR_FORMAT = 1
# Compiled frame sizes kept (a video has one; reuse tiles and live streams add a few).
MAX_COMPILED = 8
# torch precision -> OpenVINO inference precision hint
PRECISION_HINTS = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}
# OpenVINO element type names -> vidllie's precision names (stats, reports)
_PRECISION_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def openvino_available() -> bool:
    """True when the ``openvino`` package imports."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def shared_core():
    """The process's one ``openvino.Core``, kept until exit.

    The CPU plugin gives the thread that creates a Core an alternate signal stack and puts the
    previous one back when that Core is destroyed. Cores destroyed in another order than the
    reverse of their creation leave the thread's signal stack pointing at freed memory, and the
    next signal handled there (Ctrl-C, SIGTERM, a child process ending) kills the process with a
    segmentation fault. One Core that is never destroyed cannot do that.
    """
    import openvino

    return openvino.Core()


def default_cache_dir() -> Path:
    """``$VIDLLIE_CACHE/openvino``, else ``$XDG_CACHE_HOME/vidllie/openvino`` (``~/.cache``)."""
    root = os.environ.get("VIDLLIE_CACHE")
    if root:
        return Path(root) / "openvino"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vidllie" / "openvino"


def supports_openvino(model: nn.Module) -> bool:
    """Whether ``model`` can run on OpenVINO: a vidllie Restormer model (run without DINO maps)."""
    return hasattr(getattr(model, "restormer", None), "forward_padded")


def resolve_runtime(runtime: str, device: torch.device, model: nn.Module, dino: nn.Module | None,
                    compile: bool) -> str:
    """``auto|torch|openvino`` -> ``torch`` or ``openvino`` for this run; a clear error where
    ``openvino`` cannot run (another device, DINO guidance on, ``compile``, not installed).
    ``$VIDLLIE_RUNTIME`` (torch or openvino) replaces ``auto``'s choice."""
    if runtime == "auto" and os.environ.get("VIDLLIE_RUNTIME", "auto") != "auto":
        runtime = os.environ["VIDLLIE_RUNTIME"]
    possible = device.type == "cpu" and dino is None and not compile and supports_openvino(model)
    if runtime == "auto":
        return "openvino" if possible and openvino_available() else "torch"
    if runtime == "openvino":
        if device.type != "cpu":
            raise VidllieError(f"runtime 'openvino' runs on the CPU; this run is on {device}")
        if dino is not None:
            raise VidllieError("runtime 'openvino' runs without DINO guidance (--dino none), or use runtime 'torch'")
        if compile:
            raise VidllieError("--compile is a torch runtime option; use runtime 'torch' with it")
        if not supports_openvino(model):
            raise VidllieError("runtime 'openvino' runs vidllie's Restormer models; use runtime 'torch'")
        if not openvino_available():
            raise VidllieError("runtime 'openvino' needs the openvino package: pip install openvino")
        return "openvino"
    if runtime != "torch":
        raise VidllieError(f"unknown runtime {runtime!r} (VIDLLIE_RUNTIME?); use auto, torch or openvino")
    return "torch"


class _PaddedCore(nn.Module):
    """What is converted: the body on a frame already padded to the size multiple."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.restormer = model.restormer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.restormer.forward_padded(x)


def model_key(model: nn.Module) -> str:
    """A hash of the weights, the config and the library versions: the converted model's name."""
    import openvino

    h = hashlib.sha256()
    config = getattr(model, "config", None)
    h.update(json.dumps(config.to_dict() if hasattr(config, "to_dict") else repr(config), sort_keys=True,
                        default=str).encode())
    h.update(f"{IR_FORMAT} {openvino.__version__} {torch.__version__}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


class OpenVinoModel:
    """Callable like the model on CPU tensors: ``(B, 3, H, W)`` float -> ``(B, 3, H, W)`` float32.

    ``threads``: OpenVINO inference threads (None: its default, all cores). ``streams``: frames of
    a batch run in parallel, each on ``threads / streams`` threads (1: one frame at a time on all
    threads, the lowest latency). ``precision``: an
    OpenVINO inference precision hint (``"f32"``, ``"bf16"``, ``"f16"``), or None for OpenVINO's
    choice for the CPU (bf16 where it computes bf16 natively, AVX512-BF16 or AMX; else f32;
    :attr:`precision_name` says which). ``cache_dir``: where the
    converted model and OpenVINO's compiled-model cache live (None: :func:`default_cache_dir`).
    The first call converts (about 6 s for `fast` on an idle 2-core CPU, once per model and
    machine) and compiles for the frame size (1-3 s, once per size; cached on disk too).
    """

    def __init__(self, model: nn.Module, *, threads: int | None = None, streams: int = 1,
                 precision: str | None = "f32", cache_dir: str | os.PathLike | None = None) -> None:
        if not supports_openvino(model):
            raise VidllieError("runtime 'openvino' runs vidllie's Restormer models; use runtime 'torch'")
        try:
            import openvino
        except ImportError as err:
            raise VidllieError("runtime 'openvino' needs the openvino package: pip install openvino") from err
        if precision is not None and precision not in PRECISION_HINTS.values():
            raise ValueError(f"precision hint must be one of {sorted(PRECISION_HINTS.values())}, got {precision!r}")
        self._ov = openvino
        self.model = model
        self.align = int(model.restormer.size_multiple)
        self.threads, self.precision = threads, precision
        self.streams = max(1, min(int(streams), int(threads or streams)))
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._core = shared_core()  # every setting is per compiled model
        self._ir = None  # the converted model, loaded on the first call
        self._compiled: OrderedDict[tuple[int, int], tuple] = OrderedDict()  # size -> (compiled, queue)
        self.converted = False  # True once this process converted (not read from the cache)

    @property
    def precision_name(self) -> str:
        """The precision inference runs in: ``fp32``, ``bf16`` or ``fp16``."""
        hint = self.precision or self._core.get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
        return _PRECISION_NAMES.get(hint, hint)

    # ------------------------------------------------------------------ conversion
    def _load_ir(self, example: torch.Tensor):
        if self._ir is not None:
            return self._ir
        xml = self.cache_dir / model_key(self.model) / "model.xml"
        if xml.is_file():
            self._ir = self._core.read_model(xml)
            return self._ir
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # convert_model traces the module (torch.jit.trace, deprecated in torch but OpenVINO's
            # PyTorch path); the tracer warns about the shape checks (Python bools), the shapes
            # stay dynamic (tests/test_openvino.py runs other sizes).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            ir = self._ov.convert_model(_PaddedCore(self.model).eval(), example_input=example.float().contiguous())
        self.converted = True
        try:
            # Written beside the final folder, then renamed: never a half-written model under its key.
            xml.parent.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=xml.parent.parent))
            try:
                self._ov.save_model(ir, tmp / "model.xml", compress_to_fp16=False)
                tmp.rename(xml.parent)
            except OSError:  # another process saved it first
                pass
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:  # no writable cache: convert again next time
            pass
        self._ir = ir
        return self._ir

    def _compiled_for(self, x: torch.Tensor):
        size = (int(x.shape[-2]), int(x.shape[-1]))
        if size in self._compiled:
            self._compiled.move_to_end(size)
            return self._compiled[size]
        ir = self._load_ir(x[:1]).clone()
        ir.reshape([1, 3, *size])
        streams = self.streams
        if streams > 1:
            # Threads split between streams, frames in parallel: no thread waits for another inside a
            # frame, so a thread that the scheduler has not running (a busy machine) delays only
            # its own frame. Same output as one stream (compared bit for bit in the tests).
            config = {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams}
        else:
            config = {"PERFORMANCE_HINT": "LATENCY"}
        if self.precision is not None:
            config["INFERENCE_PRECISION_HINT"] = self.precision
        if os.access(self.cache_dir, os.W_OK):
            config["CACHE_DIR"] = str(self.cache_dir / "compiled")  # compiled blobs: later runs start in ~1 s
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        # Unpinned: a pinned inference thread cannot move off a core that another process is busy
        # on (docs/benchmarks.md, "Speed on a shared machine").
        config["ENABLE_CPU_PINNING"] = False
        compiled = self._core.compile_model(ir, "CPU", config)
        queue = self._ov.AsyncInferQueue(compiled, streams) if streams > 1 else None
        self._compiled[size] = (compiled, queue)
        if len(self._compiled) > MAX_COMPILED:
            self._compiled.popitem(last=False)
        return compiled, queue

    # ------------------------------------------------------------------ running
    def __call__(self, x: torch.Tensor, dino_maps=None) -> torch.Tensor:
        if dino_maps is not None:
            raise ValueError("the OpenVINO runtime runs without DINO maps")
        if x.ndim != 4 or x.shape[1] != 3 or x.device.type != "cpu":
            raise ValueError(f"expected (B, 3, H, W) frames on the CPU, got {tuple(x.shape)} on {x.device}")
        padded, (h, w) = pad_to_multiple(x.float(), self.align)
        frames = padded.contiguous().numpy()
        out = torch.empty(padded.shape, dtype=torch.float32)
        # One frame per request: any batch size, one compiled size; with streams, the frames of
        # a batch run in parallel.
        compiled, queue = self._compiled_for(padded)
        if queue is None:
            for i in range(frames.shape[0]):
                out[i] = torch.from_numpy(compiled(frames[i : i + 1])[0][0])
        else:
            results: list = [None] * frames.shape[0]

            def done(request, i: int) -> None:  # on OpenVINO's thread: numpy only (no torch state there)
                results[i] = request.get_output_tensor(0).data[0].copy()

            queue.set_callback(done)
            for i in range(frames.shape[0]):
                queue.start_async({0: frames[i : i + 1]}, i)
            queue.wait_all()
            for i, y in enumerate(results):
                out[i] = torch.from_numpy(y)
        out = out[..., :h, :w]
        if x.is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)  # the pipeline's layout
        return out
