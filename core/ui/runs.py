"""Shared run/job plumbing for analysis pages: start a job, find it again after a reload."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import streamlit as st

import core.pipeline  # noqa: F401  (registers the job kinds the pages submit)
from core.runtime import jobs
from core.runtime.store import Workspace
from core.ui.common import job_panel, settings


def check_typed_target(spec: str, roots: tuple[Path, ...]) -> str:
    """A target typed in the dashboard, checked before any model library is imported:
    what :func:`core.targets.resolve_target` accepts, and, for a local folder, only one under the
    allowed ``roots`` (``OVERHEARD_ROOTS``, see SECURITY.md). Returns the spec to run
    (a folder as its resolved absolute path).

    Raises
    ------
    ValueError
        with a one-line reason.
    """
    from core.data.paths import resolve_under_roots
    from core.targets import resolve_target

    spec = spec.strip()
    if not spec:
        raise ValueError("type a local checkpoint folder or a hub id")
    if spec.startswith("zoo:") or not Path(spec).expanduser().exists():
        resolve_target(spec)
        return spec  # a zoo name, a hub id or an API base: nothing on disk to fence
    try:  # the fence first: nothing outside the allowed folders is read
        folder = str(resolve_under_roots(Path(spec).expanduser().resolve(), roots))
    except (PermissionError, FileNotFoundError) as exc:
        raise ValueError(str(exc)) from None
    resolve_target(folder)
    return folder


def run_targets(ws: Workspace, dataset: str | None) -> list[str]:
    """Targets with a stored run on ``dataset`` (a CLI run on a local folder included), newest first."""
    if not dataset:
        return []
    df = ws.runs(dataset=dataset)
    df = df[df["target"].fillna("").astype(str).str.strip() != ""].sort_values("created", ascending=False)
    return list(dict.fromkeys(df["target"].tolist()))


def target_picker(ws: Workspace, *, key: str = "target", families: tuple[str, ...] | None = None,
                  dataset: str | None = None) -> str | None:
    """The target of an audit: built-in targets (those trained on ``dataset`` first), targets
    that already have runs on ``dataset``, and a typed local folder or hub id, validated at
    once. The choice is remembered across pages and lives in the URL (``?target=``).

    Returns None while the typed entry is invalid (its reason is shown beside it).
    """
    from core.targets import list_targets

    infos = [t for t in list_targets() if families is None or t.family in families]
    ready = [t for t in infos if t.available]
    ready.sort(key=lambda t: t.detail.get("dataset") != dataset)
    desc = {t.spec: f"{t.spec} · {t.family}" + _zoo_role(t.detail) for t in ready}
    fits = {t.spec for t in ready if dataset is None or t.detail.get("dataset") in (None, dataset)}
    for spec in run_targets(ws, dataset):
        desc.setdefault(spec, _label(spec, "has runs here"))
    for spec in st.session_state.get("_target_typed", []):
        desc.setdefault(spec, _label(spec, "typed"))
    chosen = st.session_state.get("_target")
    asked = st.query_params.get("target")
    if chosen is None and asked:  # a reload, a bookmark or a shared link
        if asked not in desc:
            try:
                asked = check_typed_target(asked, settings().roots)
                desc[asked] = _label(asked, "typed")
                st.session_state["_target_typed"] = [*st.session_state.get("_target_typed", []), asked]
            except ValueError:
                asked = None
        if asked:
            chosen = asked
            st.session_state["_target_user"] = True
    specs = list(desc)
    if not specs:
        st.info("No built-in target is built yet: run `overheard zoo build`, or type a checkpoint folder.")
    elif chosen not in specs or (chosen not in fits and chosen in {t.spec for t in ready} and not st.session_state.get("_target_user")):
        chosen = specs[0]
    spec = None
    if specs:
        st.session_state[key] = chosen
        spec = st.selectbox("Target model", specs, format_func=lambda s: desc.get(s, s), key=key,
                            on_change=lambda: st.session_state.update(_target=st.session_state[key], _target_user=True))
        st.session_state["_target"] = spec
        st.query_params["target"] = spec  # the choice lives in the URL
    typed_key = f"{key}-typed"
    st.text_input("…or a local folder / hub id / API URL", key=typed_key,
                  placeholder="/models/whisper-ft  or  owner/name  or  http://127.0.0.1:8000/v1",
                  on_change=_take_typed, args=(key, typed_key),
                  help="A checkpoint folder under the allowed folders (OVERHEARD_ROOTS), a model id in the local hub cache, or the "
                       "base URL of a transcription API (audited from its outputs only; its key in OVERHEARD_API_KEY, never typed "
                       "here). Checked before anything is loaded or sent.")
    error = st.session_state.get(f"{typed_key}-error")
    if error:
        st.error(error, icon="⚠️")
        return None
    return spec


def _zoo_role(detail: dict) -> str:
    """What a built-in target is to its dataset: trained on its members, or a reference
    (or base) that never saw them."""
    if not detail.get("dataset"):
        return ""
    return f" · trained on {detail['dataset']}" if detail.get("saw_members", True) else f" · never saw {detail['dataset']}"


def _label(spec: str, origin: str) -> str:
    from core.runtime.settings import is_http_spec

    if is_http_spec(spec):
        return f"{spec} · remote API · {origin}"
    # a long folder path is cut at the box's edge: its last part, which tells checkpoints apart, goes first
    name = Path(spec).name
    return f"{name} · {origin} · {spec}" if name and name != spec else f"{spec} · {origin}"


def _take_typed(key: str, typed_key: str) -> None:
    text = st.session_state.get(typed_key, "").strip()
    st.session_state[f"{typed_key}-error"] = None
    if not text:
        return
    try:
        spec = check_typed_target(text, settings().roots)
    except ValueError as exc:
        st.session_state[f"{typed_key}-error"] = str(exc)
        return
    typed = st.session_state.get("_target_typed", [])
    st.session_state["_target_typed"] = [*typed, spec] if spec not in typed else typed
    st.session_state.update(_target=spec, _target_user=True)
    st.session_state[typed_key] = ""


ACCESS_HELP = ("white-box: the model's token statistics or denoising losses (needs the weights). outputs: only what the "
               "model returns, as an API gives: its transcription of each clip and of a few seeded perturbations "
               "(audio-language), or generations from each clip's caption compared with the clip (text-to-audio).")


def access_picker(target: str | None, *, key: str = "access") -> str:
    """The access level to audit at; a target that supports only one (a remote API) offers only it."""
    from core.stages import ACCESS_LEVELS
    from core.targets.registry import target_access

    try:
        levels = target_access(target) if target else ACCESS_LEVELS
    except ValueError:
        levels = ACCESS_LEVELS
    return st.selectbox("Access", levels, key=key, help=ACCESS_HELP,
                        format_func=lambda a: "outputs only" if a == "outputs" else a)


def request_budget(target: str | None, *, key: str = "max-requests") -> int:
    """For a remote API target, the most requests the run may send (0: no limit); 0 for others."""
    from core.runtime.settings import is_http_spec

    if not target or not is_http_spec(target):
        return 0
    return int(st.number_input("Request budget", min_value=0, value=0, step=100, key=key,
                               help="Most requests this run may send to the API, retries included (0: no limit). A spent "
                                    "budget stops the run; answered clips are kept and a new run goes on from there."))


def pia_picker(target: str | None, access: str, *, key: str = "pia") -> bool:
    """"Also measure PIA": offered for a diffusion target audited white-box; off otherwise."""
    from core.stages import family_of

    if access != "white-box" or not target or family_of(target) != "diffusion":
        return False
    return st.checkbox("Also measure PIA", key=key,
                       help="PIA, the proximal initialization attack: the model's own noise estimate on the clean clip "
                            "replaces the random noise draws, one more model call per clip and timestep (about 9% more "
                            "time). Its authors found it strong on image diffusion models; on the built-in ones it adds little. Its "
                            "keys are pia@t... in the indicator table.")


AUTO_LANGUAGE = "auto"


def language_picker(target: str | None, *, key: str = "language") -> tuple[tuple[str, object], ...]:
    """For a multilingual speech model (or a remote API), the language to transcribe in, as
    target options; "auto" (the default) takes the dataset's, else detects it over the
    dataset's clips. Nothing for other targets."""
    from core.targets.language import declared_languages, language_name

    codes = declared_languages(target) if target else []
    if not codes:
        return ()
    chosen = st.selectbox("Language", [AUTO_LANGUAGE, *codes], key=key,
                          format_func=lambda c: "auto (the dataset's, else detected)" if c == AUTO_LANGUAGE else f"{language_name(c)} ({c})",
                          help="A multilingual model decodes every clip of a run in one language: the one chosen here, else "
                               "the one the dataset's metadata names, else the one it identifies over the dataset's clips.")
    return () if chosen == AUTO_LANGUAGE else (("language", chosen),)


def loader_options_input(*, key: str = "loader-options",
                         chosen: tuple[tuple[str, object], ...] = ()) -> tuple[tuple[str, object], ...] | None:
    """"Loader options": ``KEY=VALUE`` lines for the target's loader (and its references'),
    as ``--target-option`` takes them on the command line, with the options ``chosen``
    elsewhere on the page (the language picker's) winning on their keys; None (with the
    reason shown) when a line cannot be read or asks for remote code."""
    from core.config import key_values

    with st.expander("Loader options"):
        text = st.text_area("KEY=VALUE, one per line", key=key, height=80,
                            placeholder='prompt="Describe the audio."\nbatch_size=16',
                            help="Options for the loader of the target and of its references, as `--target-option` takes "
                                 "them: a chat model's task prompt, a batch size, a speech model's max_new_tokens. Values "
                                 "read as JSON when they parse (numbers, true/false, quoted text), else as text.")
    try:
        options = key_values([line for line in text.splitlines() if line.strip()], "a loader option")
    except ValueError as exc:
        st.error(str(exc), icon="⚠️")
        return None
    if "trust_remote_code" in dict(options):
        st.error("The dashboard never runs Python code from a checkpoint folder: use the command line's --trust-remote-code.",
                 icon="⚠️")
        return None
    return tuple(sorted((dict(options) | dict(chosen)).items()))


def reference_picker(target: str | None, *, key: str = "references", ws: Workspace | None = None) -> tuple[str, ...]:
    """"Reference model(s)": ready targets of the audited target's family (never the target
    itself), the shadow references built in the workspace (``ws``), plus local checkpoint
    folders typed one per line. A set of shadows is one choice, returned as its shadows
    (:func:`~core.pipeline.shadow_set.expand_references`). Empty: no calibration."""
    from core.pipeline.reference import workspace_shadows
    from core.pipeline.shadow_set import expand_references
    from core.targets import list_targets

    infos = [t for t in list_targets() if t.available and t.spec != target]
    family = next((t.family for t in list_targets() if t.spec == target), None)
    specs = [t.spec for t in infos if family is None or t.family == family]
    if ws is not None:  # the shadows built for this family (any, before a target is chosen)
        specs += [s for s in workspace_shadows(ws, family) if s != target]
    chosen = st.multiselect("Reference model(s)", specs, key=key,
                            help="Models that did NOT train on the suspects (a base model, an earlier release, a model trained on "
                                 "public data). Each clip's indicators are calibrated against them; results are shown with and without.")
    folders = st.text_area("Reference checkpoint folder(s)", key=f"{key}-folders", height=68,
                           placeholder="/path/to/model (one per line, optional)")
    picked = tuple(chosen) + tuple(line.strip() for line in folders.splitlines() if line.strip())
    out: list[str] = []
    for spec in picked:
        try:
            out += expand_references([spec])
        except ValueError as exc:  # an unfinished set of shadows: said, and left out
            st.caption(f"⚠ {exc}")
    return tuple(out)


def references_text(references: tuple[str, ...], cross_fit: bool) -> str:
    """What a run was (or is to be) calibrated against, in a few words."""
    from core.viz.report import reference_names

    if not references:
        return "no reference model (uncalibrated)"
    fitted = "" if len(references) < 2 else ", cross-fitted" if cross_fit else ", not cross-fitted"  # shadows can be either
    return reference_names(list(references)) + fitted


def run_for_references(ws: Workspace, kind: str, dataset: str, target: str, where: Callable[[dict], bool],
                       references: tuple[str, ...], cross_fit: bool, *, scope: str, button: str,
                       calibration_of: Callable[[dict], dict] = lambda c: c) -> dict | None:
    """The newest ``kind`` run that ``where`` accepts against the chosen ``references``
    (cross-fitted or not, as chosen), so a page's headline is the audit its form
    describes; else the newest ``where`` accepts, with a note naming what it was
    calibrated against (``scope`` says which runs were looked at, ``button`` what to
    press). ``calibration_of``: the part of a run's config that holds its references
    (a disentanglement run keeps them in its MIA config). None when ``where`` accepts no run."""
    def as_chosen(c: dict) -> bool:
        own = calibration_of(c)
        return where(c) and set(own.get("references") or ()) == set(references) and bool(own.get("cross_fit")) == cross_fit

    run = ws.latest_run(kind, dataset, target, where=as_chosen)
    if run is not None:
        return run
    other = ws.latest_run(kind, dataset, target, where=where)
    if other is not None:
        own = calibration_of(other["config"])
        shown = references_text(tuple(own.get("references") or ()), bool(own.get("cross_fit")))
        st.info(f"No run against {references_text(references, cross_fit)} yet: showing the newest {scope}, {shown}. "
                f"Press **{button}** for the references chosen above.")
    return other


def cross_fit_picker(references: tuple[str, ...], *, key: str = "cross-fit") -> bool:
    """"Cross-fit the shadows": offered when two or more references are chosen, every one is
    a shadow (its card lists its training clips) and they can be cross-fitted (two or more
    disjoint sets of clips, as many shadows on each); off otherwise, with a caption saying
    why when every reference is a shadow."""
    from core.pipeline.reference import cross_fit_sets, shadow_training_sets

    if len(references) < 2:
        return False
    try:
        cross_fit_sets(references)
    except ValueError as exc:
        try:  # shadows that cannot be cross-fitted say why; a base among them needs no word
            shadow_training_sets(references)
            st.caption(f"Not offered to cross-fit: {exc}.")
        except ValueError:
            pass
        return False
    return st.checkbox("Cross-fit the shadows", key=key,
                       help="Audit the known non-members the shadows trained on too: each clip is calibrated against the "
                            "shadows that never trained on it (m - 1 of m; a suspect against all but one, chosen by its "
                            "content hash; shadows on the same clips, a set's seeds, count as one), so no known "
                            "non-member is spent on the references.")


def active_job(ws: Workspace, kind: str, match: dict) -> str | None:
    """The newest job of ``kind`` whose params match ``match`` (survives reloads)."""
    df = jobs.jobs(ws, kind=kind, limit=20)
    for _, row in df.iterrows():
        params = json.loads(row["params"] or "{}")
        if all(params.get(k) == v for k, v in match.items()):
            return row["id"]
    return None


def run_controls(ws: Workspace, kind: str, params: dict, match: dict, *, label: str) -> dict | None:
    """A start button plus the progress panel of the matching job; returns the job row."""
    job_id = active_job(ws, kind, match)
    row = job_panel(ws, job_id) if job_id else None
    busy = row is not None and row["status"] in ("queued", "running")
    refusal = None
    config = params.get("config") or {}
    references = config.get("references") or (config.get("mia") or {}).get("references") or ()
    for role, spec in [("target", params.get("target")), *(("reference", r) for r in references)]:
        if not spec:
            continue
        try:  # a target known only from a stored run (a CLI run elsewhere) can be viewed, not necessarily loaded here
            check_typed_target(spec, settings().roots)
        except ValueError as exc:
            refusal = str(exc)
            st.caption(f"⚠ Cannot run this {role} from the dashboard: {refusal}")
    if st.button(label, type="primary", disabled=busy or refusal is not None, key=f"start-{kind}"):
        jobs.submit(ws, kind, params)
        st.rerun()
    return row
