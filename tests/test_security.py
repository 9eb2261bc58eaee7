"""What the tool refuses to trust: archives, server paths, model files, network exposure,
and numbers reported on too few clips."""

from __future__ import annotations

import ast
import io
import json
import os
import re
import stat
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from streamlit.testing.v1 import AppTest

from core.data.ingest import IngestError, ingest_path, ingest_uploads
from core.data.paths import resolve_under_roots
from core.runtime.settings import Limits
from core.runtime.store import Workspace
from tests.conftest import tone

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"


def _wav(freq: float, seconds: float = 0.3) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(freq, seconds), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def _reasons(rep) -> dict[str, str]:
    return {r["path"]: r["reason"] for r in rep.rejected}


# -- archives -------------------------------------------------------------------------------
HOSTILE_NAMES = ["../x.wav", "../../etc/cron.d/x.wav", "/etc/x.wav", "C:\\x.wav", "C:x.wav", "members/..\\..\\y.wav", "\\\\server\\share\\z.wav"]


def _hostile_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("members/good.wav", _wav(300))
        zf.writestr("nonmembers/good.wav", _wav(700))
        for name in HOSTILE_NAMES:
            zf.writestr(zipfile.ZipInfo(name), _wav(900))
        link = zipfile.ZipInfo("members/link.wav")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        inner = io.BytesIO()
        with zipfile.ZipFile(inner, "w") as z2:
            z2.writestr("members/inner.wav", _wav(400))
        zf.writestr("members/nested.zip", inner.getvalue())
    return buf.getvalue()


def _check_hostile_report(ws: Workspace, rep, name: str) -> None:
    assert rep.members == 1 and rep.nonmembers == 1, "good entries beside the hostile ones are kept"
    assert sorted(ws.items(name)["path"]) == ["members/good.wav", "nonmembers/good.wav"]
    reasons = _reasons(rep)
    for hostile in HOSTILE_NAMES:
        # zipfile itself rewrites some names (drive letters, backslashes) on Unix; whatever
        # it yields must be refused or land inside the dataset, never outside it.
        assert hostile in reasons or any("x.wav" in p or "y.wav" in p or "z.wav" in p for p in reasons), (hostile, reasons)
    assert "symbolic link" in reasons["members/link.wav"]
    assert reasons["members/nested.zip"] == "not an audio file"
    assert all(r.strip() and "\n" not in r for r in reasons.values())
    assert len(reasons) == len(HOSTILE_NAMES) + 2


def test_zip_slip_symlinks_and_nested_zip_refused_per_entry(tmp_path):
    outside_before = _files_under(tmp_path)
    ws = Workspace(tmp_path / "ws")
    data = _hostile_zip()
    rep = ingest_uploads(ws, [("bundle.zip", data)], "up")
    _check_hostile_report(ws, rep, "up")
    archive = tmp_path / "bundle.zip"
    archive.write_bytes(data)
    rep = ingest_path(ws, archive, "disk")
    _check_hostile_report(ws, rep, "disk")
    # nothing written outside the workspace; inside it, only the two good clips' bytes
    new = {p for p in _files_under(tmp_path) - outside_before if ws.root not in p.parents and p != ws.root}
    assert new == {archive}
    stored = {p.name for p in ws.audio_dir.rglob("*") if p.is_file()}
    assert stored == set(ws.query("SELECT DISTINCT clip_hash FROM items")["clip_hash"])
    assert len(stored) == 2
    assert not (tmp_path / "x.wav").exists() and not Path("/etc/x.wav").exists()


def test_hostile_names_in_browser_uploads(workspace):
    uploads = [(n, _wav(900)) for n in ("../x.wav", "/etc/x.wav", "members/../../y.wav")] + [("members/a.wav", _wav(300)), ("nonmembers/b.wav", _wav(700))]
    rep = ingest_uploads(workspace, uploads, "d")
    reasons = _reasons(rep)
    assert set(reasons) == {"../x.wav", "/etc/x.wav", "members/../../y.wav"}
    assert all("unsafe file name" in r for r in reasons.values())
    assert (rep.members, rep.nonmembers) == (1, 1)


def _bomb(n_bytes: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("members/bomb.wav", b"\0" * n_bytes)
    return buf.getvalue()


def test_zip_bomb_refused_before_decompression_and_good_uploads_kept(workspace):
    bomb = _bomb(64 * 1024**2)
    ratio = 64 * 1024**2 / (len(bomb) - 200)  # rough: the archive minus its headers
    assert ratio > Limits().zip_max_ratio
    rep = ingest_uploads(workspace, [("bomb.zip", bomb), ("members/a.wav", _wav(300)), ("nonmembers/b.wav", _wav(700))], "d")
    reasons = _reasons(rep)
    assert re.fullmatch(r"compression ratio \d+:1 exceeds 200:1 \(zip bomb\?\)", reasons["bomb.zip"])
    with zipfile.ZipFile(io.BytesIO(bomb)) as zf:  # the ratio quoted is the declared one
        info = zf.infolist()[0]
        assert reasons["bomb.zip"].startswith(f"compression ratio {info.file_size / info.compress_size:.0f}:1")
    assert (rep.members, rep.nonmembers) == (1, 1)


def test_zip_bomb_on_disk_refused_as_a_whole(workspace, tmp_path):
    p = tmp_path / "bomb.zip"
    p.write_bytes(_bomb(32 * 1024**2))
    with pytest.raises(IngestError, match=r"bomb\.zip: compression ratio .* \(zip bomb\?\)"):
        ingest_path(workspace, p, "d")
    assert "d" not in workspace.dataset_names()


def test_too_many_entries_and_total_size_refused(workspace, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(12):
            zf.writestr(f"members/{i}.wav", _wav(200 + 10 * i, 0.05))
    data = buf.getvalue()
    rep = ingest_uploads(workspace, [("many.zip", data), ("members/a.wav", _wav(300)), ("nonmembers/b.wav", _wav(700))], "d", limits=Limits(zip_max_files=10))
    assert _reasons(rep)["many.zip"] == "archive has 12 files (limit 10)"
    rep = ingest_uploads(workspace, [("many.zip", data), ("nonmembers/b.wav", _wav(700))], "e", limits=Limits(zip_max_total_bytes=len(data) // 2))
    assert "archive expands to" in _reasons(rep)["many.zip"]
    assert (rep.members, rep.nonmembers) == (0, 1)


def test_folder_symlinks_out_of_the_folder_refused(workspace, tmp_path):
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "secret.wav").write_bytes(_wav(123))
    root = tmp_path / "c"
    (root / "members").mkdir(parents=True)
    (root / "nonmembers").mkdir()
    (root / "members" / "a.wav").write_bytes(_wav(300))
    (root / "nonmembers" / "b.wav").write_bytes(_wav(700))
    (root / "members" / "leak.wav").symlink_to(secret / "secret.wav")
    (root / "members" / "leakdir").symlink_to(secret, target_is_directory=True)
    (root / "nonmembers" / "inside.wav").symlink_to(root / "members" / "a.wav")  # stays inside: allowed
    rep = ingest_path(workspace, root, "d")
    reasons = _reasons(rep)
    assert reasons == {"members/leak.wav": "symlink pointing outside the folder (refused)", "members/leakdir": "symlink pointing outside the folder (refused)"}
    secret_hash = __import__("hashlib").sha256((secret / "secret.wav").read_bytes()).hexdigest()
    assert secret_hash not in set(workspace.query("SELECT hash FROM clips")["hash"])
    assert "nonmembers/inside.wav" in set(workspace.items("d")["path"])


# -- server folders -------------------------------------------------------------------------
@pytest.fixture
def roots(tmp_path):
    allowed = tmp_path / "data"
    (allowed / "corpus" / "members").mkdir(parents=True)
    (tmp_path / "data2").mkdir()  # a sibling sharing the root's name as a prefix
    (tmp_path / "private").mkdir()
    (allowed / "escape").symlink_to(tmp_path / "private", target_is_directory=True)
    (allowed / "inner").symlink_to(allowed / "corpus", target_is_directory=True)
    return allowed


@pytest.mark.parametrize("path", ["../private", "corpus/../../private", "/etc", "{tmp}/data2", "{tmp}/data/../data2", "escape", "escape/..", "{tmp}/data/escape"])
def test_resolve_under_roots_refuses_escapes(roots, path):
    p = path.format(tmp=roots.parent)
    with pytest.raises(PermissionError, match="outside the allowed folders"):
        resolve_under_roots(p, (roots,))


@pytest.mark.parametrize("path,expected", [("corpus", "data/corpus"), ("corpus/members", "data/corpus/members"), (".", "data"), ("inner", "data/corpus"), ("corpus/../corpus", "data/corpus")])
def test_resolve_under_roots_accepts_in_root_folders(roots, path, expected):
    assert resolve_under_roots(path, (roots,)) == (roots.parent / expected).resolve()
    assert resolve_under_roots(str(roots / path), (roots,)) == (roots.parent / expected).resolve()


def test_resolve_under_roots_missing_and_unconfigured(roots):
    with pytest.raises(FileNotFoundError):
        resolve_under_roots("nope", (roots,))
    with pytest.raises(PermissionError, match="no roots configured"):
        resolve_under_roots("corpus", ())
    # a second root is honoured; relative paths are taken from the first
    assert resolve_under_roots(roots.parent / "data2", (roots, roots.parent / "data2")) == (roots.parent / "data2").resolve()


@pytest.mark.parametrize("path", ["../private", "escape", "/etc"])
def test_dataset_page_server_folder_refuses_escapes(roots, path, monkeypatch, tmp_path):
    ws = Workspace(tmp_path / "ws")
    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(ws.root))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "0")
    monkeypatch.setenv("OVERHEARD_ROOTS", str(roots))
    (tmp_path / "private" / "members").mkdir()
    (tmp_path / "private" / "members" / "a.wav").write_bytes(_wav(300))
    at = AppTest.from_file(str(ROOT / "pages" / "1_Dataset.py"), default_timeout=60)
    at.run()
    at.text_input(key="upload_name").set_value("x").run()
    at.text_input(key="server_path").set_value(path)
    at.button[0].click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("outside the allowed folders" in e.value for e in at.error), [e.value for e in at.error]
    assert ws.dataset_names() == []


# -- models ---------------------------------------------------------------------------------
def _core_trees() -> list[tuple[Path, ast.AST]]:
    return [(p, ast.parse(p.read_text(encoding="utf-8"), str(p))) for p in sorted(CORE.rglob("*.py"))]


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return _dotted(node.func) + "()"
    return "?"


UNSAFE_CALLS = re.compile(r"(^|\.)(torch\.load|pickle\.loads?|cPickle\.loads?|dill\.loads?|cloudpickle\.loads?|joblib\.load|marshal\.loads?|shelve\.open|yaml\.unsafe_load|jsonpickle\.decode)$")


def test_scanner_detects_what_it_forbids():
    code = "import torch, pickle\nfrom pickle import loads\ntorch.load(p)\npickle.load(f)\nloads(b)\nnp.load(p, allow_pickle=True)\neval(s)\n"
    assert len(_unsafe_uses(ast.parse(code))) == 5


def _unsafe_uses(tree: ast.AST) -> list[str]:
    bad = []
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in {"pickle", "torch", "joblib", "dill", "cloudpickle", "marshal"}:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = aliases.get(_dotted(node.func), _dotted(node.func))
        if UNSAFE_CALLS.search(name):
            bad.append(f"{name}() line {node.lineno}")
        elif name.endswith("load") and name.split(".")[0] in {"np", "numpy"}:
            for kw in node.keywords:
                if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    bad.append(f"{name}(allow_pickle=...) line {node.lineno}")
        elif isinstance(node.func, ast.Name) and node.func.id in {"eval", "exec", "__import__"}:
            bad.append(f"{node.func.id}() line {node.lineno}")
    return bad


def test_no_unpickling_or_eval_in_core():
    """Nothing uploaded or loaded from a checkpoint folder is unpickled or evaluated (no allow-list)."""
    found = {str(p.relative_to(ROOT)): u for p, t in _core_trees() if (u := _unsafe_uses(t))}
    assert found == {}


FROM_PRETRAINED_EXEMPT = re.compile(r"(Tokenizer|Processor|FeatureExtractor|Scheduler|Config|GenerationConfig)\b")


def _from_pretrained_calls() -> list[tuple[str, int, str, ast.Call]]:
    out = []
    for p, tree in _core_trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_pretrained":
                out.append((str(p.relative_to(ROOT)), node.lineno, _dotted(node.func.value), node))
    return out


def test_model_weights_load_from_safetensors_only():
    """Every ``from_pretrained`` that loads weights passes ``use_safetensors=True`` (pickle-based
    ``.bin``/``.pt`` checkpoints are never opened); tokenizers, processors, feature
    extractors and schedulers carry no weights."""
    calls = _from_pretrained_calls()
    assert len(calls) >= 5  # the scan sees the loaders
    missing = []
    for path, line, receiver, node in calls:
        if FROM_PRETRAINED_EXEMPT.search(receiver):
            continue
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        v = kw.get("use_safetensors")
        if not (isinstance(v, ast.Constant) and v.value is True):
            missing.append(f"{path}:{line} {receiver}.from_pretrained")
    assert missing == []
    for _, tree in _core_trees():  # safetensors' own loaders are the only raw weight readers
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("safetensors"):
                assert {a.name for a in node.names} <= {"load_file", "save_file", "safe_open", "load", "save"}


def test_non_safetensors_checkpoint_is_refused(tmp_path):
    from core.targets.diffusers_audio import check_safetensors

    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(ValueError, match="safetensors only"):
        check_safetensors(tmp_path)
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    check_safetensors(tmp_path)


def test_trust_remote_code_defaults_to_false_everywhere():
    params, literals = [], []
    for p, tree in _core_trees():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                pos = a.posonlyargs + a.args
                defaults = dict(zip([x.arg for x in pos][len(pos) - len(a.defaults):], a.defaults))
                defaults |= {x.arg: d for x, d in zip(a.kwonlyargs, a.kw_defaults)}
                for x in pos + a.kwonlyargs:
                    if x.arg == "trust_remote_code":
                        d = defaults.get(x.arg)
                        # no default (the caller must decide) or False
                        params.append((f"{p.name}:{node.name}", d is None or (isinstance(d, ast.Constant) and d.value is False)))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "trust_remote_code":
                value = node.value
                if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "setting" and value.args:
                    value = value.args[0]  # a config field: setting(default, help=...)
                # no default (an attribute annotation: whoever builds it decides) or False
                params.append((f"{p.name}:field", value is None or (isinstance(value, ast.Constant) and value.value is False)))
            elif isinstance(node, ast.keyword) and node.arg == "trust_remote_code" and isinstance(node.value, ast.Constant) and node.value.value is True:
                literals.append(p.name)
    assert params and all(ok for _, ok in params), params
    assert literals == []
    from core.cli import build_parser

    for action in build_parser()._subparsers._group_actions[0].choices.values():  # every sub-command
        for opt in action._actions:
            if "remote" in " ".join(opt.option_strings):
                assert opt.default in (False, None), opt


def test_checkpoint_with_custom_code_is_refused_without_opt_in(tmp_path):
    from core.targets.loading import check_remote_code

    cfg = {"auto_map": {"AutoModel": "modeling_evil.EvilModel"}}
    (tmp_path / "modeling_evil.py").write_text("raise SystemExit('executed')\n")
    with pytest.raises(Exception, match="trust_remote_code"):
        check_remote_code(cfg, trust_remote_code=False, folder=tmp_path)
    check_remote_code(cfg, trust_remote_code=True, folder=tmp_path)
    check_remote_code({}, trust_remote_code=False, folder=tmp_path)


# -- server ---------------------------------------------------------------------------------
def test_streamlit_config_binds_loopback_with_xsrf_and_upload_limit():
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    server = cfg["server"]
    assert server["address"] == "127.0.0.1"
    assert server["enableXsrfProtection"] is True
    assert server["enableCORS"] is True
    assert isinstance(server["maxUploadSize"], int) and 0 < server["maxUploadSize"] <= 4096
    # one request may carry a whole zip, but no more than the per-archive limit lets in
    assert server["maxUploadSize"] * 1024**2 <= Limits().zip_max_total_bytes
    assert cfg["browser"]["gatherUsageStats"] is False


def test_cli_serve_defaults_to_loopback(monkeypatch):
    from core import cli

    args = cli.build_parser().parse_args(["serve"])
    assert args.address == "127.0.0.1"
    seen = {}

    class Started:  # the dashboard process, not started: it exits at once
        pid = -1

        def __init__(self, cmd, **kw):
            seen["cmd"] = cmd

        def wait(self, timeout=None):
            return 0

    from core import cli_serve  # where the serve command lives

    monkeypatch.setattr(cli_serve.subprocess, "Popen", Started)
    monkeypatch.setattr(cli_serve.os, "killpg", lambda pid, sig: None)
    args.workspace, args.json = None, False
    assert cli.cmd_serve(args) == 0
    cmd = seen["cmd"]
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"


# -- numbers are honest ---------------------------------------------------------------------
@pytest.mark.parametrize("n1,n0,warn", [(19, 40, True), (40, 19, True), (20, 20, False), (3, 3, True), (100, 20, False)])
def test_small_sample_warning_threshold(n1, n0, warn):
    from core.stats import small_sample_warning

    y = np.r_[np.ones(n1), np.zeros(n0)]
    w = small_sample_warning(y)
    assert (w is not None) == warn == (min(int((y == 1).sum()), int((y == 0).sum())) < 20)
    if warn:
        assert f"only {n1} members and {n0} non-members" in w


def test_run_mia_on_few_clips_warns():
    from core.mia.aggregate import run_mia

    rng = np.random.default_rng(0)
    y = np.r_[np.ones(8, int), np.zeros(8, int)]
    table = pd.DataFrame(rng.normal(size=(16, 2)), columns=["ppl", "entropy"], index=pd.Index([f"c{i}" for i in range(16)], name="clip_hash"))
    res = run_mia(table, y, n_boot=50)
    assert any("only 8 members and 8 non-members" in w for w in res.warnings)
    y = np.r_[np.ones(20, int), np.zeros(20, int)]
    table = pd.DataFrame(rng.normal(size=(40, 2)), columns=["ppl", "entropy"], index=pd.Index([f"c{i}" for i in range(40)], name="clip_hash"))
    assert not any("unreliable" in w for w in run_mia(table, y, n_boot=50).warnings)


@pytest.fixture
def small_ws(tmp_path, monkeypatch):
    """4 + 5 files, one content under both labels (an unresolved label conflict): 3 + 4 clips analysed."""
    root = tmp_path / "c"
    for label, base in (("members", 300), ("nonmembers", 500)):
        (root / label).mkdir(parents=True)
        for i in range(4):
            (root / label / f"{i}.wav").write_bytes(_wav(base + 40 * i))
    (root / "nonmembers" / "copy.wav").write_bytes((root / "members" / "0.wav").read_bytes())
    ws = Workspace(tmp_path / "ws")
    rep = ingest_path(ws, root, "small")
    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(ws.root))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "0")
    return ws, rep, root


def test_label_conflict_and_small_sample_surfaces(small_ws, tmp_path):
    ws, rep, root = small_ws
    # ingest report (core) and CLI ingest output
    assert rep.label_conflicts == [["members/0.wav", "nonmembers/copy.wav"]]
    assert any("appear under both labels" in w for w in rep.warnings)
    out = subprocess.run([sys.executable, "-m", "core.cli", "--workspace", str(tmp_path / "ws2"), "ingest", str(root), "--name", "small"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "label conflict: members/0.wav = nonmembers/copy.wav" in out.stdout and "appear under both labels" in out.stdout
    # blind result (core), CLI blind, report
    from core.pipeline.blind import BlindRunConfig, audit_blind

    _, res = audit_blind(ws, "small", BlindRunConfig(groups=("metadata",), n_boot=50))
    assert (res["n_members"], res["n_nonmembers"]) == (3, 4)  # the conflicting content is excluded
    assert any("only 3 members and 4 non-members" in w for w in res["warnings"])
    out = subprocess.run([sys.executable, "-m", "core.cli", "--workspace", str(ws.root), "blind", "--dataset", "small", "--groups", "metadata", "--n-boot", "50"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "warning: only 3 members and 4 non-members" in out.stdout
    from core.viz.report import build_report

    html = build_report(ws, "small")
    assert "label conflict(s) unresolved" in html and "only 3 members and 4 non-members" in html


def test_pages_show_conflict_and_small_sample_warnings(small_ws):
    ws, _, _ = small_ws
    from core.pipeline.blind import BlindRunConfig, audit_blind

    audit_blind(ws, "small", BlindRunConfig(groups=("metadata",), n_boot=50))
    at = AppTest.from_file(str(ROOT / "pages" / "1_Dataset.py"), default_timeout=60)
    at.run()
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert any("both labels" in w for w in warnings)
    at = AppTest.from_file(str(ROOT / "pages" / "3_Blind_Baseline.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("only 3 members and 4 non-members" in w.value for w in at.warning), [w.value for w in at.warning]


def test_dataset_page_and_ingest_warn_about_small_samples(small_ws):
    ws, rep, _ = small_ws
    at = AppTest.from_file(str(ROOT / "pages" / "1_Dataset.py"), default_timeout=60)
    at.run()
    assert any("unreliable" in w.value for w in at.warning) and any("unreliable" in w for w in rep.warnings)


def test_env_does_not_leak_into_json_outputs(small_ws):
    """Provenance records versions and settings, never environment secrets."""
    ws, _, _ = small_ws
    from core.pipeline.blind import BlindRunConfig, audit_blind

    os.environ["OVERHEARD_TEST_SECRET"] = "s3cr3t-token"
    try:
        run_id, _ = audit_blind(ws, "small", BlindRunConfig(groups=("metadata",), n_boot=20))
    finally:
        del os.environ["OVERHEARD_TEST_SECRET"]
    assert "s3cr3t-token" not in json.dumps(ws.load_run(run_id), default=str)
