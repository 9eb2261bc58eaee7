"""One summary of a dataset, computed once from the store and shown on every surface.

The ingest banner, the CLI, the Home table, the Dataset page, its label chart and the
report all read :class:`DatasetSummary`, so they cannot disagree. The counts obey two
identities that the tests check::

    unique_clips = members + nonmembers + conflicts
    stored_files = members + nonmembers + conflict_files + duplicate_files

where ``duplicate_files`` are extra copies of a clip under the same label (analysed once)
and ``conflict_files`` every file of a clip that appears under both labels (excluded).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd

from core.runtime.store import MEMBER, NONMEMBER, Workspace


@dataclass(frozen=True)
class DatasetSummary:
    """Counts of one dataset; see the module docstring for their identities."""

    dataset: str
    status: str
    files_seen: int
    stored_files: int
    rejected: int
    unique_clips: int
    members: int
    nonmembers: int
    conflicts: int
    conflict_files: int
    duplicate_files: int
    duplicates: pd.DataFrame = field(repr=False, compare=False)
    """One row per clip stored more than once under one label: ``clip_hash, label, files, paths``."""

    @property
    def analysed(self) -> int:
        return self.members + self.nonmembers

    def headline(self) -> str:
        """One sentence with every count, as the banner, the CLI and the report print it."""
        parts = [f"{self.analysed} unique clips analysed ({self.members} members + {self.nonmembers} non-members)"]
        parts.append(f"from {self.files_seen} file{'s' * (self.files_seen != 1)}")
        extra = []
        if self.duplicate_files:
            extra.append(f"{self.duplicate_files} duplicate cop{'ies' if self.duplicate_files != 1 else 'y'} counted once")
        if self.conflicts:
            extra.append(f"{self.conflicts} label conflict{'s' * (self.conflicts != 1)} ({self.conflict_files} files) excluded")
        if self.rejected:
            extra.append(f"{self.rejected} rejected")
        return " ".join(parts) + (f"; {', '.join(extra)}" if extra else "")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["duplicates"] = self.duplicates.to_dict("records")
        return d


def summarize(name: str, status: str, items: pd.DataFrame, n_rejected: int) -> DatasetSummary:
    """Summary from the ``items`` table (``path, clip_hash, label``) of one dataset."""
    items = items[items["label"].isin([MEMBER, NONMEMBER])]
    n_labels = items.groupby("clip_hash")["label"].nunique()
    conflicted = set(n_labels.index[n_labels > 1])
    clean = items[~items["clip_hash"].isin(conflicted)]
    per_clip = clean.groupby("clip_hash")["label"].first()
    groups = clean.groupby(["clip_hash", "label"])["path"].agg(lambda p: sorted(p))
    dup = groups[groups.map(len) > 1]
    duplicates = pd.DataFrame(
        {"clip_hash": [h for h, _ in dup.index], "label": [lab for _, lab in dup.index],
         "files": [len(p) for p in dup], "paths": list(dup)}
    )
    return DatasetSummary(
        dataset=name,
        status=status,
        files_seen=len(items) + n_rejected,
        stored_files=len(items),
        rejected=n_rejected,
        unique_clips=int(items["clip_hash"].nunique()),
        members=int((per_clip == MEMBER).sum()),
        nonmembers=int((per_clip == NONMEMBER).sum()),
        conflicts=len(conflicted),
        conflict_files=int(items["clip_hash"].isin(conflicted).sum()),
        duplicate_files=int(sum(len(p) - 1 for p in dup)),
        duplicates=duplicates,
    )


def dataset_summary(ws: Workspace, name: str) -> DatasetSummary:
    """The summary of dataset ``name`` of ``ws``."""
    ds_id = ws.dataset_id(name)
    items = ws.query("SELECT path, clip_hash, label FROM items WHERE dataset_id=?", (ds_id,))
    n_rej = int(ws.query("SELECT COUNT(*) AS n FROM rejected WHERE dataset_id=?", (ds_id,))["n"].iloc[0])
    status = ws.query("SELECT status FROM datasets WHERE id=?", (ds_id,))["status"].iloc[0]
    return summarize(name, str(status), items, n_rej)


def workspace_summary(ws: Workspace) -> pd.DataFrame:
    """One row per dataset with the summary's counts (the Home table and ``overheard datasets``)."""
    rows = []
    for name in ws.datasets()["name"]:
        s = dataset_summary(ws, name)
        rows.append({"name": name, "members": s.members, "nonmembers": s.nonmembers, "conflicts": s.conflicts,
                     "duplicate_files": s.duplicate_files, "files": s.files_seen, "rejected": s.rejected, "status": s.status})
    return pd.DataFrame(rows, columns=["name", "members", "nonmembers", "conflicts", "duplicate_files", "files", "rejected", "status"])
