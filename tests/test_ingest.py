"""Ingestion: every layout, every kind of bad file, duplicates and label conflicts."""

from __future__ import annotations

import io
import shutil
import zipfile

import numpy as np
import pytest
import soundfile as sf

from core.data.ingest import IngestError, ingest_path, ingest_uploads
from core.runtime.settings import Limits
from tests.conftest import tone


def _reasons(rep) -> dict[str, str]:
    return {r["path"]: r["reason"] for r in rep.rejected}


def test_members_nonmembers_layout_with_sidecars(workspace, audio_folder):
    rep = ingest_path(workspace, audio_folder, "d")
    assert (rep.clips, rep.members, rep.nonmembers, rep.files_read) == (8, 4, 4, 8)
    assert rep.rejected == [] and rep.label_conflicts == []
    clips = workspace.analysis_clips("d")
    row = clips[clips["path"] == "members/m2.wav"].iloc[0]
    assert row["text"] == "clip members number 2"
    assert row["y"] == 1 and row["sample_rate"] == 16000 and row["subtype"] == "PCM_16"
    assert row["duration"] == pytest.approx(0.5)
    # content-addressed: the stored bytes hash to the key
    import hashlib

    assert hashlib.sha256(workspace.read_audio(row["clip_hash"])).hexdigest() == row["clip_hash"]


@pytest.mark.parametrize("pos,neg", [("train", "test"), ("member", "nonmember"), ("seen", "unseen"), ("suspect", "nonmembers")])
def test_alternative_folder_names(workspace, tmp_path, pos, neg):
    for lab, f in ((pos, 200), (neg, 900)):
        (tmp_path / "c" / lab).mkdir(parents=True)
        sf.write(tmp_path / "c" / lab / "a.wav", tone(f), 16000)
    rep = ingest_path(workspace, tmp_path / "c", "d")
    assert (rep.members, rep.nonmembers) == (1, 1)


def test_metadata_csv_layout(workspace, tmp_path):
    root = tmp_path / "c"
    (root / "audio").mkdir(parents=True)
    for i in range(3):
        sf.write(root / "audio" / f"x{i}.flac", tone(200 + 100 * i), 22050)
    (root / "metadata.csv").write_text(
        "path,label,text,speaker,source,split\n"
        "audio/x0.flac,member,hello there,spk1,radio,train\n"
        "audio/x1.flac,nonmember,general kenobi,spk2,tv,test\n"
        "audio/x2.flac,1,third one,spk1,radio,train\n"
        "audio/missing.flac,member,,,,\n"
    )
    rep = ingest_path(workspace, root, "d")
    assert (rep.members, rep.nonmembers) == (2, 1)
    assert any("missing.flac" in w for w in rep.warnings)
    clips = workspace.analysis_clips("d").set_index("path")
    assert clips.loc["audio/x1.flac", "speaker"] == "spk2"
    assert clips.loc["audio/x0.flac", "text"] == "hello there"
    assert clips.loc["audio/x0.flac", "sample_rate"] == 22050


def test_bad_files_rejected_with_reasons_good_kept(workspace, audio_folder):
    m = audio_folder / "members"
    (m / "zero.wav").write_bytes(b"")
    (m / "text.wav").write_text("this is not audio at all, just text " * 20)
    good = (m / "m0.wav").read_bytes()
    (m / "trunc.wav").write_bytes(good[:30])
    (m / "random.flac").write_bytes(np.random.default_rng(0).bytes(5000))
    x = np.zeros(1600, dtype=np.float32)
    x[10] = np.nan
    sf.write(m / "nan.wav", x, 16000, subtype="FLOAT")
    (m / "song.m4a").write_bytes(b"\x00\x00\x00 ftypM4A ")
    (m / "notes.pdf").write_bytes(b"%PDF-1.4")
    rep = ingest_path(workspace, audio_folder, "d")
    reasons = _reasons(rep)
    assert rep.clips == 8  # every good file kept
    assert "empty" in reasons["members/zero.wav"]
    assert "unreadable" in reasons["members/text.wav"]
    assert "members/trunc.wav" in reasons
    assert "unreadable" in reasons["members/random.flac"]
    assert "NaN" in reasons["members/nan.wav"]
    assert "ffmpeg" in reasons["members/song.m4a"]
    assert "not an audio file" in reasons["members/notes.pdf"]
    assert workspace.rejected("d").shape[0] == 7


def test_limits_duration_and_size(workspace, tmp_path):
    root = tmp_path / "c"
    for lab in ("members", "nonmembers"):
        (root / lab).mkdir(parents=True)
        sf.write(root / lab / "short.wav", tone(300), 16000)
    sf.write(root / "members" / "long.wav", tone(300, seconds=3.0), 16000)
    rep = ingest_path(workspace, root, "d", limits=Limits(max_duration_s=2.0))
    assert "too long" in _reasons(rep)["members/long.wav"]


def test_unlabelled_file_is_listed(workspace, audio_folder):
    (audio_folder / "other").mkdir()
    sf.write(audio_folder / "other" / "q.wav", tone(440), 16000)
    rep = ingest_path(workspace, audio_folder, "d")
    assert "no label" in _reasons(rep)["other/q.wav"]


def test_duplicates_and_label_conflicts(workspace, audio_folder):
    shutil.copy(audio_folder / "members" / "m0.wav", audio_folder / "members" / "m0-copy.wav")
    shutil.copy(audio_folder / "members" / "m1.wav", audio_folder / "nonmembers" / "m1-as-non.wav")
    rep = ingest_path(workspace, audio_folder, "d")
    assert rep.duplicates == 1
    assert rep.label_conflicts == [sorted(["members/m1.wav", "nonmembers/m1-as-non.wav"])] or rep.label_conflicts == [["members/m1.wav", "nonmembers/m1-as-non.wav"]]
    clips = workspace.analysis_clips("d")
    assert len(clips) == 7  # 8 unique contents minus the conflicting one
    assert "members/m1.wav" not in set(clips["path"])
    assert any("both labels" in w for w in rep.warnings)
    # stored once
    assert sum(1 for _ in workspace.audio_dir.rglob("*") if _.is_file()) == 8


def test_nothing_readable_raises_and_leaves_no_dataset(workspace, tmp_path):
    (tmp_path / "c" / "members").mkdir(parents=True)
    (tmp_path / "c" / "members" / "a.wav").write_bytes(b"junk")
    with pytest.raises(IngestError, match="nothing could be ingested"):
        ingest_path(workspace, tmp_path / "c", "d")
    assert "d" not in workspace.dataset_names()


def test_existing_dataset_needs_replace(workspace, audio_folder):
    ingest_path(workspace, audio_folder, "d")
    with pytest.raises(IngestError, match="already exists"):
        ingest_path(workspace, audio_folder, "d")
    rep = ingest_path(workspace, audio_folder, "d", replace=True)
    assert rep.clips == 8


def _zip(entries: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            z.writestr(info, "/etc/passwd")
    return buf.getvalue()


def test_zip_upload_with_slip_and_symlink_entries(workspace, audio_folder):
    entries = {f"corpus/{p.relative_to(audio_folder).as_posix()}": p.read_bytes() for p in audio_folder.rglob("*") if p.is_file()}
    entries["../evil.wav"] = (audio_folder / "members" / "m0.wav").read_bytes()
    data = _zip(entries, symlink="corpus/members/link.wav")
    rep = ingest_uploads(workspace, [("corpus.zip", data)], "z")
    assert rep.clips == 8
    reasons = _reasons(rep)
    assert "escapes" in reasons["../evil.wav"]
    assert "symbolic link" in reasons["members/link.wav"] or "symbolic link" in reasons.get("corpus/members/link.wav", "")
    assert not (workspace.root.parent / "evil.wav").exists()


def test_zip_bomb_refused(workspace, tmp_path):
    bomb = _zip({"members/a.wav": b"\0" * 20_000_000})
    path = tmp_path / "bomb.zip"
    path.write_bytes(bomb)
    with pytest.raises(IngestError, match="compression ratio"):
        ingest_path(workspace, path, "b")


def test_browser_folder_upload(workspace, audio_folder):
    uploads = [(f"corpus/{p.relative_to(audio_folder).as_posix()}", p.read_bytes()) for p in audio_folder.rglob("*") if p.is_file()]
    rep = ingest_uploads(workspace, uploads, "u")
    assert (rep.members, rep.nonmembers) == (4, 4)


def test_formats_recorded_before_resampling(workspace, tmp_path):
    root = tmp_path / "c"
    (root / "members").mkdir(parents=True)
    (root / "nonmembers").mkdir(parents=True)
    stereo = np.stack([tone(300, sr=44100), tone(600, sr=44100)], 1)
    sf.write(root / "members" / "s24.wav", stereo, 44100, subtype="PCM_24")
    sf.write(root / "nonmembers" / "o.ogg", tone(300, sr=48000), 48000, format="OGG", subtype="VORBIS")
    sf.write(root / "nonmembers" / "f.wav", tone(300, sr=8000), 8000, subtype="FLOAT")
    ingest_path(workspace, root, "d")
    c = workspace.analysis_clips("d").set_index("path")
    assert (c.loc["members/s24.wav", "channels"], c.loc["members/s24.wav", "bit_depth"], c.loc["members/s24.wav", "sample_rate"]) == (2, 24, 44100)
    assert c.loc["nonmembers/o.ogg", "subtype"] == "VORBIS" and c.loc["nonmembers/o.ogg", "bit_depth"] == 0
    assert c.loc["nonmembers/f.wav", "subtype"] == "FLOAT"
    from core.data.audio import load_analysis

    mono = load_analysis(workspace.read_audio(c.loc["members/s24.wav", "clip_hash"]), 16000)
    assert mono.ndim == 1 and abs(mono.shape[0] - 8000) <= 2
