"""The workspace: a content-addressed audio store, an SQLite database and a cache folder.

Layout::

    <root>/overheard.db        datasets, clips, items, rejected files, runs, jobs (WAL mode)
    <root>/audio/ab/<sha256>   original file bytes, named by their sha256
    <root>/cache/              per-clip evidence and features (see core.runtime.cache)
    <root>/runs/<run id>/      a run's per-clip tables, one Parquet file each
    <root>/tmp/                staging for atomic writes

Every file write is atomic (temporary file in the same folder, fsync, rename); every
database change runs in a transaction, so two processes writing at once never corrupt it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS clips (
    hash TEXT PRIMARY KEY, ext TEXT, size_bytes INTEGER, format TEXT, subtype TEXT,
    sample_rate INTEGER, channels INTEGER, frames INTEGER, duration REAL, bit_depth INTEGER,
    created REAL);
CREATE TABLE IF NOT EXISTS datasets (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE NOT NULL, source TEXT,
    status TEXT NOT NULL DEFAULT 'ready', created REAL, meta TEXT DEFAULT '{}');
CREATE TABLE IF NOT EXISTS items (
    dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    path TEXT NOT NULL, clip_hash TEXT NOT NULL REFERENCES clips(hash),
    label TEXT, text TEXT DEFAULT '', speaker TEXT DEFAULT '', source TEXT DEFAULT '', split TEXT DEFAULT '',
    PRIMARY KEY (dataset_id, path));
CREATE INDEX IF NOT EXISTS items_hash ON items(dataset_id, clip_hash);
CREATE TABLE IF NOT EXISTS rejected (
    dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    path TEXT NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (dataset_id, path));
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, dataset TEXT, target TEXT, config TEXT,
    result TEXT, provenance TEXT, created REAL, refs TEXT DEFAULT '{}', tables TEXT DEFAULT '{}');
CREATE INDEX IF NOT EXISTS runs_lookup ON runs(kind, dataset, target, created);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, params TEXT, status TEXT NOT NULL,
    progress INTEGER DEFAULT 0, total INTEGER DEFAULT 0, message TEXT DEFAULT '',
    error TEXT, pid INTEGER, heartbeat REAL, created REAL, started REAL, finished REAL,
    run_id TEXT, cancel INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS job_log (job_id TEXT, ts REAL, line TEXT);
"""

_RUN_COLUMNS = {"refs": "TEXT DEFAULT '{}'", "tables": "TEXT DEFAULT '{}'"}
"""Columns added to ``runs`` after schema version 1 (added in place to older databases)."""

MEMBER, NONMEMBER = "member", "nonmember"

LEGACY_TABLES: dict[tuple[str, str], dict[str, str]] = {
    ("mia", "clips"): {"label": "labels", "score": "scores", "group": "clip_groups", "decoded": "decoded"},
    ("mia", "indicators"): {"*": "table"},
    ("blind", "clips"): {"label": "labels", "score": "scores"},
    ("blind", "group_scores"): {"*": "scores_by_group"},
    ("disentangle", "decoded"): {"*": "decoded"},
    ("di", "clips"): {"side": "", "score": "p_scores|u_scores", "fold": "p_group|u_group", "row": "p_index|u_index"},
}
"""Where a run stored before per-clip tables kept each table's columns in its ``result``:
column -> result key (``"*"``: a mapping column -> values, every column of it). A value
is a mapping clip hash -> value, or a list in ``result["clip_order"]``. A DI run kept its
suspects' and non-members' values apart (``p_...|u_...``, rows in ``p_clips`` then
``u_clips``; ``side`` is ``P`` or ``U``)."""

_LEGACY_REF_SUFFIX = "_run"
"""Runs stored before ``refs`` named a run they used in a ``<stage>_run`` result field."""


@dataclass(frozen=True)
class RunRef:
    """What became of a run another run used.

    Attributes
    ----------
    stage : the stage the referenced run belongs to (``blind``, ``mia``...).
    run_id : the referenced run's id, or None when the run used none.
    run : the referenced run record, or None (none referenced, or deleted since).
    newer : id of a newer run of the same kind, dataset and target, when one exists.
    """

    stage: str
    run_id: str | None
    run: dict | None = None
    newer: str | None = None

    @property
    def status(self) -> str:
        """``none`` (nothing referenced), ``deleted`` (referenced, gone) or ``linked``."""
        if self.run_id is None:
            return "none"
        return "linked" if self.run is not None else "deleted"

    def describe(self) -> str:
        """One sentence for a page or a report."""
        if self.status == "none":
            return f"No {self.stage} run was used"
        if self.status == "deleted":
            return f"The {self.stage} run {self.run_id} this run used has been deleted: its numbers cannot be shown"
        tail = f"; a newer {self.stage} run exists ({self.newer}), which this result has not seen" if self.newer else ""
        return f"Linked {self.stage} run: {self.run_id}{tail}"


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON at ``path``, written atomically (:func:`atomic_write`)."""
    atomic_write(path, json.dumps(obj, indent=2).encode("utf-8"))


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Workspace:
    """One audit workspace on disk. Cheap to construct; connections are per call."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.audio_dir = self.root / "audio"
        self.cache_dir = self.root / "cache"
        self.tmp_dir = self.root / "tmp"
        self.runs_dir = self.root / "runs"
        self.db_path = self.root / "overheard.db"
        for d in (self.root, self.audio_dir, self.cache_dir, self.tmp_dir, self.runs_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._sweep_staging()
        con = sqlite3.connect(self.db_path, timeout=60.0)
        try:
            con.execute("PRAGMA busy_timeout=60000")
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)  # idempotent; runs in its own implicit transaction
            have = {r[1] for r in con.execute("PRAGMA table_info(runs)")}
            for col, decl in _RUN_COLUMNS.items():
                if col not in have:
                    try:
                        con.execute(f"ALTER TABLE runs ADD COLUMN {col} {decl}")
                    except sqlite3.OperationalError as exc:  # another process added it first
                        if "duplicate column" not in str(exc):
                            raise
            con.execute("UPDATE meta SET value=? WHERE key='schema_version' AND CAST(value AS INTEGER) < ?",
                        (str(SCHEMA_VERSION), SCHEMA_VERSION))
            con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            con.commit()
        finally:
            con.close()

    def _sweep_staging(self, older_than_s: float = 600.0) -> None:
        """Remove staging files a killed writer left behind (never read as data)."""
        cutoff = time.time() - older_than_s
        for p in [*self.audio_dir.glob("*/.*.tmp"), *self.runs_dir.glob("*/.*.tmp")]:
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
            except OSError:
                pass

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # -- database ----------------------------------------------------------------------
    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in WAL mode; commits on success, rolls back on error, then closes."""
        con = sqlite3.connect(self.db_path, timeout=60.0, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("PRAGMA foreign_keys=ON")
            con.execute("PRAGMA busy_timeout=60000")
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    def query(self, sql: str, params: tuple = ()) -> pd.DataFrame:
        con = sqlite3.connect(self.db_path, timeout=60.0)
        try:
            con.execute("PRAGMA busy_timeout=60000")
            return pd.read_sql_query(sql, con, params=params)
        finally:
            con.close()

    # -- audio store -------------------------------------------------------------------
    def audio_path(self, clip_hash: str) -> Path:
        return self.audio_dir / clip_hash[:2] / clip_hash

    def put_audio(self, data: bytes) -> str:
        """Store file bytes under their sha256 (idempotent); returns the hash."""
        h = sha256_bytes(data)
        path = self.audio_path(h)
        if not path.exists():
            atomic_write(path, data)
        return h

    def read_audio(self, clip_hash: str) -> bytes:
        return self.audio_path(clip_hash).read_bytes()

    # -- datasets ----------------------------------------------------------------------
    def create_dataset(self, name: str, *, source: str = "", replace: bool = False, meta: dict | None = None) -> int:
        """Create (or with ``replace`` empty and recreate) a dataset; returns its id."""
        with self.connect() as con:
            row = con.execute("SELECT id FROM datasets WHERE name=?", (name,)).fetchone()
            if row is not None:
                if not replace:
                    return int(row[0])
                con.execute("DELETE FROM datasets WHERE id=?", (row[0],))
            cur = con.execute(
                "INSERT INTO datasets(name, source, status, created, meta) VALUES (?,?,?,?,?)",
                (name, source, "ingesting", time.time(), json.dumps(meta or {})),
            )
            return int(cur.lastrowid)

    def set_dataset_status(self, name: str, status: str, meta: dict | None = None) -> None:
        with self.connect() as con:
            if meta is None:
                con.execute("UPDATE datasets SET status=? WHERE name=?", (status, name))
            else:
                con.execute("UPDATE datasets SET status=?, meta=? WHERE name=?", (status, json.dumps(meta), name))

    def dataset_meta(self, name: str) -> dict:
        """What was recorded about a dataset when it was made (``source``, ``ingest``,
        ``languages``: clips per spoken language its manifests name, ...)."""
        self.dataset_id(name)  # KeyError listing the datasets when unknown
        meta = self.query("SELECT meta FROM datasets WHERE name=?", (name,))["meta"].iloc[0]
        return json.loads(meta or "{}")

    def dataset_id(self, name: str) -> int:
        with self.connect() as con:
            row = con.execute("SELECT id FROM datasets WHERE name=?", (name,)).fetchone()
        if row is None:
            known = ", ".join(self.dataset_names()) or "none"
            raise KeyError(f"no dataset named {name!r} in {self.root}; datasets: {known}")
        return int(row[0])

    def dataset_names(self) -> list[str]:
        return self.query("SELECT name FROM datasets ORDER BY name")["name"].tolist()

    def delete_dataset(self, name: str) -> None:
        with self.connect() as con:
            con.execute("DELETE FROM datasets WHERE name=?", (name,))

    def datasets(self) -> pd.DataFrame:
        """One row per dataset with its analysed clips by label (label conflicts excluded,
        as in :meth:`analysis_clips`), stored and rejected files."""
        return self.query(
            """
            SELECT d.name, d.status, d.source, d.created,
              (SELECT COUNT(DISTINCT clip_hash) FROM items i WHERE i.dataset_id=d.id AND i.label='member' AND NOT EXISTS
                 (SELECT 1 FROM items j WHERE j.dataset_id=d.id AND j.clip_hash=i.clip_hash AND j.label!=i.label)) AS members,
              (SELECT COUNT(DISTINCT clip_hash) FROM items i WHERE i.dataset_id=d.id AND i.label='nonmember' AND NOT EXISTS
                 (SELECT 1 FROM items j WHERE j.dataset_id=d.id AND j.clip_hash=i.clip_hash AND j.label!=i.label)) AS nonmembers,
              (SELECT COUNT(*) FROM items i WHERE i.dataset_id=d.id) AS files,
              (SELECT COUNT(*) FROM rejected r WHERE r.dataset_id=d.id) AS rejected
            FROM datasets d ORDER BY d.name
            """
        )

    def add_clip(self, con: sqlite3.Connection, clip_hash: str, ext: str, info: dict) -> None:
        con.execute(
            "INSERT OR IGNORE INTO clips VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (clip_hash, ext, info["size_bytes"], info["format"], info["subtype"], info["sample_rate"],
             info["channels"], info["frames"], info["duration"], info.get("bit_depth", 0), time.time()),
        )

    def items(self, name: str) -> pd.DataFrame:
        """Every ingested file of a dataset joined with its clip metadata."""
        return self.query(
            """SELECT i.path, i.clip_hash, i.label, i.text, i.speaker, i.source, i.split,
                      c.ext, c.size_bytes, c.format, c.subtype, c.sample_rate, c.channels, c.frames,
                      c.duration, c.bit_depth
               FROM items i JOIN clips c ON c.hash=i.clip_hash
               WHERE i.dataset_id=? ORDER BY i.path""",
            (self.dataset_id(name),),
        )

    def rejected(self, name: str) -> pd.DataFrame:
        return self.query("SELECT path, reason FROM rejected WHERE dataset_id=? ORDER BY path", (self.dataset_id(name),))

    def label_conflicts(self, name: str) -> pd.DataFrame:
        """Files whose content appears under both labels (excluded from analyses)."""
        return self.query(
            """SELECT clip_hash, label, path FROM items WHERE dataset_id=? AND clip_hash IN (
                 SELECT clip_hash FROM items WHERE dataset_id=? AND label IN ('member','nonmember')
                 GROUP BY clip_hash HAVING COUNT(DISTINCT label) > 1)
               ORDER BY clip_hash, label, path""",
            (self.dataset_id(name),) * 2,
        )

    def analysis_clips(self, name: str) -> pd.DataFrame:
        """Unique labelled clips for analysis: one row per content hash, label as 0/1.

        Duplicates (same content, same label) count once; label conflicts are excluded.
        Rows are sorted by hash so every analysis sees the same order.
        """
        items = self.items(name)
        items = items[items["label"].isin([MEMBER, NONMEMBER])]
        n_labels = items.groupby("clip_hash")["label"].nunique()
        ok = n_labels.index[n_labels == 1]
        items = items[items["clip_hash"].isin(ok)]
        first = items.sort_values("path").groupby("clip_hash", as_index=False).first()
        first["y"] = (first["label"] == MEMBER).astype(int)
        return first.sort_values("clip_hash").reset_index(drop=True)

    # -- runs ---------------------------------------------------------------------------
    def save_run(self, kind: str, *, dataset: str, target: str | None, config: dict, result: dict, provenance: dict,
                 refs: dict[str, str] | None = None, tables: dict[str, pd.DataFrame] | None = None) -> str:
        """Store a run; returns its id.

        ``refs``: stage -> id of each run this one used (recorded as given, empty when none).
        ``tables``: per-clip tables (one row per clip, indexed by clip hash), each written
        as ``runs/<id>/<name>.parquet`` before the record that names them, so a record never
        names a missing table; read them back with :meth:`run_table`.
        """
        run_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        names = {}
        for name, df in (tables or {}).items():
            path = self._table_path(run_id, name)
            atomic_write(path, _parquet_bytes(df))
            names[name] = path.relative_to(self.root).as_posix()
        with self.connect() as con:
            con.execute(
                "INSERT INTO runs (id, kind, dataset, target, config, result, provenance, created, refs, tables) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (run_id, kind, dataset, target or "", json.dumps(config), json.dumps(result), json.dumps(provenance), time.time(),
                 json.dumps(dict(refs or {})), json.dumps(names)),
            )
        return run_id

    def _table_path(self, run_id: str, name: str) -> Path:
        if not name.replace("_", "").isalnum():
            raise ValueError(f"table name {name!r} must be letters, digits and underscores")
        return self.runs_dir / run_id / f"{name}.parquet"

    def runs(self, kind: str | None = None, dataset: str | None = None, target: str | None = None) -> pd.DataFrame:
        sql, params = "SELECT id, kind, dataset, target, created FROM runs WHERE 1=1", []
        for col, val in (("kind", kind), ("dataset", dataset), ("target", target)):
            if val is not None:
                sql += f" AND {col}=?"
                params.append(val)
        return self.query(sql + " ORDER BY created DESC", tuple(params))

    def load_run(self, run_id: str) -> dict:
        """The run record: id, kind, dataset, target, config, result, provenance, created,
        ``refs`` (stage -> run id; for a run stored before refs, read from its
        ``<stage>_run`` result fields) and ``tables`` (name -> path in the workspace)."""
        df = self.query("SELECT * FROM runs WHERE id=?", (run_id,))
        if df.empty:
            raise KeyError(f"no run {run_id!r}")
        row = df.iloc[0]
        result = json.loads(row["result"])
        refs = json.loads(row["refs"]) if isinstance(row.get("refs"), str) and row["refs"] != "{}" else None
        if refs is None:
            refs = {k[: -len(_LEGACY_REF_SUFFIX)]: v for k, v in result.items()
                    if k.endswith(_LEGACY_REF_SUFFIX) and isinstance(v, str) and v}
        return {
            "id": row["id"], "kind": row["kind"], "dataset": row["dataset"], "target": row["target"],
            "config": json.loads(row["config"]), "result": result,
            "provenance": json.loads(row["provenance"]), "created": float(row["created"]),
            "refs": refs, "tables": json.loads(row["tables"]) if isinstance(row.get("tables"), str) else {},
        }

    def latest_run(self, kind: str, dataset: str, target: str | None = None, *,
                   where: Callable[[dict], bool] | None = None) -> dict | None:
        """The newest run of ``kind`` on ``dataset`` (and ``target``) whose stored config
        satisfies ``where(config)`` (default: any); only that run is loaded."""
        if where is None:
            df = self.runs(kind, dataset, target)
            return self.load_run(df.iloc[0]["id"]) if not df.empty else None
        sql = "SELECT id, config FROM runs WHERE kind=? AND dataset=?" + (" AND target=?" if target is not None else "") + " ORDER BY created DESC"
        for run_id, config in self.query(sql, (kind, dataset) + ((target,) if target is not None else ())).itertuples(index=False):
            if where(json.loads(config or "{}")):
                return self.load_run(run_id)
        return None

    def delete_run(self, run_id: str) -> None:
        """Remove a run and its tables. Runs that used it keep its id and report it deleted."""
        with self.connect() as con:
            con.execute("DELETE FROM runs WHERE id=?", (run_id,))
        folder = self.runs_dir / run_id
        if folder.is_dir():
            for f in folder.iterdir():
                f.unlink(missing_ok=True)
            folder.rmdir()

    def run_ref(self, run: dict, stage: str) -> RunRef:
        """The run that ``run`` used for ``stage`` (from its ``refs``), never a newer one;
        a newer run of the same kind, dataset and target is named beside it."""
        ref = (run.get("refs") or {}).get(stage)
        if not ref:
            return RunRef(stage, None)
        try:
            used = self.load_run(ref)
        except KeyError:
            return RunRef(stage, ref)
        newest = self.runs(used["kind"], used["dataset"], used["target"])
        newer = newest.iloc[0]["id"] if not newest.empty and newest.iloc[0]["id"] != ref else None
        return RunRef(stage, ref, used, newer)

    def run_table(self, run: dict | str, name: str) -> pd.DataFrame:
        """A run's per-clip table ``name`` (index: clip hash, in the run's clip order).

        Read from its Parquet file; for a run stored before per-clip tables, built from
        the result fields listed in :data:`LEGACY_TABLES`.

        Raises
        ------
        KeyError
            when the run has no such table.
        """
        run = self.load_run(run) if isinstance(run, str) else run
        path = (run.get("tables") or {}).get(name)
        if path is not None:
            return pd.read_parquet(self.root / path)
        legacy = LEGACY_TABLES.get((run["kind"], name))
        result = run["result"]
        if legacy is None or not any(k in result for key in legacy.values() for k in key.split("|") if k):
            have = ", ".join(sorted(run.get("tables") or {})) or "none"
            raise KeyError(f"run {run['id']!r} has no table {name!r}; tables: {have}")
        return _legacy_table(result, legacy)


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=True)
    return buf.getvalue()


def _legacy_table(result: dict, columns: dict[str, str]) -> pd.DataFrame:
    """A per-clip table from the JSON fields an older run stored it in."""
    if "side" in columns:
        return _legacy_sides(result, columns)
    order = result.get("clip_order")

    def series(values) -> pd.Series:
        if isinstance(values, dict):
            return pd.Series(values, dtype=object).reindex(order) if order is not None else pd.Series(values, dtype=object)
        if order is None or len(values) != len(order):
            raise ValueError("a per-clip list without a matching clip_order")
        return pd.Series(list(values), index=order, dtype=object)

    cols: dict[str, pd.Series] = {}
    for col, key in columns.items():
        if result.get(key) is None:
            continue
        if col == "*":
            cols.update({str(k): series(v) for k, v in result[key].items()})
        else:
            cols[col] = series(result[key])
    df = pd.DataFrame(cols, index=pd.Index(order if order is not None else next(iter(cols.values())).index, name="clip_hash"))
    return df.infer_objects()


def _legacy_sides(result: dict, columns: dict[str, str]) -> pd.DataFrame:
    """A DI run's per-clip table from its ``p_*`` and ``u_*`` lists (suspects first)."""
    parts = []
    for side in ("p", "u"):
        n = len(result[f"{side}_scores"])
        clips = result.get(f"{side}_clips") or [None] * n
        part = {"side": [side.upper()] * n}
        for col, keys in columns.items():
            key = {k[0]: k for k in keys.split("|")}.get(side) if keys else None
            if key is not None and result.get(key) is not None:
                part[col] = list(result[key])
        parts.append(pd.DataFrame(part, index=pd.Index(clips, name="clip_hash")))
    return pd.concat(parts).infer_objects()
