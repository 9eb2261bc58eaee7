"""What every ``overheard`` command shares: logging and progress on stderr, the JSON or
text answer on stdout, the workspace, the target resolved by the command line's precheck,
and its ``--target-option`` loader options."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable

from core.cli_flags import CLIError, _key_values
from core.runtime.settings import Settings
from core.runtime.store import Workspace


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _progress(prefix: str) -> Callable[[int, int, str], None]:
    last = [0.0]

    def report(done: int, total: int, message: str = "") -> None:
        now = time.monotonic()
        if done == total or now - last[0] > 0.5:
            last[0] = now
            _log(f"{prefix} {done}/{total} {message}")

    return report


def _emit(args: argparse.Namespace, obj: dict, text: str) -> None:
    if args.json:
        print(json.dumps(obj, default=str))
    else:
        print(text)


def _workspace(args: argparse.Namespace) -> tuple[Settings, Workspace]:
    settings = Settings.from_env(args.workspace)
    return settings, Workspace(settings.workspace)


def _card_summary(card: dict) -> dict:
    """A model card without its per-clip lists (member and pool hashes, per-epoch losses)."""
    return {k: _card_summary(v) if isinstance(v, dict) else v for k, v in card.items() if not isinstance(v, list)}


def _target_options(args: argparse.Namespace) -> tuple[tuple[str, object], ...]:
    """``--target-option KEY=VALUE`` pairs (see :func:`_key_values`); remote code is only
    ever allowed by its own flag."""
    out = _key_values(getattr(args, "target_options", None) or getattr(args, "target_option", None), "target-option")
    if "trust_remote_code" in dict(out):
        raise CLIError("use --trust-remote-code, not a target option, to run code from a checkpoint folder")
    return out


def _target(args: argparse.Namespace):
    """The command's target as resolved by :func:`_precheck`."""
    return args.targets.ref(args.target)


TARGET_HELP = ("zoo:<name>, a local checkpoint folder (Hugging Face or CTranslate2/faster-whisper), "
               "a hub id (owner/name[@revision]) already in the local Hugging Face cache, "
               "or an http(s):// transcription API base (outputs access only; key in $OVERHEARD_API_KEY)")
