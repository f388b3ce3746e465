"""The shape of the code base and its typed options: no import cycle inside vidllie/, the frame
path never imports the jobs around it, one-line refusals of unknown options (enhance and training
configs), defaults from one place."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from vidllie.errors import InputError

PACKAGE = Path(__file__).resolve().parents[1] / "vidllie"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_names(name: str, path: Path, node: ast.AST) -> list[str]:
    """The dotted names an import statement (absolute or relative) or an ``import_module("...")``
    / ``__import__("...")`` call in module ``name`` may load."""
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: resolved against the module's package
            package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
            parts = package[: len(package) - node.level + 1]
            base = ".".join(parts + ([node.module] if node.module else []))
        return [base] + [f"{base}.{a.name}" for a in node.names]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and ast.unparse(node.func).split(".")[-1] in ("import_module", "__import__")):
        return [node.args[0].value]
    return []


def _imports(type_checking: bool = False) -> dict[str, set[str]]:
    """Module -> vidllie modules it imports at run time (anywhere in it, functions included;
    imports under ``if TYPE_CHECKING:`` only with ``type_checking``)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        type_only = set() if type_checking else {
            id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        deps = set()
        for node in ast.walk(tree):
            if id(node) not in type_only:
                deps |= {c for c in _imported_names(name, path, node) if c in modules and c != name}
        # A package importing its own children (or a child its package) is not a cycle.
        graph[name] = {d for d in deps if not d.startswith(name + ".") and not name.startswith(d + ".")}
    return graph


def test_no_import_cycle_inside_vidllie():
    graph = _imports()
    assert "vidllie.cli" not in {d for deps in graph.values() for d in deps} - graph.get("vidllie.__main__", set())
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


FRAME_PATH = ("vidllie.pipeline", "vidllie.models", "vidllie.video", "vidllie.ops")


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_frame_path_imports_nothing_from_the_jobs():
    """One direction: the jobs (vidllie.jobs) use the frame path; the frame path, the models, the
    video layer and the ops never import the jobs, not inside functions, not for type hints."""
    graph = _imports(type_checking=True)
    assert "vidllie.jobs" in graph and "vidllie.jobs.video_job" in graph
    assert graph["vidllie.jobs.video_job"] & {"vidllie.pipeline.enhancer"}  # the direction that is allowed
    wrong = sorted(f"{m} -> {d}" for m, deps in graph.items() if _in(m, FRAME_PATH)
                   for d in deps if _in(d, ("vidllie.jobs", "vidllie.cli")) or d.startswith("vidllie.cli_"))
    assert not wrong, "the frame path imports the jobs: " + ", ".join(wrong)


def test_enhance_options_are_typed_and_unknown_ones_refused(micro_path):
    from vidllie.jobs.video_job import enhance_video
    from vidllie.pipeline.enhancer import ENHANCER_OPTIONS, Enhancer
    from vidllie.pipeline.options import DEFAULTS, EnhanceConfig

    assert set(ENHANCER_OPTIONS) == set(EnhanceConfig.names()) and "chunk" in ENHANCER_OPTIONS
    with pytest.raises(ValueError, match=r"^unknown enhance options: \['tile'\]$"):
        Enhancer(micro_path, device="cpu", tile=256)  # the exact-chunk option is `chunk`
    with pytest.raises(ValueError, match="chunk"):
        EnhanceConfig(chunk=64, tile_overlap=32)
    enhancer = Enhancer(micro_path, config=EnhanceConfig(device="cpu", batch_size=3), temporal=0.0)
    assert enhancer.batch_size == 3 and enhancer.smoother.strength == 0.0
    assert enhancer.options.cache_max_age == DEFAULTS.cache_max_age
    # the config's model is used when no model argument is given, not the default model
    from_config = Enhancer(config=EnhanceConfig(model=str(micro_path), device="cpu"))
    assert from_config.model_source == enhancer.model_source != Enhancer(device="cpu").model_source
    config, rest = EnhanceConfig.split({"device": "cpu", "crf": 20, "start": 1.0})
    assert config.device == "cpu" and rest == {"crf": 20, "start": 1.0}
    with pytest.raises(TypeError):
        enhance_video("in.mp4", "out.mp4", device="cpu", crff=20)  # neither an enhance nor a video option


def test_cli_defaults_come_from_enhance_config():
    import inspect

    from vidllie.cli_enhance import enhance
    from vidllie.pipeline.options import DEFAULTS

    params = inspect.signature(enhance).parameters
    for name in ("model", "dino", "device", "precision", "batch_size", "chunk", "tile_overlap", "temporal",
                 "dino_cache", "cache_threshold", "cache_max_age", "compile", "threads"):
        assert params[name].default.default == getattr(DEFAULTS, name), name


def test_train_config_is_typed_and_refuses_unknown_keys():
    from vidllie.train.config import TrainConfig, load_train_config
    from vidllie.train.degrade import DegradeConfig

    cfg = load_train_config({"data": {"images": "imgs", "degradation": {"cast_prob": 0.5}},
                             "dino": {"lora": {"r": 4}}}, overrides={"optim": {"lr": 1e-4}})
    assert isinstance(cfg, TrainConfig) and isinstance(cfg.data.degradation, DegradeConfig)
    assert cfg.data.degradation.cast_prob == 0.5 and cfg.optim.lr == 1e-4 and cfg.optim.warmup_steps == 200
    assert cfg.dino.lora.r == 4 and cfg.output_dir == "runs/run"
    assert load_train_config(cfg) == cfg  # a TrainConfig round-trips
    for bad, message in [
        ({"optim": {"lrr": 1}}, "unknown key 'optim.lrr'"),
        ({"dino": {"lora": {"rank": 4}}}, "unknown key 'dino.lora.rank'"),
        ({"data": {"images": "imgs", "degradation": {"exposur": [0.1, 0.2]}}}, "data.degradation: unknown degradation keys"),
        ({"loss": {"charbonier": 1.0}}, "loss: unknown loss keys"),
    ]:
        data = {"data": {"images": "imgs"}, **bad} if "data" not in bad else bad
        with pytest.raises(InputError, match=message) as err:
            load_train_config(data)
        assert "\n" not in str(err.value)
