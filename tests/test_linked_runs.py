"""Linked runs: every run records the runs it used (``refs``), cross-stage comparisons are
made from those refs when read, per-clip tables live beside the record as Parquet, and
dataset inference recomputes indicators from the evidence cache.

Real workspaces in a tmp dir; the MIA runs score a 12 + 12 clip subset of the demo corpus
with the built-in ``zoo:lalm-small`` target, so its evidence is really cached.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.data.ingest import ingest_path
from core.di import dataset_inference
from core.mia.aggregate import blind_correlation
from core.mia.links import blind_link
from core.pipeline import MIAConfig, audit_mia
from core.pipeline.blind import BlindRunConfig, audit_blind
from core.pipeline.di import DIRunConfig, audit_di, di_inputs, di_scores, indicator_inputs
from core.runtime.cache import clear_cache
from core.runtime.store import Workspace, atomic_write
from core.targets.zoo.registry import assets_dir
from core.viz.report import build_report
from test_pipeline_di import TARGET, save_mia, write_corpus

N_PER_LABEL = 12
SMALL_MIA = dict(n_boot=50, n_perm=10, n_splits=4)
SMALL_DI = DIRunConfig(n_resamples=20, null_resamples=20)
BLIND = BlindRunConfig(groups=("metadata",), n_boot=50, n_perm=10, n_splits=4)


@pytest.fixture(scope="module")
def linked(tmp_path_factory) -> dict:
    """Blind, MIA (generated and given text) and DI runs on a small demo subset."""
    tmp = tmp_path_factory.mktemp("linked")
    src = assets_dir() / "demo" / "demo-speech"
    for lab in ("members", "nonmembers"):
        (tmp / "sub" / lab).mkdir(parents=True)
        for f in sorted((src / lab).glob("*.flac"))[:N_PER_LABEL]:
            shutil.copy(f, tmp / "sub" / lab / f.name)
            shutil.copy(f.with_suffix(".txt"), tmp / "sub" / lab / f.with_suffix(".txt").name)
    ws = Workspace(tmp / "ws")
    ingest_path(ws, tmp / "sub", "speech")
    blind_id, blind = audit_blind(ws, "speech", BLIND)
    gen_id, gen = audit_mia(ws, "speech", TARGET, MIAConfig(mode="generated", **SMALL_MIA))
    given_id, given = audit_mia(ws, "speech", TARGET, MIAConfig(mode="given", **SMALL_MIA))
    di_id, di = audit_di(ws, "speech", TARGET, SMALL_DI)
    return {"ws": ws, "blind": (blind_id, blind), "gen": (gen_id, gen), "given": (given_id, given), "di": (di_id, di)}


def _copy_ws(linked: dict, tmp_path: Path) -> Workspace:
    """A private copy of the module's workspace, for tests that change it."""
    shutil.copytree(linked["ws"].root, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


# -- refs ------------------------------------------------------------------------------------


def test_every_run_records_the_runs_it_used(linked: dict) -> None:
    ws = linked["ws"]
    blind_id, gen_id, di_id = linked["blind"][0], linked["gen"][0], linked["di"][0]
    assert ws.load_run(blind_id)["refs"] == {}
    assert ws.load_run(gen_id)["refs"] == {"blind": blind_id}
    assert ws.load_run(di_id)["refs"] == {"mia": gen_id, "blind": blind_id}


def test_blind_comparison_is_made_from_the_linked_run_not_the_newest(linked: dict, tmp_path: Path) -> None:
    ws = _copy_ws(linked, tmp_path)
    blind_id, (gen_id, gen) = linked["blind"][0], linked["gen"]
    newer_id, _ = audit_blind(ws, "speech", BlindRunConfig(groups=("metadata",), n_boot=50, n_perm=10, n_splits=3, seed=7))
    run = ws.load_run(gen_id)
    link = blind_link(ws, run, ws.run_table(run, "clips")["score"])
    assert link.run_id == blind_id and link.ref.status == "linked" and link.ref.newer == newer_id
    old_scores = ws.run_table(blind_id, "clips")["score"]
    clips = ws.run_table(run, "clips")
    expect = blind_correlation(clips["score"].to_numpy(), old_scores.reindex(clips.index).to_numpy())
    assert link.correlation == pytest.approx(expect) and link.correlation == pytest.approx(gen["blind_correlation"])
    html = build_report(ws, "speech", TARGET)
    assert f"{blind_id} (a newer blind run, {newer_id}, exists" in html


def test_a_deleted_linked_run_is_reported_not_replaced(linked: dict, tmp_path: Path) -> None:
    ws = _copy_ws(linked, tmp_path)
    blind_id, gen_id = linked["blind"][0], linked["gen"][0]
    audit_blind(ws, "speech", BLIND)  # a newer blind run that must not stand in for the deleted one
    ws.delete_run(blind_id)
    assert not (ws.runs_dir / blind_id).exists()
    link = blind_link(ws, ws.load_run(gen_id), pd.Series(dtype=float))
    assert link.ref.status == "deleted" and link.run_id == blind_id
    assert link.verdict is None and link.correlation is None
    assert "has been deleted" in link.describe()
    html = build_report(ws, "speech", TARGET)
    assert f"{blind_id} — deleted since" in html and "could not be rendered" not in html
    ws.delete_run(gen_id)
    assert ws.run_ref(ws.load_run(linked["di"][0]), "mia").status == "deleted"
    assert f"{gen_id} — deleted since" in build_report(ws, "speech", TARGET)


# -- per-clip tables -------------------------------------------------------------------------


def test_per_clip_tables_are_parquet_beside_the_record(linked: dict) -> None:
    ws = linked["ws"]
    (gen_id, gen), (blind_id, blind) = linked["gen"], linked["blind"]
    run = ws.load_run(gen_id)
    assert set(run["tables"]) == {"clips", "indicators"}
    for key in ("table", "scores", "labels", "clip_order", "decoded", "clip_groups"):
        assert key not in run["result"]
    for path in run["tables"].values():
        assert (ws.root / path).read_bytes()[:4] == b"PAR1"
    assert not list(ws.runs_dir.rglob("*.tmp"))
    clips = ws.run_table(run, "clips")
    assert list(clips.index) == gen["clip_order"]
    assert clips["label"].tolist() == [gen["labels"][h] for h in gen["clip_order"]]
    np.testing.assert_allclose(clips["score"], [gen["scores"][h] for h in gen["clip_order"]])
    assert clips["decoded"].tolist() == [gen["decoded"][h] for h in gen["clip_order"]]
    ind = ws.run_table(gen_id, "indicators")
    assert list(ind.columns) == list(gen["table"])
    np.testing.assert_allclose(ind.to_numpy(), np.array([[np.nan if v is None else v for v in col] for col in gen["table"].values()]).T)
    b = ws.run_table(blind_id, "clips")
    np.testing.assert_allclose(b["score"], [blind["scores"][h] for h in blind["clip_order"]])
    assert list(ws.run_table(blind_id, "group_scores").columns) == list(blind["scores_by_group"])
    with pytest.raises(KeyError, match="no table 'nope'"):
        ws.run_table(gen_id, "nope")
    di_id, di = linked["di"]
    stored = ws.load_run(di_id)
    assert "p_scores" not in stored["result"] and "u_clips" not in stored["result"]
    t = ws.run_table(stored, "clips")
    assert list(t.index) == di["p_clips"] + di["u_clips"] and t["side"].tolist() == ["P"] * len(di["p_clips"]) + ["U"] * len(di["u_clips"])
    np.testing.assert_allclose(t["score"], di["p_scores"] + di["u_scores"])
    assert di_scores(ws, stored) == (di["p_scores"], di["u_scores"])
    # the same DI result as an older version stored it (everything in the JSON) reads the same
    old_id = ws.save_run("di", dataset="speech", target=TARGET, config=stored["config"], result=di, provenance=stored["provenance"])
    base = ["side", "score", "fold", "row"]  # what runs stored before the per-clip flags
    pd.testing.assert_frame_equal(ws.run_table(old_id, "clips")[base], t[base], check_dtype=False)
    # the suspects' conformal p, BH q and flag beside them (none for the non-members)
    assert t.loc[t["side"] == "P", "p"].between(0, 1).all() and t.loc[t["side"] == "U", "p"].isna().all()
    assert t["flagged"].tolist() == di["which"]["clips"]["flagged"] + [False] * len(di["u_clips"])
    ws.delete_run(old_id)


def test_a_table_that_cannot_be_written_leaves_no_run(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    bad = pd.DataFrame({"x": [object(), object()]}, index=pd.Index(["a", "b"], name="clip_hash"))
    with pytest.raises(ValueError):  # pyarrow's ArrowInvalid
        ws.save_run("mia", dataset="d", target="t", config={}, result={}, provenance={}, tables={"clips": bad})
    assert ws.runs().empty
    assert not [p for p in ws.runs_dir.rglob("*") if p.is_file()]


OLD_RUNS_TABLE = ("CREATE TABLE runs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, dataset TEXT, target TEXT, config TEXT, "
                  "result TEXT, provenance TEXT, created REAL)")


def test_runs_stored_by_an_older_version_are_read_from_their_fields(tmp_path: Path) -> None:
    """A database made before refs and tables (no such columns; per-clip data and the
    ``blind_run`` / ``mia_run`` links inside the result JSON) opens, reads, reports and
    feeds dataset inference."""
    root = tmp_path / "ws"
    ws = Workspace(root)
    ingest_path(ws, write_corpus(tmp_path / "iid", n=30), "synth")
    blind_id, blind = audit_blind(ws, "synth", BLIND)
    mia_id = save_mia(ws, "synth", shift=0.6)
    # rewrite both as the older version stored them, in the older table layout
    rows = []
    for run_id, extra in ((blind_id, blind), (mia_id, None)):
        r = ws.load_run(run_id)
        result = dict(r["result"], **({k: extra[k] for k in ("scores", "scores_by_group", "labels", "clip_order")} if extra else {}))
        if run_id == mia_id:
            result["blind_run"] = blind_id
        rows.append((run_id, r["kind"], r["dataset"], r["target"], json.dumps(r["config"]), json.dumps(result),
                     json.dumps(r["provenance"]), r["created"]))
    con = sqlite3.connect(ws.db_path)
    con.execute("DROP TABLE runs")
    con.execute(OLD_RUNS_TABLE)
    con.executemany("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?)", rows)
    con.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    con.commit()
    con.close()
    shutil.rmtree(ws.runs_dir)

    ws = Workspace(root)  # adds the new columns in place
    assert ws.query("SELECT value FROM meta WHERE key='schema_version'")["value"][0] == "2"
    old = ws.load_run(mia_id)
    assert old["refs"] == {"blind": blind_id} and old["tables"] == {}
    clips = ws.run_table(old, "clips")
    assert list(clips.index) == old["result"]["clip_order"] and clips["label"].sum() == 30
    assert list(ws.run_table(old, "indicators").columns) == list(old["result"]["table"])
    link = blind_link(ws, old, clips["score"])
    b = ws.run_table(blind_id, "clips")
    assert link.correlation == pytest.approx(blind_correlation(clips["score"].to_numpy(), b["score"].reindex(clips.index).to_numpy()))
    html = build_report(ws, "synth", TARGET)
    assert "could not be rendered" not in html and "correlation with the linked blind run" in html
    _, di = audit_di(ws, "synth", TARGET, SMALL_DI)
    ref = di_inputs(old["result"])
    direct = dataset_inference(ref.P, ref.U, directions=ref.directions, scorer="auto", alpha=0.01, seed=0, null_resamples=20)
    assert di["p_value"] == pytest.approx(direct.p_value, rel=1e-12)
    assert di["indicator_source"] == "stored MIA table"
    assert ws.load_run(ws.latest_run("di", "synth", TARGET)["id"])["refs"] == {"mia": mia_id, "blind": blind_id}


# -- dataset inference reads the evidence cache -----------------------------------------------


def _tamper(ws: Workspace, run_id: str) -> None:
    """Overwrite a run's stored indicator table with noise (the record is unchanged)."""
    run = ws.load_run(run_id)
    ind = ws.run_table(run, "indicators")
    noise = pd.DataFrame(np.random.default_rng(5).normal(size=ind.shape), index=ind.index, columns=ind.columns)
    buf = io.BytesIO()
    noise.to_parquet(buf)
    atomic_write(ws.root / run["tables"]["indicators"], buf.getvalue())


def _direct_p(ws: Workspace, run_id: str, table: pd.DataFrame) -> float:
    clips = ws.run_table(run_id, "clips")
    groups = clips["group"].tolist() if clips["group"].notna().all() else None
    inp = indicator_inputs(table.reindex(clips.index), clips["label"].to_numpy(), groups, "speaker")
    return dataset_inference(inp.P, inp.U, directions=inp.directions, scorer="auto", alpha=0.01, seed=0, null_resamples=20,
                             config=inp.scorer_config(), groups=inp.groups).p_value


def test_di_recomputes_indicators_from_the_evidence_cache_for_its_mode(linked: dict, tmp_path: Path) -> None:
    ws = _copy_ws(linked, tmp_path)
    (gen_id, _), (given_id, _) = linked["gen"], linked["given"]
    original = {rid: ws.run_table(rid, "indicators") for rid in (gen_id, given_id)}
    p_gen, p_given = _direct_p(ws, gen_id, original[gen_id]), _direct_p(ws, given_id, original[given_id])
    assert p_gen != pytest.approx(p_given, rel=1e-6)  # the two modes' indicators differ
    for rid in (gen_id, given_id):
        _tamper(ws, rid)
    _, di = audit_di(ws, "speech", TARGET, SMALL_DI)
    assert (di["mia_run"], di["indicator_source"]) == (gen_id, "evidence cache")
    assert di["p_value"] == pytest.approx(p_gen, rel=1e-9)
    _, di = audit_di(ws, "speech", TARGET, DIRunConfig(n_resamples=20, null_resamples=20, mia_mode="given"))
    assert (di["mia_run"], di["indicator_source"]) == (given_id, "evidence cache")
    assert di["p_value"] == pytest.approx(p_given, rel=1e-9)
    # evidence cleared: the stored (here tampered) table is read, and the run says so
    clear_cache(ws.cache_dir, "evidence")
    _, di = audit_di(ws, "speech", TARGET, DIRunConfig(n_resamples=20, null_resamples=20, mia_mode="given"))
    assert di["indicator_source"] == "stored MIA table"
    assert di["p_value"] == pytest.approx(_direct_p(ws, given_id, ws.run_table(given_id, "indicators")), rel=1e-9)
    assert any("no longer cached" in w for w in di["warnings"])


def test_report_over_runs_with_refs_and_tables(linked: dict) -> None:
    ws = linked["ws"]
    blind_id, gen_id = linked["blind"][0], linked["gen"][0]
    html = build_report(ws, "speech", TARGET)
    assert "could not be rendered" not in html
    assert f"<td>{blind_id}</td>" in html  # the blind run each section was compared with
    assert f"<td>{gen_id}</td>" in html  # the MIA run the DI section read
    assert "recomputed from the evidence cache" in html
    assert f"blind: {blind_id}" in html and f"mia: {gen_id}" in html  # provenance: runs used


def test_disentangle_run_links_the_blind_run_and_stores_decoded_texts(linked: dict, tmp_path: Path) -> None:
    from core.pipeline import DisentangleConfig
    from core.pipeline.disentangle import audit_disentangle

    ws = _copy_ws(linked, tmp_path)
    blind_id = linked["blind"][0]
    cfg = DisentangleConfig(conditions=("original", "silence"), mia=MIAConfig(**SMALL_MIA), max_realizations=1)
    run_id, out = audit_disentangle(ws, "speech", TARGET, cfg)
    run = ws.load_run(run_id)
    assert run["refs"] == {"blind": blind_id}
    assert "decoded" not in run["result"] and "clip_order" not in run["result"]
    table = ws.run_table(run, "decoded")
    assert list(table.index) == out["clip_order"] and list(table.columns) == ["original", "silence"]
    assert table["original"].to_dict() == out["decoded"]["original"]
    section = build_report(ws, "speech", TARGET).split("4 · Modality disentanglement")[1]
    assert f"<td>{blind_id}</td>" in section
