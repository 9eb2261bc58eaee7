"""The CLI: JSON output contract, exit codes, workspace option."""

from __future__ import annotations

import json

from core.cli import main


def test_ingest_json_contract(tmp_path, audio_folder, capsys):
    (audio_folder / "members" / "bad.wav").write_bytes(b"nope")
    rc = main(["ingest", str(audio_folder), "--name", "d", "--workspace", str(tmp_path / "ws"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["clips"] == 8 and out["files_read"] == 9 and out["duplicates"] == 0
    assert out["label_conflicts"] == []
    assert out["rejected"] == [{"path": "members/bad.wav", "reason": out["rejected"][0]["reason"]}]


def test_workspace_option_before_subcommand(tmp_path, audio_folder, capsys):
    assert main(["--workspace", str(tmp_path / "ws"), "--json", "ingest", str(audio_folder), "--name", "d"]) == 0
    capsys.readouterr()
    assert main(["--workspace", str(tmp_path / "ws"), "datasets", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in out["datasets"]] == ["d"]


def test_nothing_readable_is_an_error(tmp_path, capsys):
    (tmp_path / "c" / "members").mkdir(parents=True)
    (tmp_path / "c" / "members" / "a.wav").write_bytes(b"junk")
    rc = main(["ingest", str(tmp_path / "c"), "--name", "d", "--workspace", str(tmp_path / "ws"), "--json"])
    assert rc == 2
    assert "nothing could be ingested" in json.loads(capsys.readouterr().out)["error"]


def test_missing_path_is_an_error(tmp_path, capsys):
    rc = main(["ingest", str(tmp_path / "nope"), "--name", "d", "--workspace", str(tmp_path / "ws")])
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err
