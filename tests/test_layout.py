"""The package reads as the data flow: imports run one way (no cycles, counting imports inside functions and
importlib lookups by name), the core imports nothing else of bmpose, the device side only the core, nothing below the CLI imports the CLI,
and long modules say why they are long."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "bmpose"
MAX_LINES = 350


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """bmpose modules that `name` imports anywhere in its body (a package's own submodules excepted)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()

    def add(target: str, names=()):
        hits = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
        found.update(hits or ([target] if target in modules else []))

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            add(target, [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for a in node.names:
                add(a.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in modules:
            add(node.value)   # a module named in a string: importlib lookups, command tables
    found.discard(name)
    if is_pkg:  # a package's __init__ re-exporting its own submodules is not a cycle
        found = {m for m in found if not m.startswith(name + ".")}
    return found


def _graph():
    modules = _modules()
    return modules, {m: _imports(m, p, modules) for m, p in modules.items()}


def test_no_import_cycles():
    _, graph = _graph()
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_walk_sees_function_level_and_importlib_imports(tmp_path):
    """The checker itself: imports inside a function body and modules named for importlib are edges."""
    modules, graph = _graph()
    assert "bmpose.convert.export" in graph["bmpose.runtime.predict"]     # inside open_model()
    probe = tmp_path / "probe.py"
    probe.write_text("import importlib\n\ndef f():\n    from ..convert import steps\n\n"
                     "TABLE = {'x': 'bmpose.bench.host'}\nimportlib.import_module('bmpose.calib.store')\n")
    assert _imports("bmpose.runtime.probe", probe, modules) == {
        "bmpose.convert.steps", "bmpose.bench.host", "bmpose.calib.store"}


def test_core_imports_nothing_else_of_bmpose():
    _, graph = _graph()
    for m, deps in graph.items():
        if m.startswith("bmpose.pose"):
            assert all(d.startswith("bmpose.pose") for d in deps), (m, deps)


def test_device_side_imports_only_the_core_and_what_the_box_has():
    """bmpose.device ships to the box with bmpose.pose: it may import the core, the standard library, numpy, cv2
    and the SDK's sophon.sail, nothing else (tests/deploy/test_deploy.py runs it in a venv that has only those)."""
    import sys

    _, graph = _graph()
    allowed_top = {"numpy", "cv2", "sophon", "__future__"}
    for m, deps in graph.items():
        if m.startswith("bmpose.device"):
            assert all(d.startswith(("bmpose.pose", "bmpose.device")) for d in deps), (m, deps)
            p = _modules()[m]
            for node in ast.walk(ast.parse(p.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and not node.level else []
                for n in names:
                    top = n.split(".")[0]
                    assert top in allowed_top or top in sys.stdlib_module_names, (m, n)


def test_nothing_below_the_cli_imports_it():
    _, graph = _graph()
    for m, deps in graph.items():
        if not m.startswith("bmpose.cli") and m != "bmpose.__main__":
            assert not any(d.startswith("bmpose.cli") for d in deps), (m, deps)


def test_no_cli_module_runs_another():
    """A command is the library's request parsed from argv: it imports the library and bmpose.cli.args (the
    options commands share), never another command (issue 35: deploy ran `build.main(argv)`)."""
    _, graph = _graph()
    for m, deps in graph.items():
        if m.startswith("bmpose.cli.") and m != "bmpose.cli.args":
            assert not [d for d in deps if d.startswith("bmpose.cli") and d != "bmpose.cli.args"], (m, deps)


def _reads_option(node) -> bool:
    """`args.x` or `getattr(args, "x", ...)`."""
    if isinstance(node, ast.Attribute):
        return isinstance(node.value, ast.Name) and node.value.id == "args"
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
            and bool(node.args) and isinstance(node.args[0], ast.Name) and node.args[0].id == "args")


def test_library_functions_take_no_argparse_namespace():
    """Below the CLI a function takes typed values (a request dataclass, paths, numbers), not the parsed
    options: a parameter named `args` that is read as `args.<option>`. The device app is the bundle's own
    command line (bmodel.py), so it is the box's CLI."""
    found = set()
    for m, p in _modules().items():
        if m.startswith(("bmpose.cli", "bmpose.device")) or m == "bmpose.__main__":
            continue
        tree = ast.parse(p.read_text())
        for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            if "args" in [a.arg for a in fn.args.args + fn.args.kwonlyargs] and any(_reads_option(n) for n in ast.walk(fn)):
                found.add(str(p.relative_to(PKG.parent)))
    assert not found, f"library functions reading parsed options: {sorted(found)}"


def test_no_package_called_build_and_long_modules_say_why():
    assert not (PKG / "build").exists()
    for m, p in _modules().items():
        lines = p.read_text().count("\n")
        if lines > MAX_LINES:
            doc = ast.get_docstring(ast.parse(p.read_text())) or ""
            assert "Long:" in doc, f"{p}: {lines} lines; split it or say why at its top (a 'Long: ...' line)"


# Floors, lowest first: a module may import its own floor and those below. report/ and experiments/ only read
# or drive what lies below them; the core and the device side sit at the bottom.
FLOORS = (
    ("pose", "device", "errors"),
    ("config", "config_checks", "onnx_config", "detector_config", "manifest", "procs", "progress", "cocodata", "chips", "layout",
     "compare", "tpu_mlir"),
    ("weights", "calib"),
    ("runtime",),
    ("convert",),
    ("evaluate", "deploy"),
    ("experiments", "bench", "report", "choose"),
    ("flows",),
    ("cli", "__main__"),
)
# The imports that still run up a floor, each with its reason. At most 2 (issue 21).
UPWARD = {
    ("bmpose.runtime.predict", "bmpose.convert.export"): "opening a model by config exports its ONNX when missing",
}


def _floor(module: str) -> int:
    if "." not in module:
        return 0   # the package's own __init__ (a docstring); `-m bmpose` strings in commands name it too
    top = module.split(".")[1]
    return next(i for i, names in enumerate(FLOORS) if top in names)


def test_every_module_has_a_floor():
    modules, _ = _graph()
    for m in modules:
        _floor(m)   # StopIteration: a new top-level module or package needs its floor in FLOORS


def test_imports_run_down_the_floors():
    _, graph = _graph()
    up = {(m, d) for m, deps in graph.items() for d in deps if _floor(d) > _floor(m)}
    assert up == set(UPWARD), f"imports up a floor: {sorted(up - set(UPWARD))}; gone: {sorted(set(UPWARD) - up)}"
    assert len(UPWARD) <= 2


def test_report_reads_only():
    """report/ writes HTML/MD/JSON from artifacts: it neither compiles (convert/) nor runs inference (runtime/)."""
    _, graph = _graph()
    for m, deps in graph.items():
        if m.startswith("bmpose.report"):
            assert not [d for d in deps if d.startswith(("bmpose.convert", "bmpose.runtime"))], (m, deps)


def test_tpu_mlir_is_imported_behind_one_door():
    """Only bmpose.tpu_mlir imports TPU-MLIR's package or the modules of its python/ (pymlir, pyruntime_bm,
    utils.*, tools.*); everything else asks that package (its runner, its runtimes, its readers)."""
    theirs = ("tpu_mlir", "pymlir", "pyruntime_bm", "utils", "tools", "numpy_helper", "transform", "calibration")
    for m, p in _modules().items():
        if m.startswith("bmpose.tpu_mlir"):
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            assert not [n for n in names if n.split(".")[0] in theirs], (m, names)


def test_no_function_over_60_lines():
    """A longer function gets split where a reader would name the parts."""
    long = []
    for m, p in _modules().items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{p.relative_to(PKG.parent)}:{node.lineno} {node.name} "
                            f"({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long


def test_tests_mirror_the_package():
    """tests/<subpackage>/ holds the tests of bmpose/<subpackage>/; tests/ itself those of the top-level modules
    and of the whole (layout, environment, setup)."""
    tests = Path(__file__).resolve().parent
    for f in tests.rglob("test_*.py"):
        rel = f.relative_to(tests)
        if len(rel.parts) > 1:
            assert len(rel.parts) == 2 and (PKG / rel.parts[0] / "__init__.py").is_file(), rel
