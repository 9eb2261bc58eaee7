"""Hostile names and metadata never end an ingest: every file and every metadata row is
stored or listed with a reason, and a dataset left half-ingested always recovers."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.cli import main
from core.data.ingest import ingest_path
from core.data.sources import display_path
from core.runtime.store import Workspace


def _wav(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.1 * np.random.default_rng(seed).standard_normal(4000)
    sf.write(path, x.astype(np.float32), 16000, subtype="PCM_16")


def test_display_path_is_readable_and_keeps_names_distinct() -> None:
    assert display_path("members/bad\udcffname.wav") == "members/bad\\xffname.wav"
    assert display_path("members/bad\udcfename.wav") != display_path("members/bad\udcffname.wav")
    assert display_path("a\x00b\nc.wav") == "a\\x00b\\x0ac.wav"
    assert display_path("members/Zoë.wav") == "members/Zoë.wav"


@pytest.mark.skipif(os.name != "posix", reason="needs a file system that takes arbitrary bytes in names")
def test_a_non_utf8_file_name_is_stored_under_a_displayable_name(tmp_path: Path, capsys) -> None:
    root = tmp_path / "c"
    for label in ("members", "nonmembers"):
        for i in range(3):
            _wav(root / label / f"c{i}.wav", seed=10 * ("members", "nonmembers").index(label) + i)  # distinct clips (str hashes vary by process)
    odd = os.fsencode(root / "members") + b"/bad\xffname.wav"
    with open(odd, "wb") as f:
        _wav(tmp_path / "tmp.wav", seed=99)
        f.write((tmp_path / "tmp.wav").read_bytes())
    ws = Workspace(tmp_path / "ws")
    rep = ingest_path(ws, root, "d")
    assert rep.clips == 7 and not rep.rejected
    assert "members/bad\\xffname.wav" in set(ws.items("d")["path"])
    assert ws.datasets().set_index("name").loc["d", "status"] == "ready"
    # through the CLI, as the defect was found
    assert main(["ingest", str(root), "--name", "d2", "--workspace", str(ws.root)]) == 0


def test_a_dataset_left_ingesting_recovers_by_rerun_and_by_replace(tmp_path: Path) -> None:
    root = tmp_path / "c"
    for label in ("members", "nonmembers"):
        for i in range(3):
            _wav(root / label / f"c{i}.wav", seed=10 * i + len(label))
    ws = Workspace(tmp_path / "ws")
    ws.create_dataset("d", source=str(root))  # what a crashed ingest leaves: status "ingesting"
    assert ws.datasets().set_index("name").loc["d", "status"] == "ingesting"
    assert ingest_path(ws, root, "d").clips == 6
    assert ws.datasets().set_index("name").loc["d", "status"] == "ready"
    ws.create_dataset("e", source=str(root))
    assert ingest_path(ws, root, "e", replace=True).clips == 6


def _hostile_zip(tmp_path: Path) -> Path:
    rows = ["path,label,text"]
    for i in range(6):
        _wav(tmp_path / "src" / f"c{i}.wav", seed=i)
        rows.append(f"a/c{i}.wav,{'member' if i % 2 else 'nonmember'},hello {i}")
    rows.append("a/c6.wav,maybe,unknown label")
    rows.append("../../etc/passwd,member,escape")
    rows.append("/abs/x.wav,member,absolute")
    rows.append("a/c0.wav,member,listed again with another label")
    rows[3] = "a/c2.wav,nonmember," + "x" * 200_000  # a 200 kB field
    rows.append("a/c4.wav,nonmember,hello 4")  # listed twice, identical: fine
    rows.append(",member,no path")
    _wav(tmp_path / "src" / "c6.wav", seed=6)
    z = tmp_path / "hostile.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for i in range(7):
            zf.write(tmp_path / "src" / f"c{i}.wav", f"a/c{i}.wav")
        zf.writestr("metadata.csv", "\n".join(rows) + "\n")
    return z


def test_hostile_metadata_csv_lists_every_row(tmp_path: Path, capsys) -> None:
    ws = Workspace(tmp_path / "ws")
    assert main(["ingest", str(_hostile_zip(tmp_path)), "--name", "h", "--workspace", str(ws.root)]) == 0
    rej = ws.rejected("h").set_index("path")["reason"].to_dict()
    assert "listed more than once" in rej["a/c0.wav"]
    assert "unknown label 'maybe'" in rej["a/c6.wav"]
    assert "path escapes the dataset" in rej["../../etc/passwd"] and "path escapes" in rej["/abs/x.wav"]
    items = ws.items("h").set_index("path")
    assert set(items.index) == {"a/c1.wav", "a/c2.wav", "a/c3.wav", "a/c4.wav", "a/c5.wav"}
    assert len(items.loc["a/c2.wav", "text"]) == 10_000
    out = capsys.readouterr().out
    assert "cut to 10,000" in out and "no path" in out
    # every audio file in the archive is accounted for: stored or rejected with a reason
    assert {f"a/c{i}.wav" for i in range(7)} <= set(items.index) | set(rej)


def test_nul_bytes_in_metadata_lose_no_row(tmp_path: Path) -> None:
    root = tmp_path / "c"
    rows = ["path,label,text"]
    for i in range(6):
        _wav(root / "a" / f"c{i}.wav", seed=i)
        rows.append(f"a/c{i}.wav,{'member' if i % 2 else 'nonmember'},hello {i}")
    rows[3] = "a/c2.w\x00av,nonmember,hel\x00lo 2"
    rows[4] = "\x00a/c3.wav,member,hello 3"
    (root / "metadata.csv").write_bytes(("\n".join(rows) + "\n").encode())
    ws = Workspace(tmp_path / "ws")
    rep = ingest_path(ws, root, "d")
    assert rep.clips == 6 and not rep.rejected
    assert any("NUL" in w for w in rep.warnings)
    assert ws.items("d").set_index("path").loc["a/c2.wav", "text"] == "hello 2"
