"""One description per stage's run record (:mod:`core.records`), rendered by every surface.

Each stage is run once through the CLI on a small demo workspace; its record's fields then
appear in the CLI's JSON, and its detail fields, under the same label, in the CLI's text,
on the stage's page (AppTest) and in the report. A field added to the MIA record and to
its producer reaches all four with no other edit.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.cli import main
from core.records import RECORDS, Field, record_of
from core.viz.report import build_report
from tests.conftest import demo_workspace

pytestmark = pytest.mark.usefixtures("torch_one_thread")

ROOT = Path(__file__).resolve().parents[1]
TARGET = "zoo:lalm-small"
FAST = ["--n-boot", "20", "--n-perm", "0", "--n-splits", "2"]
PAGES = {"mia": "2_MIA_Audit.py", "blind": "3_Blind_Baseline.py", "di": "4_Dataset_Inference.py",
         "disentangle": "5_Disentanglement.py"}
COMMANDS = {
    "blind": ["blind", "--groups", "metadata,text", *FAST],
    "mia": ["mia", "--target", TARGET, *FAST],
    "di": ["di", "--target", TARGET, "--n-resamples", "20", "--null-resamples", "20"],
    "disentangle": ["disentangle", "--target", TARGET, "--conditions", "original,noise", "--realizations", "1", *FAST],
}


def _run(ws, kind: str, capsys, *, json_out: bool) -> dict | str:
    argv = [*COMMANDS[kind], "--dataset", "speech", "--workspace", str(ws.root)] + (["--json"] if json_out else [])
    assert main(argv) == 0
    out = capsys.readouterr().out
    return json.loads(out) if json_out else out


def _page_labels(ws, kind: str, monkeypatch) -> set[str]:
    from core.ui.common import _settings

    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(ws.root))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "0")
    _settings.clear()
    try:
        at = AppTest.from_file(str(ROOT / "pages" / PAGES[kind]), default_timeout=120)
        at.query_params["dataset"] = "speech"
        if kind != "blind":
            at.query_params["target"] = TARGET
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        return {str(v) for df in [*at.dataframe, *at.table] for v in df.value.iloc[:, 0]}  # tables too: the details
    finally:
        _settings.clear()


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """A demo workspace with one run of every stage (the CLI's JSON and text of each)."""
    ws = demo_workspace(tmp_path_factory.mktemp("records"), 4)
    out: dict[str, tuple[dict, str]] = {}
    capsys = _Capture()
    for kind in COMMANDS:
        with capsys:
            js = _run(ws, kind, capsys, json_out=True)
            text = _run(ws, kind, capsys, json_out=False)
        out[kind] = (js, text)
    return ws, out


class _Capture:
    """capsys for a module-scoped fixture: stdout captured while inside ``with``."""

    def __enter__(self):
        import io
        import sys

        self._old, self._buf = sys.stdout, io.StringIO()
        sys.stdout = self._buf
        return self

    def __exit__(self, *exc):
        import sys

        sys.stdout = self._old

    def readouterr(self):
        class R:
            out = self._buf.getvalue()

        self._buf.seek(0), self._buf.truncate()
        return R()


@pytest.mark.parametrize("kind", list(COMMANDS))
def test_every_surface_shows_the_records_fields_under_one_label(audited, kind, monkeypatch):
    import re

    ws, out = audited
    js, text = out[kind]
    spec = record_of(kind)
    # JSON: every field the result holds (a stored field included), nothing the record does not name
    assert set(js) - {"run_id", "dataset", "target"} <= set(spec.keys())
    assert {f.key for f in spec.fields if f.key in ws.load_run(js["run_id"])["result"]} <= set(js)
    # the text, the page and the report: the second (newest) run, which the text names
    run = ws.load_run(re.search(rf"\brun ({kind}-[0-9a-f-]+)", text).group(1))
    rows = spec.rows(run["result"])
    assert rows, f"{kind}: no detail field to show"
    page = _page_labels(ws, kind, monkeypatch)
    report = build_report(ws, "speech", None if kind == "blind" else TARGET)
    for label, value in rows:
        assert f"  {label}: {value}" in text, (kind, label)
        assert label in page, (kind, label, sorted(page))
        assert f"<th>{_esc(label)}</th><td>{_esc(value)}</td>" in report, (kind, label)


def _esc(x: str) -> str:
    import html

    return html.escape(x)


def test_a_field_added_to_a_record_and_its_producer_reaches_every_surface(tmp_path, monkeypatch, capsys):
    from core.mia import aggregate

    probe = Field("probe_margin", "probe margin of the aggregate", detail=True)
    monkeypatch.setitem(RECORDS._items, "mia", dataclasses.replace(record_of("mia"), fields=(*record_of("mia").fields, probe)))
    to_dict = aggregate.MIAResult.to_dict
    monkeypatch.setattr(aggregate.MIAResult, "to_dict", lambda self: to_dict(self) | {"probe_margin": 0.125})
    ws = demo_workspace(tmp_path, 3)
    js = _run(ws, "mia", capsys, json_out=True)
    text = _run(ws, "mia", capsys, json_out=False)
    assert js["probe_margin"] == 0.125
    assert "  probe margin of the aggregate: 0.125" in text
    assert "probe margin of the aggregate" in _page_labels(ws, "mia", monkeypatch)
    assert "<th>probe margin of the aggregate</th><td>0.125</td>" in build_report(ws, "speech", TARGET)
