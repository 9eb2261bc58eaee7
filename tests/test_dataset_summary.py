"""One dataset summary: the banner, CLI, Home table, Dataset page, label chart and report agree.

The folder reproduces the case of a real ingest: readable files with same-label duplicate
copies, one clip under both labels, and unreadable files. Counts are checked against an
independent tally of what the test wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from streamlit.testing.v1 import AppTest

from core.cli import main
from core.data.ingest import ingest_path
from core.data.summary import dataset_summary, summarize, workspace_summary
from core.runtime.store import Workspace
from tests.conftest import tone

ROOT = Path(__file__).resolve().parents[1]
N_MEM, N_NON, DUP_MEM, DUP_NON, BAD = 7, 9, 3, 2, 2


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    """7 + 9 distinct clips, 3 + 2 duplicate copies, one conflict (2 files), 2 unreadable files."""
    root = tmp_path / "messy"
    for d in ("members", "nonmembers"):
        (root / d).mkdir(parents=True)
    for i in range(N_MEM):
        sf.write(root / "members" / f"m{i}.wav", tone(200 + 30 * i, seed=i), 16000)
    for i in range(N_NON):
        sf.write(root / "nonmembers" / f"n{i}.wav", tone(900 + 30 * i, seed=50 + i), 16000)
    for i in range(DUP_MEM):  # copies of m0 (three) under members
        (root / "members" / f"copy{i}.wav").write_bytes((root / "members" / "m0.wav").read_bytes())
    for i in range(DUP_NON):  # copies of n1 and n2
        (root / "nonmembers" / f"copy{i}.wav").write_bytes((root / "nonmembers" / f"n{i + 1}.wav").read_bytes())
    sf.write(root / "members" / "both.wav", tone(3000, seed=99), 16000)
    (root / "nonmembers" / "both_again.wav").write_bytes((root / "members" / "both.wav").read_bytes())
    for i in range(BAD):
        (root / "members" / f"bad{i}.wav").write_bytes(b"not audio at all")
    return root


def _expected() -> dict:
    return {
        "members": N_MEM, "nonmembers": N_NON, "conflicts": 1, "conflict_files": 2,
        "duplicate_files": DUP_MEM + DUP_NON, "rejected": BAD, "unique_clips": N_MEM + N_NON + 1,
        "stored_files": N_MEM + N_NON + DUP_MEM + DUP_NON + 2, "files_seen": N_MEM + N_NON + DUP_MEM + DUP_NON + 2 + BAD,
    }


def test_summary_counts_and_identities(workspace: Workspace, messy: Path) -> None:
    rep = ingest_path(workspace, messy, "messy")
    s = dataset_summary(workspace, "messy")
    assert {k: getattr(s, k) for k in _expected()} == _expected()
    assert s.unique_clips == s.members + s.nonmembers + s.conflicts
    assert s.stored_files == s.members + s.nonmembers + s.conflict_files + s.duplicate_files
    clips = workspace.analysis_clips("messy")
    assert (s.members, s.nonmembers) == (int(clips["y"].sum()), int((clips["y"] == 0).sum()))
    dup = {tuple(p) for p in s.duplicates["paths"]}
    assert dup == {("members/copy0.wav", "members/copy1.wav", "members/copy2.wav", "members/m0.wav"),
                   ("nonmembers/copy0.wav", "nonmembers/n1.wav"), ("nonmembers/copy1.wav", "nonmembers/n2.wav")}
    # the ingest report is the same summary
    assert (rep.clips, rep.members, rep.nonmembers, rep.duplicates) == (s.unique_clips, s.members, s.nonmembers, s.duplicate_files)
    assert rep.headline == s.headline()
    assert sorted(map(tuple, rep.duplicate_groups)) == sorted(dup)
    for n in ("16 unique clips analysed (7 members + 9 non-members)", "from 25 files", "5 duplicate copies", "1 label conflict (2 files) excluded", "2 rejected"):
        assert n in s.headline()


def test_summary_of_a_resumed_ingest_equals_one_pass(workspace: Workspace, messy: Path, tmp_path: Path) -> None:
    ingest_path(workspace, messy, "one")
    ws2 = Workspace(tmp_path / "ws2")
    ws2.create_dataset("two", source=str(messy))  # left "ingesting": a killed first pass
    ingest_path(ws2, messy, "two")
    a, b = dataset_summary(workspace, "one").to_dict(), dataset_summary(ws2, "two").to_dict()
    assert {k: v for k, v in a.items() if k != "dataset"} == {k: v for k, v in b.items() if k != "dataset"}


@pytest.mark.parametrize("seed", range(5))
def test_summarize_against_a_slow_tally(seed: int) -> None:
    """Random item tables: the vectorised counts equal a loop over the definitions."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = 60
    items = pd.DataFrame({"path": [f"f{i}" for i in range(n)], "clip_hash": [f"h{h}" for h in rng.integers(0, 25, n)],
                          "label": rng.choice(["member", "nonmember"], n, p=[0.4, 0.6])})
    s = summarize("x", "ready", items, n_rejected=3)
    labels: dict[str, set] = {}
    for h, lab in zip(items["clip_hash"], items["label"]):
        labels.setdefault(h, set()).add(lab)
    conflicted = {h for h, ls in labels.items() if len(ls) > 1}
    pairs = {(h, lab) for h, lab in zip(items["clip_hash"], items["label"]) if h not in conflicted}
    assert s.conflicts == len(conflicted)
    assert s.members == sum(1 for h, ls in labels.items() if ls == {"member"})
    assert s.nonmembers == sum(1 for h, ls in labels.items() if ls == {"nonmember"})
    assert s.duplicate_files == sum(1 for h in items["clip_hash"] if h not in conflicted) - len(pairs)
    assert s.conflict_files == sum(1 for h in items["clip_hash"] if h in conflicted)
    assert s.files_seen == n + 3 and s.unique_clips == len(labels)


def test_every_surface_shows_the_same_counts(workspace: Workspace, messy: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    rc = main(["ingest", str(messy), "--name", "messy", "--workspace", str(workspace.root), "--json"])
    assert rc == 0
    cli = json.loads(capsys.readouterr().out)
    s = dataset_summary(workspace, "messy")
    assert (cli["members"], cli["nonmembers"], cli["duplicates"], cli["clips"]) == (s.members, s.nonmembers, s.duplicate_files, s.unique_clips)
    assert main(["datasets", "--workspace", str(workspace.root), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["datasets"][0]
    assert (row["members"], row["nonmembers"], row["conflicts"], row["duplicate_files"], row["files"], row["rejected"]) == (
        s.members, s.nonmembers, s.conflicts, s.duplicate_files, s.files_seen, s.rejected)
    assert workspace_summary(workspace).iloc[0]["members"] == s.members

    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(workspace.root))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "0")
    home = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    home.run()
    assert not home.exception
    table = home.table[0].value
    assert (table["members (P)"].iloc[0], table["non-members (U)"].iloc[0], table["label conflicts (excluded)"].iloc[0]) == (s.members, s.nonmembers, s.conflicts)

    page = AppTest.from_file(str(ROOT / "pages/1_Dataset.py"), default_timeout=60)
    page.run()
    assert not page.exception
    metrics = {m.label: m.value for m in page.metric}
    assert metrics == {"Unique clips analysed": str(s.analysed), "Members (P)": str(s.members), "Non-members (U)": str(s.nonmembers),
                       "Duplicate copies": str(s.duplicate_files), "Label conflicts": str(s.conflicts), "Rejected files": str(s.rejected)}
    frames = [df.value for df in page.dataframe]
    dup_tables = [f for f in frames if "paths" in f.columns]
    assert len(dup_tables) == 1 and len(dup_tables[0]) == len(s.duplicates)

    from core.viz.dataset import label_balance

    bars = label_balance(workspace.analysis_clips("messy")).data[0]
    assert list(bars.y) == [s.members, s.nonmembers]

    from core.viz.report import _dataset_section

    html = _dataset_section(workspace, "messy")
    assert s.headline() in html.replace("&#x27;", "'") and "Duplicate copies" in html
