"""Layering rules: Streamlit only in app.py, pages/ and core/ui/; no torch in statistics."""

from __future__ import annotations

import ast
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
