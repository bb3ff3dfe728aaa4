"""Embedded DataHub: DataHub Lite on a local SQLite or DuckDB file (the default backend).

The file is DataHub's own format, so `datahub lite ls / get / serve` show what the pipeline wrote.
Lite has no relationship index we can query, so `incoming` runs an exact SQL filter on the aspect
JSON (Lite's `SearchFlavor.EXACT`) and confirms each hit on the typed aspect.

Locking: DuckDB lets one process at a time open a file (even `datahub lite ls` fails until we
close); SQLite (in WAL mode) lets readers in and makes a second writer wait up to `lock_timeout_s`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from datahub.emitter.mcp import MetadataChangeProposalWrapper
from datahub.lite.lite_local import SearchFlavor
from datahub.lite.lite_util import get_datahub_lite

from catalog.errors import CatalogError

ENGINES = ("sqlite", "duckdb")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_DUCKDB_MAGIC = b"DUCK"  # at byte offset 8

# relationship -> (aspect holding it, how to read the targets out of the typed aspect)
_EDGES: dict[str, tuple[str, Callable[[object], list[str]]]] = {
    "TaggedWith": ("globalTags", lambda a: [t.tag for t in a.tags]),  # type: ignore[attr-defined]
    "MemberOf": ("mlModelProperties", lambda a: list(a.groups or [])),  # type: ignore[attr-defined]
}


def sniff_engine(path: Path) -> str | None:
    """Which engine wrote this file, from its header; None for a new or empty file."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with path.open("rb") as fh:
        head = fh.read(16)
    if head.startswith(_SQLITE_MAGIC):
        return "sqlite"
    if head[8:12] == _DUCKDB_MAGIC:
        return "duckdb"
    return "unknown"


class LiteStore:
    def __init__(self, file: Path, engine: str = "sqlite", lock_timeout_s: float = 5.0) -> None:
        if engine not in ENGINES:
            raise CatalogError(f"catalog engine {engine!r} is not one of {ENGINES}; set catalog.engine")
        self.file = Path(file)
        self.engine = engine
        self.where = f"DataHub Lite {engine} file {self.file}"
        self._lock_timeout_s = lock_timeout_s
        self._check_header()
        self.file.parent.mkdir(parents=True, exist_ok=True)
        options: dict[str, object] = (
            # WAL + synchronous=NORMAL: ~10x faster writes than SQLite's defaults (Lite commits per
            # edge), readers never block the writer, and a crash can lose the last commit but
            # never corrupt the file. Not for network file systems.
            {"busy_timeout": int(lock_timeout_s * 1000), "journal_mode": "WAL", "synchronous": "NORMAL"}
            if engine == "sqlite"
            # DuckDB would otherwise try to download an extension when handed a foreign file.
            else {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        )
        with self._translated(None):
            self._lite = get_datahub_lite({"type": engine, "config": {"file": str(self.file), "options": options}})

    def _check_header(self) -> None:
        found = sniff_engine(self.file)
        if found in (None, self.engine):
            return
        if found in ENGINES:
            raise CatalogError(
                f"the catalog file {self.file} is a DataHub Lite {found} file but the catalog engine is "
                f"{self.engine}; set HYPERNET_CATALOG__ENGINE={found} (or catalog.engine) to open it"
            )
        raise CatalogError(self._corrupt_message("the file header is neither SQLite nor DuckDB"))

    def _corrupt_message(self, detail: str) -> str:
        return (
            f"the catalog file {self.file} is not a readable DataHub Lite {self.engine} database ({detail}); "
            "it was left untouched. Restore it from a backup, or point HYPERNET_CATALOG__FILE at a new file "
            "and register the datasets again"
        )

    @contextlib.contextmanager
    def _translated(self, dataset: str | None) -> Iterator[None]:
        """Turn engine errors about locks and damaged files into CatalogErrors that say what to do."""
        subject = f"dataset {dataset!r}: " if dataset else ""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise CatalogError(subject + self._locked_message(str(exc))) from exc
            raise CatalogError(subject + self._corrupt_message(str(exc))) from exc
        except sqlite3.DatabaseError as exc:
            raise CatalogError(subject + self._corrupt_message(str(exc))) from exc
        except Exception as exc:
            if type(exc).__module__.split(".")[0] not in ("duckdb", "_duckdb"):
                raise
            detail = str(exc).splitlines()[0]
            if "lock" in detail.lower():
                raise CatalogError(subject + self._locked_message(detail)) from exc
            if type(exc).__name__ in ("IOException", "SerializationException") or "corrupt" in detail.lower():
                raise CatalogError(subject + self._corrupt_message(detail)) from exc
            raise

    def _locked_message(self, detail: str) -> str:
        waited = f" (waited {self._lock_timeout_s:g} s)" if self.engine == "sqlite" else ""
        return (
            f"the catalog file {self.file} is locked by another process{waited}: {detail}. "
            "Nothing was written. Let the other `hypernet` or `datahub lite` process finish (or stop it) "
            "and retry; DuckDB files admit one process at a time"
        )

    def emit(self, mcps: Sequence[MetadataChangeProposalWrapper], dataset: str | None = None) -> None:
        with self._translated(dataset):
            for mcp in mcps:
                self._lite.write(mcp)

    def aspects(self, urn: str, names: Sequence[str], dataset: str | None = None) -> dict[str, object]:
        with self._translated(dataset):
            found = self._lite.get(urn, aspects=list(names), typed=True) or {}
        return {k: v for k, v in found.items() if k != "urn"}

    def incoming(self, urn: str, relationship: str) -> list[str]:
        aspect_name, targets = _EDGES[relationship]
        quoted = urn.replace("'", "''")
        where = f"aspect_name = '{aspect_name}' AND metadata LIKE '%\"{quoted}\"%'"
        with self._translated(None):
            hits = sorted({hit.id for hit in self._lite.search(where, SearchFlavor.EXACT, snippet=False)})
        return [h for h in hits if urn in targets(self.aspects(h, [aspect_name]).get(aspect_name))]

    def close(self) -> None:
        """Closing a writable Lite rebuilds its browse index, which `datahub lite ls` reads."""
        try:
            with self._translated(None):
                self._lite.close()
        except CatalogError:
            # The index rebuild failed (e.g. locked): still release the file, or DuckDB keeps it locked.
            self._lite._close_connection()  # type: ignore[attr-defined]  # DataHub Lite's own, private
            raise
