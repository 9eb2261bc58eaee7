"""Worker process entry point: ``python -m core.runtime.worker WORKSPACE JOB_ID [MODULE ...]``.

Each ``MODULE`` is imported first: the modules that register job kinds (the spawning
process passes the one that registered the job's kind)."""

from __future__ import annotations

import importlib
import sys

from core.runtime.jobs import run_job
from core.runtime.store import Workspace


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print("usage: python -m core.runtime.worker WORKSPACE JOB_ID [MODULE ...]", file=sys.stderr)
        return 2
    for module in args[2:]:
        importlib.import_module(module)
    run_job(Workspace(args[0]), args[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
