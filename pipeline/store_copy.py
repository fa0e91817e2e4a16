"""Move a project between store backends (``qcode store copy SRC DEST``), verified row for row.

Every table is copied whole, ids included, in insertion order, in one transaction on the
destination; then each table is read back from both sides and compared as a multiset of rows
(a digest per row), so a copy that lost, duplicated or changed one value is reported, not
trusted. The destination must be empty: a copy never merges into or overwrites a project.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from pipeline.store import SCHEMA_VERSION, Store, StoreError

# Tables others refer to come first (foreign keys).
FIRST = ("codebooks", "runs", "accounts")


@dataclass
class CopyReport:
    tables: dict[str, int] = field(default_factory=dict)  # rows copied and verified per table

    def summary(self) -> str:
        rows = sum(self.tables.values())
        listed = ", ".join(f"{t} {n}" for t, n in self.tables.items())
        return f"Copied and verified {rows} rows row for row ({listed})."


def tables(store: Store) -> list[str]:
    """The store's own tables, those referred to first."""
    if store.backend == "sqlite":
        names = [
            r[0]
            for r in store.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
    else:
        names = [
            r[0]
            for r in store.db.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
                " AND table_name != 'qcode_schema'"
            )
        ]
    return [t for t in FIRST if t in names] + sorted(t for t in names if t not in FIRST)


def _rows(store: Store, table: str) -> tuple[list[str], list[tuple]]:
    cursor = store.db.execute(f'SELECT * FROM "{table}" ORDER BY rowid')
    columns = [c[0] if isinstance(c, tuple) else c.name for c in cursor.description]
    return columns, [tuple(r) for r in cursor.fetchall()]


def _digests(store: Store, table: str, columns: list[str]) -> list[str]:
    cursor = store.db.execute(f"SELECT {', '.join(_q(c) for c in columns)} FROM {_q(table)}")
    return sorted(_digest(r) for r in cursor.fetchall())


def _digest(row: tuple) -> str:
    plain = [v.hex() if isinstance(v, bytes | memoryview) else v for v in row]
    plain = [bytes(v).hex() if isinstance(v, memoryview) else v for v in plain]
    return hashlib.sha256(json.dumps(plain, default=str).encode()).hexdigest()


def _q(name: str) -> str:
    return f'"{name}"'


def copy_store(source: Store, destination: Store) -> CopyReport:
    """Copy every row of ``source`` into the empty ``destination`` and verify it."""
    if source.schema_version != SCHEMA_VERSION or destination.schema_version != SCHEMA_VERSION:
        raise StoreError("both projects must be opened (and so upgraded) by this qcode first")
    names = tables(source)
    missing = sorted(set(names) - set(tables(destination)))
    if missing:
        raise StoreError(f"the destination has no table {missing[0]}", destination.path)
    for table in names:
        if destination.db.execute(f"SELECT 1 FROM {_q(table)} LIMIT 1").fetchone():
            raise StoreError(
                f"the destination already holds a project (table {table} has rows): copy into "
                "a new, empty database or file",
                destination.path,
            )
    report = CopyReport()
    with destination.write() as db:
        for table in names:
            columns, rows = _rows(source, table)
            if rows:
                db.executemany(
                    f"INSERT INTO {_q(table)} ({', '.join(_q(c) for c in columns)})"
                    f" VALUES ({', '.join('?' * len(columns))})",
                    rows,
                )
            report.tables[table] = len(rows)
        if destination.backend == "postgresql":
            for table in names:
                serial = destination.db.serial_column(table)
                if serial:
                    db.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', '{serial}'),"
                        f" COALESCE((SELECT MAX({_q(serial)}) FROM {_q(table)}), 0) + 1, false)"
                    )
    for table in names:
        columns, _ = _rows(source, table)
        if _digests(source, table, columns) != _digests(destination, table, columns):
            raise StoreError(
                f"the copy of table {table} differs from the original row for row: do not use "
                "the destination; report this as a bug",
                destination.path,
            )
    return report
