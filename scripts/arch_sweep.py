"""Model-only CPU speed of candidate networks (and runtimes), in one process.

    python scripts/arch_sweep.py arch     [--threads 2] [--rounds 5] [--size 640x360]
    python scripts/arch_sweep.py runtime  [--model fast] [--threads 2] [--rounds 5]

``arch``: random-init candidates (the quality model's network and faster ones), MACs counted with
``vidllie.models.info.model_macs`` and frames/s measured round-robin (one forward of each candidate
per round, so a change in machine load hits all of them alike); ratios to the quality network are
what to read on a shared machine. ``runtime``: one network under the CPU runtime options
(contiguous vs channels-last, 1 vs N threads, bf16 autocast, torch.compile, ONNX Runtime when
installed, OpenVINO f32 and bf16 as `--runtime openvino` runs it).
Prints a Markdown table. Model only: no decode, copies or encode (``vidllie bench`` measures those).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vidllie.models import ModelConfig, build_model, variant_config
from vidllie.models.configuration import DinoConfig, GuidanceConfig, RestormerConfig
from vidllie.models.info import model_macs


def _unguided(name: str, **restormer) -> ModelConfig:
    base = dict(dim=16, num_blocks=(2, 2, 2, 3), num_refinement_blocks=1, heads=(1, 2, 4, 8), ffn_expansion_factor=2.66)
    base.update(restormer)
    return ModelConfig(name=name, restormer=RestormerConfig(**base), dino=DinoConfig(backbone=None),
                       guidance=GuidanceConfig(levels="none"))


CANDIDATES = {
    "quality (tiny-unguided: u2, dim 16)": lambda: variant_config("tiny-unguided"),
    "u4, dim 16, residual": lambda: _unguided("u4-residual", pixel_unshuffle=4),
    "u4, dim 16, affine": lambda: _unguided("u4-affine", pixel_unshuffle=4, output_head="affine"),
    "u4, dim 16, blocks 1-2-2-2, affine": lambda: _unguided("u4-light", num_blocks=(1, 2, 2, 2), pixel_unshuffle=4,
                                                             output_head="affine"),
    "u8, dim 32, affine (first choice)": lambda: _unguided("u8-d32", dim=32, pixel_unshuffle=8, output_head="affine"),
    "u8, dim 32, blocks 1-2-2-2, affine": lambda: _unguided("u8-d32-light", dim=32, num_blocks=(1, 2, 2, 2),
                                                             pixel_unshuffle=8, output_head="affine"),
    "u8, dim 32, residual": lambda: _unguided("u8-d32-residual", dim=32, pixel_unshuffle=8),
    "u8, dim 24, affine": lambda: _unguided("u8-d24", dim=24, pixel_unshuffle=8, output_head="affine"),
    "u8, dim 24, blocks 1-2-2-2, affine (fast-base)": lambda: variant_config("fast-base"),
    "fast-base + detail branch at 1/2 resolution, 16 channels (fast)": lambda: variant_config("fast"),
}


def _time_round_robin(fns: dict, rounds: int) -> dict[str, float]:
    """Median seconds per call of each fn, calling them in turn ``rounds`` times (after a warm-up)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _runner(model, x):
    def run():
        with torch.inference_mode():
            model(x)
    return run


def cmd_arch(args) -> None:
    h, w = args.size
    x = torch.rand(1, 3, h, w)
    fns, macs, params = {}, {}, {}
    for label, make in CANDIDATES.items():
        config = make()
        torch.manual_seed(0)
        model = build_model(config).eval().to(memory_format=torch.channels_last)
        params[label] = sum(p.numel() for p in model.parameters())
        macs[label] = model_macs(config, h, w)
        fns[label] = _runner(model, x.contiguous(memory_format=torch.channels_last))
    sec = _time_round_robin(fns, args.rounds)
    ref = next(iter(sec))
    print(f"model-only, {w}x{h}, batch 1, fp32, channels-last, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} round-robin rounds\n")
    print("| network | params | GMAC/frame | frames/s | speed vs quality |")
    print("|---|---|---|---|---|")
    for k in sec:
        print(f"| {k} | {params[k] / 1e6:.2f} M | {macs[k] / 1e9:.2f} | {1 / sec[k]:.1f} | {sec[ref] / sec[k]:.2f}x |")


def cmd_runtime(args) -> None:
    h, w = args.size
    torch.manual_seed(0)
    model = build_model(args.model).eval()
    x = torch.rand(args.batch, 3, h, w)
    n = torch.get_num_threads()
    fns = {}

    def threaded(fn, threads):
        def run():
            old = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                fn()
            finally:
                torch.set_num_threads(old)
        return run

    fns[f"eager, contiguous, {n} threads"] = _runner(model, x)
    cl_model = build_model(args.model).eval()
    cl_model.load_state_dict(model.state_dict())
    cl_model = cl_model.to(memory_format=torch.channels_last)
    xcl = x.contiguous(memory_format=torch.channels_last)
    fns[f"eager, channels-last, {n} threads"] = _runner(cl_model, xcl)
    if n > 1:
        fns["eager, channels-last, 1 thread"] = threaded(_runner(cl_model, xcl), 1)

    def bf16():
        # What `--precision bf16` does on a CPU: autocast (oneDNN bf16 kernels where the CPU has them).
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            cl_model(xcl)
    fns[f"bf16 autocast, channels-last, {n} threads"] = bf16
    if not args.no_compile:
        try:
            compiled = torch.compile(cl_model)
            t0 = time.perf_counter()
            with torch.inference_mode():
                compiled(xcl)
            print(f"torch.compile: first call (compilation) {time.perf_counter() - t0:.1f} s")
            fns[f"torch.compile, channels-last, {n} threads"] = _runner(compiled, xcl)
        except Exception as err:  # noqa: BLE001 - report why the option is out, keep measuring the rest
            print(f"torch.compile: failed ({type(err).__name__}: {str(err).splitlines()[0][:200]})")
    try:
        import onnxruntime as ort

        import io
        buf = io.BytesIO()
        torch.onnx.export(model, (x,), buf, input_names=["x"], output_names=["y"], opset_version=18, dynamo=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = n
        sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
        xn = x.numpy()
        ref = model(x).detach().numpy()
        err = float(abs(sess.run(None, {"x": xn})[0] - ref).max())
        print(f"onnxruntime {ort.__version__}: max |diff| vs eager {err:.2e}")
        fns[f"ONNX Runtime {ort.__version__}, {n} threads"] = lambda: sess.run(None, {"x": xn})
    except ImportError:
        print("onnxruntime: not installed (skipped)")
    except Exception as err:  # noqa: BLE001
        print(f"onnxruntime: failed ({type(err).__name__}: {str(err).splitlines()[0][:200]})")
    try:
        import tempfile

        from vidllie.pipeline.openvino_runtime import OpenVinoModel

        cache = tempfile.mkdtemp(prefix="arch-sweep-openvino-")
        with torch.inference_mode():
            ref = model(x)
        for hint in ("f32", "bf16"):
            # What `--runtime openvino` does (`--precision bf16` for the bf16 hint); converted
            # once, then compiled for this size (both outside the timing).
            ov_model = OpenVinoModel(model, threads=n, precision=hint, cache_dir=cache)
            t0 = time.perf_counter()
            err = float((ov_model(xcl) - ref).abs().max())
            print(f"openvino {hint}: conversion + compilation {time.perf_counter() - t0:.1f} s, max |diff| vs eager {err:.2e}")
            fns[f"OpenVINO {hint}, {n} threads"] = (lambda m: lambda: m(xcl))(ov_model)
    except ImportError:
        print("openvino: not installed (skipped)")
    except Exception as err:  # noqa: BLE001
        print(f"openvino: failed ({type(err).__name__}: {str(err).splitlines()[0][:200]})")
    sec = _time_round_robin(fns, args.rounds)
    ref = next(iter(sec))
    print(f"\n{args.model}, model-only, {w}x{h}, batch {args.batch}, fp32, median of {args.rounds} round-robin rounds\n")
    print("| runtime | frames/s | vs eager contiguous |")
    print("|---|---|---|")
    for k in sec:
        print(f"| {k} | {args.batch / sec[k]:.1f} | {sec[ref] / sec[k]:.2f}x |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["arch", "runtime"])
    ap.add_argument("--size", default="640x360", type=lambda s: tuple(int(v) for v in s.split("x"))[::-1])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--model", default="fast")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    {"arch": cmd_arch, "runtime": cmd_runtime}[args.what](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
