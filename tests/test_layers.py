"""The package's shape: layers that import only downwards, no import circles, the page's modules
without TensorFlow, and modules a reader takes in at one sitting."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fedtext"
MAX_LINES = 400

# Each layer and the layers it may import; a layer always may import itself and `config`.
LAYERS = {
    "text": set(),
    "model": {"text"},
    "distribution": {"text"},
    "learning": {"text", "model", "distribution"},
    "service": {"text", "model", "distribution", "learning"},
    "cli": {"text", "model", "distribution", "learning"},
    "bench": {"text", "model", "distribution", "learning", "service", "cli"},
}
# What the page imports before TensorFlow has loaded: whole layers, and the NumPy side of two.
WITHOUT_TENSORFLOW = (
    "fedtext.config",
    "fedtext.options",
    "fedtext.presets",
    "fedtext.text",
    "fedtext.service",
    "fedtext.model.weights",
    "fedtext.model.generation",
    "fedtext.learning.privacy",
    "fedtext.learning.records",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path) -> set[str]:
    """Every fedtext module `path` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("fedtext"):
                for alias in node.names:
                    name = f"{node.module}.{alias.name}"
                    found.add(name if name in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("fedtext")}
    return found & set(MODULES)


GRAPH = {name: imported_modules(path) - {name} for name, path in MODULES.items()}


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_belongs_to_a_layer():
    loose = [m for m in MODULES if m.count(".") == 1 and layer(m) is None]
    top = ["fedtext.__main__", "fedtext.config", "fedtext.options", "fedtext.presets"]
    assert sorted(loose) == top, loose


def test_layers_import_only_downwards():
    wrong = []
    for module, imports in GRAPH.items():
        own = layer(module)
        if own is None:
            continue
        for target in imports:
            other = layer(target)
            if other not in (None, own) and other not in LAYERS[own]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, wrong


def test_no_import_circles():
    circles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                circles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in MODULES:
        if module not in state:
            visit(module, [module])
    assert not circles, circles


def test_the_circle_check_finds_a_circle():
    """The check above on a graph with one circle in it: it must see it."""
    global GRAPH
    saved = GRAPH
    GRAPH = {**saved, "fedtext.text.vocab": saved["fedtext.text.vocab"] | {"fedtext.text.plays"}}
    try:
        test_no_import_circles()
    except AssertionError as error:
        assert "fedtext.text.vocab" in str(error)
    else:
        raise AssertionError("a circle vocab -> plays -> vocab went unseen")
    finally:
        GRAPH = saved


def test_the_pages_layers_load_no_tensorflow():
    names = [m for m in MODULES if m.startswith(WITHOUT_TENSORFLOW) and "__main__" not in m]
    assert "fedtext.service.backend" in names and "fedtext.text.style" in names
    code = (
        f"import sys, importlib; [importlib.import_module(m) for m in {names!r}]; "
        "print(sorted(m for m in ('tensorflow', 'tensorflow_federated', 'streamlit') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_no_module_is_over_400_lines():
    paths = [*MODULES.values(), ROOT / "app.py", *(ROOT / "ui").glob("*.py")]
    long = {
        str(p.relative_to(ROOT)): n
        for p in paths
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long
