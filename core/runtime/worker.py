"""Worker process entry point: ``python -m core.runtime.worker WORKSPACE JOB_ID``."""

from __future__ import annotations

import sys

from core.runtime.jobs import run_job
from core.runtime.store import Workspace


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m core.runtime.worker WORKSPACE JOB_ID", file=sys.stderr)
        return 2
    run_job(Workspace(args[0]), args[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
