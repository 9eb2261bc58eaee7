"""The target picker: built-in targets, targets with runs in the workspace (a CLI run on a
local checkpoint folder opens on the analysis pages), and a typed folder or hub id checked
at once against the allowed folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.cli import main
from core.runtime import jobs
from core.targets.zoo.registry import assets_dir
from tests.conftest import demo_subset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """A workspace with one MIA run made by the CLI on a checkpoint folder copied out of the zoo."""
    base = tmp_path_factory.mktemp("picker")
    ckpt = base / "checkpoints" / "my-whisper"
    shutil.copytree(assets_dir() / "zoo" / "lalm-small", ckpt, ignore=shutil.ignore_patterns("card.json"))
    data = base / "data"
    data.mkdir()
    demo_subset(data, 8)
    ws = base / "ws"
    assert main(["--workspace", str(ws), "ingest", str(data), "--name", "d"]) == 0
    assert main(["--workspace", str(ws), "mia", "--dataset", "d", "--target", str(ckpt), "--n-boot", "50", "--n-perm", "10"]) == 0
    from core.runtime.store import Workspace

    return Workspace(ws), str(ckpt), base


@pytest.fixture
def env(cli_run, monkeypatch):
    ws, ckpt, base = cli_run
    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(ws.root))
    monkeypatch.setenv("OVERHEARD_ROOTS", str(base))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "0")
    from core.ui.common import _settings

    _settings.clear()  # read once per process, keyed by the workspace: these tests change the roots
    yield cli_run
    _settings.clear()


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / name), default_timeout=120)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


@pytest.mark.parametrize("name", ["2_MIA_Audit.py", "4_Dataset_Inference.py", "5_Disentanglement.py"])
def test_a_cli_run_on_a_local_folder_is_offered(env, name):
    _, ckpt, _ = env
    at = page(name)
    options = at.selectbox(key="target").options
    assert f"my-whisper · has runs here · {ckpt}" in options, options
    assert options[0].startswith("zoo:lalm-small")  # the built-in target trained on the demo speech still leads


def test_the_cli_run_opens_on_the_mia_page(env):
    ws, ckpt, _ = env
    run = ws.latest_run("mia", "d", ckpt)
    at = page("2_MIA_Audit.py")
    at.selectbox(key="target").set_value(ckpt).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any(run["id"] in c.value for c in at.caption)
    assert {m.label: m.value for m in at.metric}["Aggregate AUC"] == f"{run['result']['auc']:.3f}"
    assert at.query_params["target"] in (ckpt, [ckpt])
    assert at.button(key="start-mia").disabled is False  # the folder is under the allowed roots


def test_a_typed_folder_is_checked_and_chosen(env):
    ws, ckpt, _ = env
    at = page("2_MIA_Audit.py")
    at.text_input(key="target-typed").input(ckpt + "/").run()
    assert not at.exception and not at.error
    assert at.selectbox(key="target").value == ckpt  # the resolved folder, which has the stored run
    assert any(ws.latest_run("mia", "d", ckpt)["id"] in c.value for c in at.caption)


def test_a_typed_api_url_is_audited_from_its_outputs_with_a_request_budget(env):
    ws, _, _ = env
    url = "http://127.0.0.1:9/v1"  # nothing is sent until a run starts
    at = page("2_MIA_Audit.py")
    at.text_input(key="target-typed").input(url).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="target").value == url
    assert at.selectbox(key="mia-access").options == ["outputs only"]  # an API has no white-box level
    at.number_input(key="max-requests").set_value(500).run()
    before = len(jobs.jobs(ws, limit=1000))
    at.button(key="start-mia").click().run()
    assert not at.exception
    new = jobs.jobs(ws, limit=1000)
    assert len(new) == before + 1
    import json

    params = json.loads(new.iloc[0]["params"])
    assert params["target"] == url and params["config"]["access"] == "outputs" and params["config"]["max_requests"] == 500
    jobs.cancel(ws, new.iloc[0]["id"])


def test_a_shared_link_to_a_folder_target_opens_it(env):
    _, ckpt, _ = env
    at = AppTest.from_file(str(ROOT / "pages" / "2_MIA_Audit.py"), default_timeout=120)
    at.query_params["dataset"] = "d"
    at.query_params["target"] = ckpt
    at.run()
    assert not at.exception
    assert at.selectbox(key="target").value == ckpt


@pytest.mark.parametrize("typed, reason", [
    ("/no/such/checkpoint", "neither zoo:<name>, an existing checkpoint folder, a cached hub id"),
    ("http://user:secret@127.0.0.1:9/v1", "holds credentials"),
    ("zoo:nope", "unknown zoo target"),
    (str(assets_dir() / "zoo" / "lalm-small"), "outside the allowed folders"),
])
def test_an_invalid_target_shows_why_and_starts_nothing(env, typed, reason):
    ws, _, _ = env
    before = len(jobs.jobs(ws, limit=1000))
    at = page("2_MIA_Audit.py")
    at.text_input(key="target-typed").input(typed).run()
    assert not at.exception
    assert [e.value for e in at.error] and reason in at.error[0].value
    assert not [b for b in at.button if b.key == "start-mia"]  # nothing to press
    assert len(jobs.jobs(ws, limit=1000)) == before
    at.text_input(key="target-typed").input("").run()  # clearing the entry brings the picker back
    assert not at.error and at.button(key="start-mia")


def test_a_stored_run_outside_the_roots_opens_but_cannot_run(env, monkeypatch):
    ws, ckpt, base = env
    (base / "elsewhere").mkdir(exist_ok=True)
    monkeypatch.setenv("OVERHEARD_ROOTS", str(base / "elsewhere"))
    from core.ui.common import _settings

    _settings.clear()
    at = page("2_MIA_Audit.py")
    at.selectbox(key="target").set_value(ckpt).run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Aggregate AUC"] == f"{ws.latest_run('mia', 'd', ckpt)['result']['auc']:.3f}"
    assert at.button(key="start-mia").disabled
    assert any("Cannot run this target from the dashboard" in c.value and "outside the allowed folders" in c.value for c in at.caption)


def test_a_multilingual_folder_offers_its_languages_and_runs_in_the_chosen_one(env):
    import json

    from tests.multilingual_fixture import tiny_multilingual_whisper

    ws, _, base = env
    folder = str(tiny_multilingual_whisper(base / "checkpoints" / "multilingual"))
    at = page("2_MIA_Audit.py")
    assert not [s for s in at.selectbox if s.key == "language"]  # the zoo model has no languages
    at.text_input(key="target-typed").input(folder).run()
    assert not at.exception and not at.error
    lang = at.selectbox(key="language")
    assert lang.options == ["auto (the dataset's, else detected)", "German (de)", "English (en)", "French (fr)"]
    lang.set_value("fr").run()
    at.button(key="start-mia").click().run()
    assert not at.exception
    new = jobs.jobs(ws, limit=1)
    params = json.loads(new.iloc[0]["params"])
    assert params["target"] == folder and params["config"]["target_options"] == {"language": "fr"}
    jobs.cancel(ws, new.iloc[0]["id"])


def test_a_run_without_a_target_adds_no_nameless_option(env):
    ws, _, _ = env
    ws.save_run("blind", dataset="d", target="", config={}, result={}, provenance={})  # a model-free run stored with ""
    at = page("2_MIA_Audit.py")
    options = at.selectbox(key="target").options
    assert all(o.strip() and not o.strip().startswith("·") for o in options), options
