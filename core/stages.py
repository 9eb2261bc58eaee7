"""One config per stage: the settings of every pipeline operation, with their defaults.

The blind baseline (:class:`BlindRunConfig`), the per-sample MIA (:class:`MIAConfig`),
dataset inference (:class:`DIRunConfig`), modality disentanglement
(:class:`DisentangleConfig`, which holds the MIA config it re-runs) and the cross-dataset
matrix (:class:`CrossDataConfig`). Each is recorded with its run (``to_dict``) and read
back strictly (``from_dict``, see :mod:`core.config`); each field's help text is in its
metadata, and the CLI builds its flags from these fields, so the command line, the pages
and the library share one default per setting.

This module imports no numeric library, so the CLI can build its parser without loading
scikit-learn or torch; the operations live in :mod:`core.pipeline`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.config import (ACCESS_LEVELS, DEFAULT_GEN_STEPS, DEFAULT_N_BOOT, DEFAULT_N_PERM, DEFAULT_N_SPLITS, Config, Listing, access_text, at_access,
                         setting)
from core.runtime.settings import GROUPINGS

__all__ = [
    "ACCESS_LEVELS",
    "access_text",
    "at_access",
    "family_of",
    "BlindRunConfig",
    "CrossDataConfig",
    "DEFAULT_CONDITIONS",
    "DEFAULT_GROUPS",
    "DIRunConfig",
    "DisentangleConfig",
    "MIAConfig",
    "STATUSES",
    "TEXT_MODES",
]

def family_of(spec: str | None) -> str | None:
    """The family of target ``spec`` for :func:`access_text`, or None when no loader knows it
    (the target registry is imported only when asked: this module stays light)."""
    from core.targets.registry import family_of as of

    return of(spec)


DEFAULT_GROUPS = ("metadata", "text", "acoustic")
GROUP_NAMES = "core.blind.registry:list_groups"
"""Where the blind feature groups are listed (read when a help text is shown)."""
"""Blind feature groups of a blind-baseline run."""

DEFAULT_CONDITIONS = ("original", "silence", "noise", "tts")
"""Conditions of a disentanglement run."""

TEXT_MODES = ("generated", "given")
"""Audio-language targets: score the greedy output, or the clip's own transcript."""

STATUSES = ("member", "nonmember")
"""Which subset of each dataset the cross-dataset matrix compares."""


# -- settings shared by the stages (one help text, one default each) -------------------------
def _seed() -> Any:
    return setting(0, help="seed of the folds, resamples and permutations")


def _n_splits() -> Any:
    return setting(DEFAULT_N_SPLITS, metavar="K", help="cross-validation folds (fewer when a class or the groups are too small)")


def _n_boot() -> Any:
    return setting(DEFAULT_N_BOOT, metavar="B", help="bootstrap resamples of the AUC interval")


def _check_inference(cfg: Any) -> None:
    """The cross-validation and resampling settings every run with an AUC shares."""
    bad = [f"{name} must be >= {low}, got {getattr(cfg, name)}" for name, low in (("n_splits", 2), ("n_boot", 1), ("n_perm", 0))
           if getattr(cfg, name) < low]
    if bad:
        raise ValueError("; ".join(bad))


def _n_perm() -> Any:
    return setting(DEFAULT_N_PERM, metavar="B",
                   help="label permutations of the whole CV procedure for the p-value and interval (0: bootstrap interval only)")


def _references() -> Any:
    return setting((), flag="reference", metavar="T", repeatable=True,
                   help="reference model that did not train on the suspects (zoo:<name> or a local checkpoint folder; "
                        "repeatable): indicators are also calibrated against it")


def _cross_fit() -> Any:
    return setting(False, help="with two or more shadow references trained on disjoint clips: audit the clips they trained on "
                               "too, each clip calibrated against the shadows that never trained on it (m - 1 of m; shadows on the same "
                               "clips, a set's seeds, count as one)")


def _target_options() -> Any:
    return setting((), flag="target-option", metavar="KEY=VALUE",
                   help="option for the target's loader, e.g. prompt=\"Describe the audio.\" or batch_size=16 (repeatable)")


def _access() -> Any:
    return setting("white-box", choices=ACCESS_LEVELS,
                   help="white-box (token statistics, denoising losses) or outputs (only what the model returns, as an API gives)")


def _grouping() -> Any:
    return setting("auto", choices=GROUPINGS,
                   help="clips kept on one side of every CV split: auto (speaker, else source), none, speaker, source")


@dataclass(frozen=True)
class BlindRunConfig(Config):
    """Settings of a blind-baseline run. ``grouping``: which clips cross-validation keeps
    together (``auto``: speakers, else sources); ``n_perm``: label permutations of the
    whole CV procedure for p-values and intervals (0: bootstrap intervals only)."""

    groups: tuple[str, ...] = setting(DEFAULT_GROUPS, metavar="G1,G2", help=Listing("comma-separated feature groups: {names}", GROUP_NAMES))
    n_splits: int = _n_splits()
    n_boot: int = _n_boot()
    seed: int = _seed()
    batch_size: int = setting(32, help="clips per acoustic-feature batch")
    grouping: str = _grouping()
    n_perm: int = _n_perm()

    def __post_init__(self) -> None:
        _check_inference(self)


@dataclass(frozen=True)
class MIAConfig(Config):
    """Settings of a per-sample MIA run (evidence extraction and aggregation)."""

    mode: str = setting("generated", choices=TEXT_MODES, help="audio-language targets: score the greedy output or the transcript")
    infill_m: int = setting(0, flag="infill", metavar="M", help="also compute the Infilling Score with M future tokens (token targets)")
    timesteps: tuple[int, ...] = setting((), metavar="T1,T2", help="diffusion timesteps, comma-separated (default: the target's spread)")
    n_noise: int = setting(4, help="fixed noise draws per timestep (diffusion targets)")
    n_splits: int = _n_splits()
    n_boot: int = _n_boot()
    seed: int = _seed()
    batch_size: int = setting(8, help="clips per evidence batch (halved on CUDA out-of-memory)")
    target_options: tuple[tuple[str, object], ...] = _target_options()
    trust_remote_code: bool = setting(False, help="allow Python code from the checkpoint folder (off by default; recorded in the report)")
    grouping: str = _grouping()
    n_perm: int = _n_perm()
    signed: bool = setting(True, flag="unsigned",
                           help="let the aggregate read an indicator against its registered direction (default: weights >= 0 on aligned indicators)")
    references: tuple[str, ...] = _references()
    calibrations: tuple[str, ...] = setting((), flag="calibration", metavar="C1,C2",
                                            help="calibrations against the references: diff, resid, lira, rmia "
                                                 "(default: resid; resid,lira with two or more references)")
    cross_fit: bool = _cross_fit()
    access: str = _access()
    n_perturb: int = setting(3, metavar="N", help="outputs access, audio-language: seeded perturbations per clip (noise, gain, speed in turn)")
    n_generations: int = setting(4, metavar="K", help="outputs access, text-to-audio: seeded generations per caption")
    gen_steps: int = setting(DEFAULT_GEN_STEPS, metavar="S", help="outputs access, diffusion targets: sampling steps per generation")
    output_clap: str = setting("", metavar="DIR", help="outputs access, text-to-audio: local CLAP folder for the clap_sim indicator")
    max_requests: int = setting(0, metavar="N", help="HTTP targets: most requests this run may send (0: no limit); "
                                                     "a spent budget stops the run, keeping what was answered")
    pia: bool = setting(False, help="diffusion targets: also measure PIA, the proximal initialization attack, at each timestep "
                                    "(one more model call per clip and timestep)")

    def __post_init__(self) -> None:
        _check_inference(self)
        if self.access not in ACCESS_LEVELS:
            raise ValueError(f"access must be one of {', '.join(ACCESS_LEVELS)}, got {self.access!r}")
        if self.access == "outputs" and self.mode == "given":
            raise ValueError("access 'outputs' reads what the model returns: mode 'given' (scoring the transcript) needs white-box access")
        if self.pia and self.access == "outputs":
            raise ValueError("PIA reads a diffusion model's noise estimates: it needs access 'white-box', not 'outputs'")
        if self.n_perturb < 0 or self.n_generations < 1 or self.gen_steps < 1 or self.max_requests < 0:
            raise ValueError("n_perturb must be >= 0, n_generations and gen_steps >= 1, max_requests >= 0")
        if self.cross_fit and len(self.references) < 2:
            raise ValueError(f"cross-fitting needs two or more shadow references, got {len(self.references)}")

    def loader_options(self) -> dict:
        """Options for the target's loader; remote code only when asked for explicitly."""
        opts = dict(self.target_options)
        if self.trust_remote_code:
            opts["trust_remote_code"] = True
        if self.max_requests:
            opts["max_requests"] = self.max_requests
        return opts

    def decodes_text(self, family: str | None) -> bool:
        """Whether this run's evidence holds the target's own text: an audio-language target
        decoding (``generated`` mode) or answering (the outputs level). The transcription
        check, the references' scored text and a resynthesis's consistency check read it."""
        return family == "audio-language" and (self.access == "outputs" or self.mode == "generated")

    EVIDENCE_NAMES = {"clap_model": "output_clap"}
    """The evidence settings this config names otherwise (evidence name -> field here)."""

    def evidence_config(self):
        """The evidence settings of this run: every field of
        :class:`~core.targets.base.EvidenceConfig`, read from the field of the same name
        (or the one :attr:`EVIDENCE_NAMES` says)."""
        import dataclasses

        from core.targets.base import EvidenceConfig

        values = {f.name: getattr(self, self.EVIDENCE_NAMES.get(f.name, f.name)) for f in dataclasses.fields(EvidenceConfig)}
        return EvidenceConfig(**values | {"timesteps": tuple(values["timesteps"])})


@dataclass(frozen=True)
class DIRunConfig(Config):
    """Settings of one dataset-inference run.

    Attributes
    ----------
    scorer : registered DI scorer (see :func:`core.di.scorer_names`).
    alpha : significance level of the one-sided Welch test.
    seed : seed of the scorer split, the null check and the curve's resamples.
    n_resamples : resamples per size of the p-value curve.
    null_resamples : runs of the null check (non-members against held-out non-members).
    refit : refit the scorer for every curve resample (the band then includes the luck
        of the fit split; slower).
    compare : also run every scorer (for the comparison table).
    fdr : false discovery rate q of the flagged clips (:mod:`core.di.which`).
    plan_nonmembers : the planner's known non-members in all (default: this run's).
    mia_mode : text mode of the MIA run to read (and to make when none exists yet).
    mia_run : id of the MIA run to read (default: the newest matching one).
    references : reference models of the MIA run to read (and to make): the test then runs
        on the calibrated indicators, with the uncalibrated result beside it.
    cross_fit : read (and make) an MIA run whose shadow references are cross-fitted.
    mia_access : access level of the MIA run to read (and to make): ``white-box`` or ``outputs``.
    target_options : loader options of the MIA run to read (and to make); empty: read the
        newest run whatever its options, make one with none.
    """

    scorer: str = setting("auto", help=Listing("a registered scorer: {names}", "core.di.registry:scorer_names"))
    alpha: float = setting(0.01, help="significance level of the one-sided Welch test")
    seed: int = setting(0, help="seed of the scorer split, the null check and the curve's resamples")
    n_resamples: int = setting(200, help="resamples per size of the p-value curve")
    null_resamples: int = setting(200, help="runs of the null check (non-members against held-out non-members)")
    refit: bool = setting(False, help="refit the scorer for every curve resample (slower; the band includes the fit split's luck)")
    compare: bool = setting(False, help="also run every scorer")
    mia_mode: str = setting("generated", flag="mode", choices=TEXT_MODES, help="text mode of the MIA run to read (or make)")
    mia_run: str | None = setting(None, metavar="RUN_ID", help="read this MIA run (default: the newest of this dataset, target and mode)")
    references: tuple[str, ...] = _references()
    cross_fit: bool = _cross_fit()
    mia_access: str = setting("white-box", flag="access", choices=ACCESS_LEVELS,
                              help="access level of the MIA run to read (or make): white-box or outputs")
    fdr: float = setting(0.1, help="false discovery rate of the flagged clips (Benjamini-Hochberg over conformal p-values)")
    plan_nonmembers: int | None = setting(None, metavar="N",
                                          help="plan the suspects needed for a study with N known non-members (default: this run's)")
    target_options: tuple[tuple[str, object], ...] = _target_options()

    def __post_init__(self) -> None:
        from core.di import get_scorer

        if self.plan_nonmembers is not None and self.plan_nonmembers < 2:
            raise ValueError(f"plan_nonmembers must be at least 2, got {self.plan_nonmembers}")

        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.n_resamples < 1 or self.null_resamples < 1:
            raise ValueError("n_resamples and null_resamples must be at least 1")
        get_scorer(self.scorer)


@dataclass(frozen=True)
class DisentangleConfig(Config):
    """Settings of a disentanglement run: the conditions, the MIA re-run under each, and
    the consistency checks of resynthesized clips."""

    conditions: tuple[str, ...] = setting(DEFAULT_CONDITIONS, metavar="C1,C2",
                                          help=Listing("comma-separated from {names}", "core.disentangle.registry:variant_names"))
    mia: MIAConfig = setting(MIAConfig(), help="the MIA run under each condition")
    max_realizations: int = setting(3, flag="realizations", metavar="N", help="resynthesis realizations per clip (1-3)")
    max_wer: float = setting(0.5, help="flag tts clips the audited model transcribes with a higher word error rate")
    drop_inconsistent: bool = setting(False, help="drop flagged resynthesized clips instead of keeping them")
    variant_options: dict = setting(default_factory=dict, cli=False,
                                    help="options of each condition's variant (CLI: --piper-voice, --tta-generator, --tta-steps)")
    clap_model: str | None = setting(None, metavar="DIR",
                                     help="local CLAP model folder: flag tta clips whose CLAP similarity to their caption is below --min-clap")
    min_clap: float = setting(0.3, help="lowest CLAP similarity of a tta clip to its caption before it is flagged")


@dataclass(frozen=True)
class CrossDataConfig(Config):
    """Settings of :func:`core.pipeline.crossdata.cross_dataset_matrix` (recorded with the run).

    Attributes
    ----------
    status : "member" or "nonmember": which subset of each dataset is compared.
    groups : blind feature groups (text is left out by default: different corpora have
        different vocabularies by construction).
    n_splits, seed : stratified CV folds and the seed of folds and shared-clip sides.
    batch_size : clips per acoustic-feature batch.
    n_perm : label permutations per cell for its p-value and interval (0: bootstrap
        interval only, no p-value).
    n_boot : resamples of the fixed-score bootstrap per cell.
    """

    status: str = setting("member", choices=STATUSES, help="which subset of each dataset is compared")
    groups: tuple[str, ...] = setting(("metadata", "acoustic"), help=Listing("comma-separated blind feature groups: {names}", GROUP_NAMES))
    n_splits: int = _n_splits()
    seed: int = _seed()
    batch_size: int = setting(32, help="clips per acoustic-feature batch")
    n_perm: int = _n_perm()
    n_boot: int = _n_boot()

    def __post_init__(self) -> None:
        _check_inference(self)
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if not self.groups:
            raise ValueError("choose at least one feature group")
