"""Tiny datasets in the on-disk formats of each layout, written from scratch: short tones
in the real file formats, manifests in the real schemas, transcripts and speakers."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import soundfile as sf

from tests.conftest import tone


def _audio(path: Path, freq: float, *, fmt: str | None = None) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(freq, seconds=0.3), 16000, format=fmt)
    return path.read_bytes()


def _flac_bytes(freq: float) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(freq, seconds=0.3), 16000, format="FLAC")
    return buf.getvalue()


def librispeech(root: Path) -> Path:
    """LibriSpeech/{train-clean-100,dev-clean}/SPEAKER/CHAPTER/... with .trans.txt and SPEAKERS.TXT."""
    base = root / "LibriSpeech"
    for split, spk, ch, f0 in (("train-clean-100", "19", "198", 200), ("train-clean-100", "26", "495", 300), ("dev-clean", "84", "121", 500)):
        folder = base / split / spk / ch
        lines = []
        for n in range(2):
            utt = f"{spk}-{ch}-{n:04d}"
            _audio(folder / f"{utt}.flac", f0 + 20 * n)
            lines.append(f"{utt} WORDS OF SPEAKER {spk} NUMBER {n}")
        (folder / f"{spk}-{ch}.trans.txt").write_text("\n".join(lines) + "\n")
    (base / "SPEAKERS.TXT").write_text(";ID  |SEX| SUBSET |MINUTES| NAME\n19 | F | train-clean-100 | 25.19 | Kara Shallenberg\n")
    return base


def audiofolder(root: Path) -> Path:
    """train/metadata.jsonl + test/metadata.csv with file_name, transcription, speaker_id."""
    base = root / "af"
    rows = []
    for i in range(3):
        _audio(base / "train" / "audio" / f"t{i}.wav", 200 + 30 * i)
        rows.append(json.dumps({"file_name": f"audio/t{i}.wav", "transcription": f"train sentence {i}", "speaker_id": f"s{i % 2}"}))
    (base / "train" / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    csv = ["file_name,transcription,speaker_id,accent"]
    for i in range(2):
        _audio(base / "test" / f"u{i}.wav", 600 + 30 * i)
        csv.append(f"u{i}.wav,\"test, sentence {i}\",s{i + 5},scottish")
    (base / "test" / "metadata.csv").write_text("\n".join(csv) + "\n")
    return base


def commonvoice(root: Path) -> Path:
    """cv-corpus/en/{train,test,validated,clip_durations}.tsv + clips/*.mp3 (one clip no file lists)."""
    base = root / "cv-corpus-1.0" / "en"
    header = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment"
    rows: dict[str, list[str]] = {"train": [], "test": []}
    for i, (split, client, f0) in enumerate((("train", "aa11", 200), ("train", "bb22", 260), ("test", "cc33", 700))):
        name = f"common_voice_en_{i}.mp3"
        _audio(base / "clips" / name, f0, fmt="MP3")
        rows[split].append(f"{client}\t{name}\tx{i}\t\"Quoted\" sentence {i}\t\t2\t0\tthirties\t{'female' if i else 'male'}\t\t\ten\t")
    _audio(base / "clips" / "common_voice_en_99.mp3", 900, fmt="MP3")  # no .tsv lists it
    for split, lines in rows.items():
        (base / f"{split}.tsv").write_text("\n".join([header, *lines]) + "\n")
    (base / "validated.tsv").write_text("\n".join([header, *rows["train"], *rows["test"]]) + "\n")
    (base / "clip_durations.tsv").write_text("clip\tduration[ms]\ncommon_voice_en_0.mp3\t300\n")
    return base


def _jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def _recording(rid: str, source: str, kind: str = "file") -> dict:
    return {"id": rid, "sources": [{"type": kind, "channels": [0], "source": source}], "sampling_rate": 16000,
            "num_samples": 4800, "duration": 0.3, "channel_ids": [0]}


def _supervision(rid: str, text: str, speaker: str, *, start: float = 0.0, n: int = 0) -> dict:
    return {"id": f"{rid}-{n}", "recording_id": rid, "start": start, "duration": 0.15, "channel": 0,
            "text": text, "language": "English", "speaker": speaker, "gender": "F"}


def lhotse(root: Path) -> Path:
    """data/ (audio) + manifests/libri_{recordings,supervisions}_{train,dev}.jsonl.gz; one
    recording by absolute path (written on another machine), one with a command source."""
    base = root / "lh"
    recs: dict[str, list[dict]] = {"train": [], "dev": []}
    sups: dict[str, list[dict]] = {"train": [], "dev": []}
    for i, (split, spk, f0) in enumerate((("train", "1089", 200), ("train", "1188", 250), ("dev", "2300", 700))):
        _audio(base / "data" / f"r{i}.flac", f0)
        src = f"/mnt/corpora/lh/data/r{i}.flac" if i == 1 else f"../data/r{i}.flac"
        recs[split].append(_recording(f"r{i}", src))
        # two supervisions, written out of time order
        sups[split] += [_supervision(f"r{i}", "second half", spk, start=0.15, n=1), _supervision(f"r{i}", f"first half {i}", spk, n=0)]
    recs["dev"].append(_recording("evil", "rm -rf / ; sox in.wav -t wav -", kind="command"))
    for split in recs:
        _jsonl_gz(base / "manifests" / f"libri_recordings_{split}.jsonl.gz", recs[split])
        _jsonl_gz(base / "manifests" / f"libri_supervisions_{split}.jsonl.gz", sups[split])
    return base


def lhotse_cuts(root: Path) -> Path:
    """cuts.jsonl.gz: MonoCuts carrying their recording and supervisions."""
    base = root / "cuts"
    cuts = []
    for i, spk in enumerate(("a", "b")):
        _audio(base / "wav" / f"c{i}.wav", 300 + 200 * i)
        cuts.append({"id": f"cut{i}", "start": 0.0, "duration": 0.3, "channel": 0, "type": "MonoCut",
                     "recording": _recording(f"c{i}", f"wav/c{i}.wav"), "supervisions": [_supervision(f"c{i}", f"cut text {i}", spk)]})
    _jsonl_gz(base / "cuts.jsonl.gz", cuts)
    return base


def _hf_features() -> dict:
    return {"audio": {"sampling_rate": 16000, "_type": "Audio"}, "text": {"dtype": "string", "_type": "Value"},
            "speaker_id": {"dtype": "string", "_type": "Value"}}


def _hf_table(rows: list[dict]):
    import pyarrow as pa

    audio_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("audio", audio_t), ("text", pa.string()), ("speaker_id", pa.string())],
                       metadata={b"huggingface": json.dumps({"info": {"features": _hf_features()}}).encode()})
    return pa.Table.from_pylist(rows, schema=schema)


def hf_save_to_disk(root: Path) -> Path:
    """DatasetDict.save_to_disk: dataset_dict.json + {train,test}/data-00000-of-00001.arrow
    (Arrow IPC stream) + dataset_info.json + state.json; audio embedded as bytes."""
    import pyarrow as pa

    base = root / "hfdisk"
    (base).mkdir(parents=True)
    (base / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    for split, f0, n in (("train", 200, 3), ("test", 800, 2)):
        folder = base / split
        folder.mkdir()
        rows = [{"audio": {"bytes": _flac_bytes(f0 + 25 * i), "path": f"{split}_{i}.flac"}, "text": f"{split} text {i}", "speaker_id": f"spk{i % 2}"} for i in range(n)]
        table = _hf_table(rows)
        with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        (folder / "dataset_info.json").write_text(json.dumps({"citation": "", "description": "", "features": _hf_features(), "homepage": "", "license": ""}))
        (folder / "state.json").write_text(json.dumps({
            "_data_files": [{"filename": "data-00000-of-00001.arrow"}], "_fingerprint": f"{split}0123456789ab",
            "_format_columns": None, "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False, "_split": split}))
    return base


def hf_parquet(root: Path) -> Path:
    """data/{train,test}-00000-of-00001.parquet as the hub stores them; the test split has one
    row by path only (a file beside the tables) and one row with neither bytes nor a file."""
    import pyarrow.parquet as pq

    base = root / "hfpq"
    (base / "data").mkdir(parents=True)
    train = [{"audio": {"bytes": _flac_bytes(200 + 25 * i), "path": f"clip_{i}.flac"}, "text": f"parquet train {i}", "speaker_id": "p1"} for i in range(2)]
    _audio(base / "data" / "local.wav", 900)
    test = [{"audio": {"bytes": _flac_bytes(700), "path": None}, "text": "parquet test 0", "speaker_id": "p2"},
            {"audio": {"bytes": None, "path": "local.wav"}, "text": "by path", "speaker_id": "p3"},
            {"audio": {"bytes": None, "path": "https://example.org/x.wav"}, "text": "remote", "speaker_id": "p4"}]
    pq.write_table(_hf_table(train), base / "data" / "train-00000-of-00001.parquet")
    pq.write_table(_hf_table(test), base / "data" / "test-00000-of-00001.parquet")
    return base


FIXTURES = {
    "librispeech": librispeech, "audiofolder": audiofolder, "commonvoice": commonvoice, "lhotse": lhotse,
    "hf-datasets": hf_save_to_disk,
}
"""One fixture per registered non-fallback layout (the common test checks it is complete)."""
