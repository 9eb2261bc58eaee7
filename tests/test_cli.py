"""The CLI: JSON output contract, exit codes, workspace option."""

from __future__ import annotations

import json

import pytest

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


def test_target_options_parse_and_refuse_remote_code_smuggling():
    import argparse

    import pytest

    from core.cli import CLIError, _target_options

    ns = argparse.Namespace(target_option=["prompt=Describe the audio.", "batch_size=16", "fast=true"])
    assert _target_options(ns) == (("batch_size", 16), ("fast", True), ("prompt", "Describe the audio."))
    with pytest.raises(CLIError, match="--trust-remote-code"):
        _target_options(argparse.Namespace(target_option=["trust_remote_code=true"]))
    with pytest.raises(CLIError, match="KEY=VALUE"):
        _target_options(argparse.Namespace(target_option=["novalue"]))


def test_mia_cli_passes_loader_options_and_records_remote_code(tmp_path, capsys):
    from core.data.ingest import ingest_path
    from core.runtime.store import Workspace
    from tests.conftest import demo_subset

    ws = Workspace(tmp_path / "ws")
    ingest_path(ws, demo_subset(tmp_path / "demo", 12), "d")  # what is recorded, not the AUC: a few clips do
    rc = main(["mia", "--dataset", "d", "--target", "zoo:lalm-small", "--target-option", "batch_size=4",
               "--trust-remote-code", "--n-boot", "50", "--n-perm", "0", "--workspace", str(ws.root), "--json"])
    assert rc == 0
    run = ws.latest_run("mia", "d", "zoo:lalm-small")
    assert run["config"]["target_options"] == {"batch_size": 4} and run["config"]["trust_remote_code"] is True
    from core.viz.report import build_report

    assert "ON (code from the checkpoint folder was executed)" in build_report(ws, "d")


@pytest.mark.parametrize("argv", [
    ["mia", "--dataset", "nope", "--target", "zoo:lalm-small"],
    ["mia", "--dataset", "d", "--target", "zoo:lalm-smal"],
    ["di", "--dataset", "d", "--target", "/no/such/checkpoint"],
    ["mia", "--dataset", "d", "--target", "acme/not-in-any-cache"],
    ["blind", "--dataset", "nope"],
])
def test_misspelled_names_are_refused_before_heavy_imports(tmp_path, audio_folder, argv) -> None:
    """An unknown dataset or target answers in one line without importing torch or
    transformers (tens of seconds on a busy machine)."""
    import subprocess
    import sys

    ws = tmp_path / "ws"
    assert main(["ingest", str(audio_folder), "--name", "d", "--workspace", str(ws)]) == 0
    code = ("import sys, json; from core.cli import main; rc = main(json.loads(sys.argv[1])); "
            "print(json.dumps([rc, 'torch' in sys.modules, 'transformers' in sys.modules, 'sklearn' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps([*argv, "--workspace", str(ws)])], capture_output=True, text=True, timeout=120)
    rc, torch_loaded, hf_loaded, sk_loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert rc == 2 and not torch_loaded and not hf_loaded and not sk_loaded, out.stderr
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and ("datasets: d" in err[0] or "zoo:lalm-small" in err[0] or "neither" in err[0]
                                                              or "not in the Hugging Face cache" in err[0])


def test_demo_build_corpus_command_runs(tmp_path, monkeypatch, capsys):
    """The command's own wiring (imports, output path, JSON); the corpus builder itself is
    tested in tests/test_demo_corpus.py and takes minutes, so it is replaced here."""
    import core.recipes.corpus.corpus as corpus

    calls = []
    monkeypatch.setattr(corpus, "build_corpus", lambda out, *, seed, progress: calls.append((out, seed)) or {"clips": 0})
    assert main(["demo", "build-corpus", "--out", str(tmp_path / "c"), "--seed", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert calls == [(tmp_path / "c", 3)] and out["out"] == str(tmp_path / "c") and out["clips"] == 0


def test_zoo_targets_without_options_refuse_them_in_one_line(tmp_path, audio_folder, capsys):
    ws = str(tmp_path / "ws")
    assert main(["ingest", str(audio_folder), "--name", "d", "--workspace", ws]) == 0
    capsys.readouterr()
    for target in ("zoo:ar-small", "zoo:diffusion-small"):
        assert main(["mia", "--dataset", "d", "--target", target, "--target-option", "batch_size=4", "--workspace", ws]) == 2
        err = capsys.readouterr().err
        assert "takes no --target-option (got batch_size)" in err and "Traceback" not in err and "internal error" not in err


def test_ingest_layout_and_label_rules(tmp_path, capsys):
    from tests import layout_fixtures as fx

    root = fx.commonvoice(tmp_path)
    ws = str(tmp_path / "ws")
    rc = main(["ingest", str(root), "--name", "cv", "--workspace", ws, "--json", "--members", "train", "--nonmembers", "gender=male,split=test"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["layout"] == "commonvoice" and (out["members"], out["nonmembers"]) == (1, 1)
    both = {"path": "clips/common_voice_en_0.mp3", "reason": "matches both the members and the non-members rule"}  # train and male
    assert both in out["rejected"]
    assert out["labels"] == {"members": ["train"], "nonmembers": ["gender=male", "split=test"]}
    rc = main(["ingest", str(root), "--name", "cv2", "--workspace", ws, "--json", "--layout", "kaldi"])
    assert rc == 2 and "valid: audiofolder, commonvoice, folders, hf-datasets, lhotse, librispeech" in json.loads(capsys.readouterr().out)["error"]
