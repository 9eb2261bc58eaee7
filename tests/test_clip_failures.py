"""One absurd clip never sinks a run: ingest refuses non-physical amplitudes, and a clip
that fails during evidence extraction is listed with its reason while the rest is analysed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.cli import main
from core.data.audio import AudioError, decode
from core.data.ingest import ingest_path
from core.pipeline.evidence import EvidenceFailed, score_isolated
from core.runtime.settings import Limits
from core.runtime.store import Workspace
from core.viz.report import build_report

N = 10


def _corpus(root: Path, *, spike: float | None = 3e38) -> Path:
    rng = np.random.default_rng(0)
    for label in ("members", "nonmembers"):
        (root / label).mkdir(parents=True)
        for i in range(N):
            x = (0.1 * rng.standard_normal(4000)).astype(np.float32)
            if spike is not None and label == "members" and i == 0:
                x[100] = spike
            sf.write(root / label / f"c{i}.wav", x, 16000, subtype="FLOAT")
            (root / label / f"c{i}.txt").write_text("hello world", encoding="utf-8")
    return root


def test_ingest_rejects_a_non_physical_amplitude_with_a_reason(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    rep = ingest_path(ws, _corpus(tmp_path / "c"), "d")
    assert rep.clips == 2 * N - 1
    [rej] = rep.rejected
    assert rej["path"] == "members/c0.wav" and "non-physical sample values" in rej["reason"] and "3e+38" in rej["reason"]
    # ordinary float audio a little over full scale is kept
    buf = tmp_path / "loud.wav"
    sf.write(buf, np.full(1600, 1.5, np.float32), 16000, subtype="FLOAT")
    audio, _ = decode(buf.read_bytes())
    assert float(audio.max()) == pytest.approx(1.5)
    with pytest.raises(AudioError, match="non-physical"):
        decode(buf.read_bytes(), limits=Limits(max_abs_sample=1.2))


def test_score_isolated_retries_clip_by_clip() -> None:
    def score(items):
        if any(t == "bad" for _, _, t in items):
            raise IndexError("index -1 is out of bounds")
        return [f"ev-{h}".upper() for h, _, _ in items]  # stands in for evidence objects

    items = [("a", b"", "ok"), ("b", b"", "bad"), ("c", b"", "ok")]
    out = score_isolated(items, lambda part: [object() for _ in part] if all(t != "bad" for _, _, t in part) else score(part))
    assert not isinstance(out[0], str) and not isinstance(out[2], str)
    assert out[1] == "IndexError: index -1 is out of bounds"
    with pytest.raises(InterruptedError):
        score_isolated(items, lambda part: (_ for _ in ()).throw(InterruptedError("cancelled")))


@pytest.fixture
def ws_with_bad_clip(tmp_path: Path) -> Workspace:
    """A dataset holding a clip with a 3e38 sample, as ingested before the amplitude check."""
    ws = Workspace(tmp_path / "ws")
    rep = ingest_path(ws, _corpus(tmp_path / "c"), "d", limits=Limits(max_abs_sample=1e39))
    assert rep.clips == 2 * N and not rep.rejected
    return ws


def test_mia_lists_the_failing_clip_and_analyses_the_rest(ws_with_bad_clip: Workspace, capsys) -> None:
    ws = ws_with_bad_clip
    rc = main(["mia", "--dataset", "d", "--target", "zoo:lalm-small", "--workspace", str(ws.root), "--json"])
    assert rc == 0, capsys.readouterr().err
    run = ws.latest_run("mia", "d", "zoo:lalm-small")
    r = run["result"]
    assert r["n_members"] + r["n_nonmembers"] == 2 * N - 1
    [f] = r["failed_clips"]
    assert f["path"] == "members/c0.wav" and "non-physical" in f["reason"]
    assert any("could not be scored" in w for w in r["warnings"])
    html = build_report(ws, "d", "zoo:lalm-small")
    assert "1 clip(s) could not be scored" in html and "members/c0.wav" in html
    # dataset inference over that run carries the list too
    assert main(["di", "--dataset", "d", "--target", "zoo:lalm-small", "--workspace", str(ws.root)]) == 0
    assert ws.latest_run("di", "d", "zoo:lalm-small")["result"]["failed_clips"] == [f]


def test_every_clip_failing_stops_with_one_reason(ws_with_bad_clip: Workspace, monkeypatch) -> None:
    from core.pipeline import evidence as common
    from core.pipeline.mia import MIAConfig

    target = common.get_target("zoo:lalm-small", "auto", {})  # the instance extract_evidence reuses
    calls = []

    def broken(xs, cfg, batch_size=8):
        calls.append(len(xs))
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(target, "evidence", broken)
    with pytest.raises(EvidenceFailed, match="every clip tried failed .*device-side assert"):
        common.extract_evidence(ws_with_bad_clip, "d", "zoo:lalm-small", MIAConfig(batch_size=4))
    assert sum(calls) <= 4 + 8 + 4  # stops after the first few clips, not after all 20


def test_mia_page_lists_failed_clips(ws_with_bad_clip: Workspace, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    ws = ws_with_bad_clip
    assert main(["mia", "--dataset", "d", "--target", "zoo:lalm-small", "--workspace", str(ws.root)]) == 0
    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(ws.root))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "0")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "2_MIA_Audit.py"), default_timeout=90)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("could not be scored" in e.label for e in at.expander)
