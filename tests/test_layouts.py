"""Dataset layouts: each one ingested from a tiny generated fixture in its real on-disk
format, with transcripts, speakers, splits and labels checked; detection, labelling
rules, and paths that try to leave the dataset."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from core.data.ingest import IngestError, ingest_path, ingest_uploads
from core.data.layouts import LAYOUTS, LabelRules, Tree, choose_layout
from core.data.sources import folder_source
from tests import layout_fixtures as fx


def _items(ws, name: str) -> dict:
    return {r["path"]: r for r in ws.items(name).to_dict("records")}


def _reasons(rep) -> dict[str, str]:
    return {r["path"]: r["reason"] for r in rep.rejected}


def test_every_layout_has_a_fixture():
    assert sorted(fx.FIXTURES) == sorted(n for n, info in LAYOUTS.items() if not info.fallback)


@pytest.mark.parametrize("name", sorted(fx.FIXTURES))
def test_each_fixture_is_detected_as_its_own_layout_only(tmp_path, name):
    root = fx.FIXTURES[name](tmp_path)
    tree = Tree(list(folder_source(root)))
    assert choose_layout(tree).name == name
    assert [n for n, info in LAYOUTS.items() if not info.fallback and info.detect(tree)] == [name]


def test_plain_folders_stay_the_fallback(audio_folder):
    assert choose_layout(Tree(list(folder_source(audio_folder)))).name == "folders"


def test_librispeech_speaker_chapter_split_and_split_labels(workspace, tmp_path):
    root = fx.librispeech(tmp_path)
    rep = ingest_path(workspace, root, "ls", labels=LabelRules.parse(["train-clean-100"], ["dev-clean"]))
    assert rep.layout == "librispeech" and rep.labels == {"members": ["train-clean-100"], "nonmembers": ["dev-clean"]}
    assert (rep.members, rep.nonmembers, rep.rejected) == (4, 2, [])
    items = _items(workspace, "ls")
    row = items["train-clean-100/26/495/26-495-0001.flac"]
    assert (row["label"], row["speaker"], row["source"], row["split"]) == ("member", "26", "26-495", "train-clean-100")
    assert row["text"] == "WORDS OF SPEAKER 26 NUMBER 1"
    assert items["dev-clean/84/121/84-121-0000.flac"]["label"] == "nonmember"


def test_librispeech_without_rules_labels_nothing_and_says_why(workspace, tmp_path):
    with pytest.raises(IngestError, match="dev-clean/84/121/84-121-0000.flac: no label"):
        ingest_path(workspace, fx.librispeech(tmp_path), "ls")
    assert "ls" not in set(workspace.datasets()["name"])


def test_audiofolder_jsonl_and_csv_with_split_folders(workspace, tmp_path):
    rep = ingest_path(workspace, fx.audiofolder(tmp_path), "af")
    assert rep.layout == "audiofolder" and (rep.members, rep.nonmembers, rep.rejected) == (3, 2, [])
    items = _items(workspace, "af")
    t1 = items["train/audio/t1.wav"]
    assert (t1["label"], t1["text"], t1["speaker"], t1["split"]) == ("member", "train sentence 1", "s1", "train")
    u0 = items["test/u0.wav"]
    assert (u0["label"], u0["text"], u0["speaker"], u0["split"]) == ("nonmember", "test, sentence 0", "s5", "test")


def test_audiofolder_column_rules_override_the_split_folders(workspace, tmp_path):
    rep = ingest_path(workspace, fx.audiofolder(tmp_path), "af", labels=LabelRules.parse("speaker_id=s0", "accent=scot*"))
    assert (rep.members, rep.nonmembers) == (2, 2)
    assert _reasons(rep) == {"train/audio/t1.wav": "no label: matches neither --members speaker_id=s0 nor --nonmembers accent=scot*"}


def test_commonvoice_tsv_clips_speakers_and_splits(workspace, tmp_path):
    rep = ingest_path(workspace, fx.commonvoice(tmp_path), "cv", labels=LabelRules.parse("train", "test"))
    assert rep.layout == "commonvoice" and (rep.members, rep.nonmembers) == (2, 1)
    items = _items(workspace, "cv")
    c1 = items["clips/common_voice_en_1.mp3"]
    assert (c1["speaker"], c1["split"], c1["text"], c1["label"]) == ("bb22", "train", '"Quoted" sentence 1', "member")
    assert items["clips/common_voice_en_2.mp3"]["split"] == "test"  # from test.tsv, not validated.tsv
    assert _reasons(rep) == {"clips/common_voice_en_99.mp3": "audio file that no commonvoice manifest lists"}


def test_commonvoice_labels_by_any_column(workspace, tmp_path):
    rep = ingest_path(workspace, fx.commonvoice(tmp_path), "cv", labels=LabelRules.parse("gender=female", "gender=male"))
    assert (rep.members, rep.nonmembers) == (2, 1)


def test_lhotse_recordings_and_supervisions(workspace, tmp_path):
    outside = tmp_path / "data" / "r0.flac"  # what '../data/r0.flac' would reach from the dataset root
    fx._audio(outside, 999)
    root = fx.lhotse(tmp_path)
    rep = ingest_path(workspace, root, "lh", labels=LabelRules.parse("split=train", "split=dev"))
    assert rep.layout == "lhotse" and (rep.members, rep.nonmembers) == (2, 1)
    items = _items(workspace, "lh")
    r0, r1 = items["data/r0.flac"], items["data/r1.flac"]
    assert (r0["text"], r0["speaker"], r0["source"], r0["split"]) == ("first half 0 second half", "1089", "r0", "train")
    assert r1["speaker"] == "1188"  # its absolute path from another machine matched by its tail
    assert workspace.read_audio(r0["clip_hash"]) == (root / "data" / "r0.flac").read_bytes()
    evil = [r for p, r in _reasons(rep).items() if "evil" in p]
    assert evil == ["source type command is not read (only files inside the dataset)"]


def test_lhotse_cutset(workspace, tmp_path):
    rep = ingest_path(workspace, fx.lhotse_cuts(tmp_path), "cuts", labels=LabelRules.parse("speaker=a", "speaker=b"))
    assert rep.layout == "lhotse" and (rep.members, rep.nonmembers, rep.rejected) == (1, 1, [])
    c1 = _items(workspace, "cuts")["wav/c1.wav"]
    assert (c1["text"], c1["speaker"], c1["label"]) == ("cut text 1", "b", "nonmember")


def test_hf_save_to_disk_arrow_with_embedded_audio(workspace, tmp_path):
    rep = ingest_path(workspace, fx.hf_save_to_disk(tmp_path), "hf")
    assert rep.layout == "hf-datasets" and (rep.members, rep.nonmembers, rep.rejected) == (3, 2, [])
    items = _items(workspace, "hf")
    row = items["train/data-00000-of-00001.arrow#1/train_1.flac"]
    assert (row["label"], row["text"], row["speaker"], row["split"], row["format"]) == ("member", "train text 1", "spk1", "train", "FLAC")
    assert items["test/data-00000-of-00001.arrow#0/test_0.flac"]["label"] == "nonmember"


def test_hf_parquet_bytes_paths_and_remote_rows(workspace, tmp_path):
    rep = ingest_path(workspace, fx.hf_parquet(tmp_path), "pq", labels=LabelRules.parse("train", "split=test"))
    assert rep.layout == "hf-datasets" and (rep.members, rep.nonmembers) == (2, 2)
    items = _items(workspace, "pq")  # every file is under data/: the shared top folder is dropped
    assert items["train-00000-of-00001.parquet#0/clip_0.flac"]["text"] == "parquet train 0"
    assert items["test-00000-of-00001.parquet#0/audio"]["speaker"] == "p2"
    assert items["local.wav"]["text"] == "by path"
    assert "nothing is downloaded" in _reasons(rep)["test-00000-of-00001.parquet#2"]


def test_layouts_read_from_a_zip_upload(workspace, tmp_path):
    root = fx.librispeech(tmp_path)
    zpath = tmp_path / "ls.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                z.write(p, "LibriSpeech/" + p.relative_to(root).as_posix())
    rep = ingest_uploads(workspace, [("ls.zip", zpath.read_bytes())], "z", labels=LabelRules.parse("train-clean-*", "dev-clean"))
    assert rep.layout == "librispeech" and (rep.members, rep.nonmembers) == (4, 2)


def test_forced_layout_unknown_name_and_ambiguity(workspace, tmp_path):
    root = fx.audiofolder(tmp_path)
    with pytest.raises(IngestError, match="valid: .*audiofolder.*folders.*librispeech"):
        ingest_path(workspace, root, "x", layout="kaldi")
    with pytest.raises(IngestError, match="metadata.csv needs the columns path,label"):  # forced: read as plain folders
        ingest_path(workspace, root, "x", layout="folders")
    shutil.copytree(fx.commonvoice(tmp_path / "cv"), root / "cv")
    with pytest.raises(IngestError, match="several layouts .*audiofolder, commonvoice.*--layout"):
        ingest_path(workspace, root, "y")


def test_an_item_both_rules_match_is_listed_not_guessed(workspace, tmp_path):
    rep = ingest_path(workspace, fx.librispeech(tmp_path), "ls", labels=LabelRules.parse("train-clean-100,speaker=84", "dev-clean"))
    reasons = _reasons(rep)
    assert reasons["dev-clean/84/121/84-121-0000.flac"] == "matches both the members and the non-members rule"
    assert (rep.members, rep.nonmembers) == (4, 0)


@pytest.mark.parametrize("ref", ["../../outside.wav", "/etc/outside.wav"])
def test_manifest_paths_never_leave_the_dataset(workspace, tmp_path, ref):
    fx._audio(tmp_path / "outside.wav", 440)
    fx._audio(tmp_path / "etc" / "outside.wav", 440)
    root = tmp_path / "ds" / "inner"
    fx._audio(root / "train" / "ok.wav", 300)
    (root / "train" / "metadata.csv").write_text(f"file_name,text\nok.wav,fine\n{ref},escape\n")
    rep = ingest_path(workspace, root, "d")
    assert list(workspace.items("d")["path"]) == ["train/ok.wav"]
    assert any("no such audio file" in w and "outside.wav" in w for w in rep.warnings)


def test_hostile_manifest_values_end_with_reasons_not_tracebacks(workspace, tmp_path):
    root = fx.lhotse_cuts(tmp_path)
    fx._jsonl_gz(root / "cuts.jsonl.gz", [
        {"id": "x", "type": "MonoCut", "recording": {"id": "r", "sources": "wav/c0.wav"}, "supervisions": 7},
        {"id": "y", "type": "MixedCut", "tracks": []},
        {"id": "z", "recording": fx._recording("c1", "wav/c1.wav"), "supervisions": [{"start": "soon", "text": 5, "custom": [1]}]},
        "not an object",
    ])
    rep = ingest_path(workspace, root, "h", labels=LabelRules.parse("wav/*"))
    assert rep.members == 1 and _items(workspace, "h")["wav/c1.wav"]["text"] == "5"
    reasons = _reasons(rep)
    assert "0 source files" in reasons["cuts.jsonl.gz line 1: recording r"]
    assert "mixed cuts are not read" in reasons["cuts.jsonl.gz line 2: cut y"]
    assert reasons["wav/c0.wav"] == "audio file that no lhotse manifest lists"
    assert any("line 4: not a JSON object" in w for w in rep.warnings)


def test_preview_lists_layout_splits_and_rule_columns(tmp_path):
    from core.data.ingest import path_files, preview_layout

    pv = preview_layout(path_files(fx.commonvoice(tmp_path)))
    assert (pv.layout, pv.items, pv.splits, pv.layout_labels) == ("commonvoice", 3, {"test": 1, "train": 2}, {})
    assert pv.columns["gender"] == ["male", "female"] and pv.columns["client_id"] == ["aa11", "bb22", "cc33"]
    assert "sentence" not in pv.columns  # text is not a labelling column
    with pytest.raises(IngestError, match="valid:"):
        preview_layout(path_files(tmp_path), layout="nope")


def test_dataset_page_previews_a_layout_and_labels_by_split(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from core.runtime.store import Workspace

    ws = Workspace(tmp_path / "ws")
    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(ws.root))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "0")
    monkeypatch.setenv("OVERHEARD_ROOTS", str(tmp_path))
    root = fx.librispeech(tmp_path)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "1_Dataset.py"), default_timeout=60)
    at.run()
    at.text_input(key="upload_name").set_value("ls").run()
    at.text_input(key="server_path").set_value(str(root)).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("Read as **librispeech**: 6 audio item(s)" in c.value for c in at.caption), [c.value for c in at.caption]
    assert at.multiselect(key="upload_members_splits").options == ["dev-clean", "train-clean-100"]
    at.multiselect(key="upload_members_splits").set_value(["train-clean-100"])
    at.text_input(key="upload_nonmembers").set_value("speaker=84")
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    from tests.test_page_ingest_job import wait_job

    assert wait_job(ws, "ingest")["status"] == "done"  # ingest runs in a background job
    items = ws.items("ls")
    assert sorted(items.groupby("label").size().items()) == [("member", 4), ("nonmember", 2)]
    assert set(items.loc[items["label"] == "nonmember", "split"]) == {"dev-clean"}


def test_a_single_split_folder_is_kept_when_the_top_folder_is_dropped(workspace, tmp_path):
    root = fx.librispeech(tmp_path)
    shutil.rmtree(root / "train-clean-100")
    zpath = tmp_path / "dev.zip"
    with zipfile.ZipFile(zpath, "w") as z:  # LibriSpeech/dev-clean/...: one top folder, then the split
        for p in sorted((root / "dev-clean").rglob("*")):
            if p.is_file():
                z.write(p, "LibriSpeech/" + p.relative_to(root).as_posix())
    rep = ingest_path(workspace, zpath, "dev", labels=LabelRules.parse("dev-clean"))
    assert rep.members == 2 and set(workspace.items("dev")["split"]) == {"dev-clean"}


def test_tree_resolves_foreign_paths_by_a_unique_tail_only():
    from core.data.sources import SourceFile

    tree = Tree([SourceFile(p, lambda: b"", 0) for p in ("a/x/1.wav", "b/x/1.wav", "a/y/2.wav", "top.wav")])
    assert tree.resolve("/home/someone/corpus/a/x/1.wav") == "a/x/1.wav"
    assert tree.resolve("/elsewhere/x/1.wav") is None  # two files end in x/1.wav: not guessed
    assert tree.resolve("../../y/2.wav") == "a/y/2.wav"
    assert tree.resolve("2.wav", base="a/y") == "a/y/2.wav"
    assert tree.resolve("/etc/passwd") is None and tree.resolve("..") is None
