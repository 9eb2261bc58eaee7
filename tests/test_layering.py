"""Layering rules: Streamlit only in app.py, pages/ and core/ui/; no torch in statistics."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_streamlit_only_in_ui():
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "core").rglob("*.py")
        if "ui" not in p.relative_to(ROOT / "core").parts[:1] and "streamlit" in _imports(p)
    ]
    assert offenders == []


def test_statistics_modules_do_not_import_torch():
    stats = [*(ROOT / "core" / "stats").rglob("*.py"), *(ROOT / "core" / "di").rglob("*.py")]
    assert [str(p.relative_to(ROOT)) for p in stats if "torch" in _imports(p)] == []


def test_pages_are_thin():
    heavy = {"torch", "transformers", "diffusers", "sklearn", "scipy", "librosa"}
    for p in [ROOT / "app.py", *(ROOT / "pages").glob("*.py")]:
        assert not (_imports(p) & heavy), p.name


# -- the package graph ---------------------------------------------------------------------

LAYERS = (
    "core",  # core/__init__.py: the version only
    "core.registry",
    "core.config",  # config dataclasses: (de)serialisation and shared defaults
    "core.records",  # what each stage's run record holds, for every surface
    "core.evidence",
    "core.stats",
    "core.runtime",
    "core.data",
    "core.blind",
    "core.mia",
    "core.di",
    "core.targets",
    "core.recipes",  # build tooling (zoo training recipes, the demo corpus): uses targets and data
    "core.disentangle",
    "core.viz",
    "core.stages",  # one config per stage, importable without the numeric libraries
    "core.pipeline",
    "core.ui",
    "core.cli_flags",  # the command line's options made from config dataclasses
    "core.cli_common",  # what every command shares: output, workspace, the resolved target
    "core.cli_reference",  # `overheard reference`: shadow references and the advisor
    "core.cli_serve",  # `overheard serve` and `serve-api`: the servers and their clean stop
    "core.cli",
)
"""Each package may import only itself and the packages listed before it."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def core_imports(path: Path) -> set[str]:
    """Every ``core`` module ``path`` imports, at module level or inside functions, relative
    imports resolved and ``from core import stats`` read as ``core.stats``."""
    me = _module_name(path)
    package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "core")
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if module.split(".")[0] != "core":
                continue
            subs = [f"{module}.{a.name}" for a in node.names if _is_module(f"{module}.{a.name}")]
            out.update(subs or [module])
    return out


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in (ROOT / "core").rglob("*.py"):
        src = package_of(_module_name(path))
        graph.setdefault(src, set()).update(package_of(m) for m in core_imports(path) if package_of(m) != src)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_core_packages_form_no_cycle():
    assert _cycles(package_graph()) == []


def test_every_package_imports_only_the_layers_below_it():
    graph = package_graph()
    assert set(graph) <= set(LAYERS), f"packages missing from LAYERS: {set(graph) - set(LAYERS)}"
    rank = {p: i for i, p in enumerate(LAYERS)}
    upward = sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps if rank[b] > rank[a])
    assert upward == []


def test_runtime_imports_nothing_above_it():
    allowed = {"core", "core.registry", "core.config", "core.evidence", "core.runtime"}
    bad = {str(p.relative_to(ROOT)): sorted({package_of(m) for m in core_imports(p)} - allowed)
           for p in (ROOT / "core" / "runtime").rglob("*.py")}
    assert {k: v for k, v in bad.items() if v} == {}


def _all_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_statistics_packages_import_neither_torch_nor_the_targets():
    offenders = {}
    for pkg in ("stats", "di", "mia"):
        for p in (ROOT / "core" / pkg).rglob("*.py"):
            bad = sorted(m for m in _all_imports(p) | core_imports(p)
                         if m.split(".")[0] == "torch" or m == "core.targets" or m.startswith("core.targets."))
            if bad:
                offenders[str(p.relative_to(ROOT))] = bad
    assert offenders == {}


def test_targets_and_data_never_import_the_build_tooling():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in core_imports(p) if package_of(m) == "core.recipes")
                 for pkg in ("targets", "data") for p in (ROOT / "core" / pkg).rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_resolving_a_target_spec_imports_neither_torch_nor_the_recipes():
    """``import core.targets`` (every loader registered, the zoo catalogue listed) stays cheap:
    the adapters import torch when a target is loaded, never when a spec is resolved."""
    code = ("import sys, core.targets\n"
            "from core.targets.registry import list_targets, target_family\n"
            "list_targets(); target_family('zoo:lalm-small')\n"
            "print(sorted({m.split('.')[0] if m.split('.')[0] != 'core' else '.'.join(m.split('.')[:2])\n"
            "              for m in sys.modules} & {'torch', 'transformers', 'diffusers', 'core.recipes'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
