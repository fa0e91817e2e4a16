"""The PostgreSQL side of the project store: one dialect layer under ``pipeline.store``.

The store's SQL is written once, for SQLite; this module translates it for PostgreSQL
(psycopg 3) so both backends share one schema and one numbered migration history:

* ``?`` placeholders become ``%s``; ``rowid`` becomes ``ctid`` (rows of ``runs`` are never
  updated, so their physical order is their insertion order);
* ``INSERT OR IGNORE`` / ``INSERT OR REPLACE`` become ``ON CONFLICT DO NOTHING`` /
  ``ON CONFLICT (primary key) DO UPDATE``, the key and columns read from the catalogue;
* an insert into a table with an ``AUTOINCREMENT`` id gets ``RETURNING id`` so ``lastrowid``
  works as in sqlite3;
* in migrations, ``INTEGER PRIMARY KEY AUTOINCREMENT`` becomes ``BIGSERIAL``, ``REAL`` becomes
  ``DOUBLE PRECISION``, ``BLOB`` becomes ``BYTEA``, and SQLite's ``RAISE(ABORT, ...)`` triggers
  become row triggers calling one function that raises the same message;
* ``PRAGMA user_version`` is a one-row table ``qcode_schema``; ``BEGIN IMMEDIATE`` is a
  transaction that first takes one advisory lock, so writers queue as they do on SQLite;
  decisions lock only their units, so reviewers do not wait for a run being recorded.
"""

from __future__ import annotations

import atexit
import re
import threading
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

WRITE_LOCK = 7_268_261  # the advisory lock every write transaction takes first
UNIT_LOCKS = 7_268  # ...or, for decisions, (UNIT_LOCKS, hash of the unit id) per unit
SCHEMES = ("postgresql://", "postgres://")

REFUSE_FUNCTION = """
CREATE OR REPLACE FUNCTION qcode_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0];
END;
$$
"""


def is_url(location: object) -> bool:
    """True when a ``--store`` value names a PostgreSQL database rather than a file."""
    return str(location).startswith(SCHEMES)


def shown(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def connect(url: str, pooled: bool = False) -> PgConnection:
    """A connection to the store's database; ``pooled``: borrowed from this process's pool
    for ``url`` (the review page opens a store per request), given back on ``close``."""
    import psycopg

    if not pooled:
        return PgConnection(psycopg.connect(url, autocommit=True, connect_timeout=30))
    pool = _pool(url)
    return PgConnection(pool.getconn(timeout=30), pool)


POOL_SIZE = 10  # connections per process and database, at most; idle ones close after 10 min
_pools: dict[str, Any] = {}
_pools_lock = threading.Lock()


def _pool(url: str) -> Any:
    """The process's connection pool for ``url``, opened on first use, closed at exit."""
    from psycopg_pool import ConnectionPool

    with _pools_lock:
        pool = _pools.get(url)
        if pool is None:
            pool = ConnectionPool(
                url,
                min_size=1,
                max_size=POOL_SIZE,
                kwargs={"autocommit": True, "connect_timeout": 30},
                check=ConnectionPool.check_connection,  # a restarted server: reconnect, no error
                name="qcode-store",
                open=True,
            )
            _pools[url] = pool
            atexit.register(pool.close)
    return pool


class PgCursor:
    """The parts of ``sqlite3.Cursor`` the store uses."""

    def __init__(self, cursor: Any, lastrowid: int | None = None):
        self.cursor = cursor
        self.lastrowid = lastrowid
        self.description = cursor.description

    def fetchone(self) -> tuple | None:
        return self.cursor.fetchone() if self.cursor.description else None

    def fetchall(self) -> list[tuple]:
        return self.cursor.fetchall() if self.cursor.description else []

    def fetchmany(self, size: int) -> list[tuple]:
        return self.cursor.fetchmany(size) if self.cursor.description else []

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.fetchall())


class PgConnection:
    """A psycopg connection that answers the store's SQLite SQL (see the module docstring)."""

    def __init__(self, connection: Any, pool: Any = None):
        self.connection = connection
        self.pool = pool
        self._columns: dict[str, list[str]] = {}
        self._keys: dict[str, list[str]] = {}
        self._serial: dict[str, str | None] = {}

    def execute(self, sql: str, params: Iterable[Any] = ()) -> PgCursor:
        statement, returning = self.translate(sql)
        cursor = self.connection.execute(statement, _values(params))
        lastrowid = None
        if returning and cursor.description:
            row = cursor.fetchone()  # none for an INSERT ... SELECT of no rows
            lastrowid = int(row[0]) if row else None
        return PgCursor(cursor, lastrowid)

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        statement, _ = self.translate(sql, many=True)
        with self.connection.cursor() as cursor:
            cursor.executemany(statement, (_values(r) for r in rows))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.putconn(self.connection)  # rolled back and checked by the pool
        else:
            self.connection.close()

    # -- translation ------------------------------------------------------------------------------

    def translate(self, sql: str, many: bool = False) -> tuple[str, bool]:
        """(PostgreSQL statement, whether it returns the new row's id)."""
        text = sql.strip()
        if text.upper() == "BEGIN IMMEDIATE":
            return "BEGIN", False
        text = text.replace("%", "%%").replace("?", "%s")
        text = re.sub(r"\browid\b", "ctid", text)
        upsert = re.match(
            r"INSERT OR (IGNORE|REPLACE) INTO (\w+)\s*(\(([^)]*)\))?", text, re.IGNORECASE
        )
        if upsert:
            table = upsert[2]
            text = f"INSERT INTO {table} {upsert[3] or ''}{text[upsert.end() :]}"
            if upsert[1].upper() == "IGNORE":
                text += " ON CONFLICT DO NOTHING"
            else:
                columns = (
                    [c.strip().strip('"') for c in upsert[4].split(",")]
                    if upsert[4]
                    else self.columns(table)
                )
                keys = self.primary_key(table)
                updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in columns if c not in keys)
                text += f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
            return text, False
        insert = re.match(r"INSERT INTO (\w+)", text, re.IGNORECASE)
        if insert and not many and "RETURNING" not in text.upper():
            serial = self.serial_column(insert[1])
            if serial:
                return f'{text} RETURNING "{serial}"', True
        return text, False

    def columns(self, table: str) -> list[str]:
        if table not in self._columns:
            self._columns[table] = [
                r[0]
                for r in self.connection.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_schema = current_schema() AND table_name = %s"
                    " ORDER BY ordinal_position",
                    (table,),
                )
            ]
        return self._columns[table]

    def primary_key(self, table: str) -> list[str]:
        if table not in self._keys:
            self._keys[table] = [
                r[0]
                for r in self.connection.execute(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
                    " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                    " WHERE i.indrelid = %s::regclass AND i.indisprimary",
                    (table,),
                )
            ]
        return self._keys[table]

    def serial_column(self, table: str) -> str | None:
        if table not in self._serial:
            row = self.connection.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = %s"
                " AND column_default LIKE 'nextval(%%'",
                (table,),
            ).fetchone()
            self._serial[table] = row[0] if row else None
        return self._serial[table]

    def forget_catalogue(self) -> None:
        """After a migration: tables and columns may have changed."""
        self._columns.clear()
        self._keys.clear()
        self._serial.clear()

    # -- schema version and the write lock --------------------------------------------------------

    def schema_version(self) -> int:
        exists = self.connection.execute("SELECT to_regclass('qcode_schema')").fetchone()[0]
        if exists is None:
            return 0
        row = self.connection.execute("SELECT version FROM qcode_schema").fetchone()
        return int(row[0]) if row else 0

    def set_schema_version(self, version: int) -> None:
        self.connection.execute("CREATE TABLE IF NOT EXISTS qcode_schema (version INTEGER)")
        self.connection.execute("DELETE FROM qcode_schema")
        self.connection.execute("INSERT INTO qcode_schema VALUES (%s)", (version,))

    def lock_for_writing(self, units: list[str] | None = None) -> None:
        """The whole-store lock, or (decisions) one lock per unit, taken in sorted order so two
        writers never wait on each other in a circle."""
        if units is None:
            self.connection.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            return
        for unit in sorted(units):
            self.connection.execute(
                "SELECT pg_advisory_xact_lock(%s::int, hashtext(%s))", (UNIT_LOCKS, unit)
            )


def _values(params: Iterable[Any]) -> tuple:
    """SQLite stores True as 1 in an INTEGER column; PostgreSQL refuses a boolean there."""
    return tuple(int(v) if isinstance(v, bool) else v for v in params)


def migration_statements(statement: str) -> list[str]:
    """One SQLite migration statement as PostgreSQL statements."""
    trigger = re.match(
        r"CREATE TRIGGER (\w+) (BEFORE|AFTER) (UPDATE|DELETE|INSERT) ON (\w+)\s+"
        r"BEGIN SELECT RAISE\(ABORT, '([^']*)'\); END;?$",
        statement.strip(),
        re.IGNORECASE | re.DOTALL,
    )
    if trigger:
        name, when, event, table, message = trigger.groups()
        return [
            REFUSE_FUNCTION,
            f"CREATE TRIGGER {name} {when} {event} ON {table} FOR EACH ROW"
            f" EXECUTE FUNCTION qcode_refuse('{message}')",
        ]
    rename = re.match(r"ALTER TABLE \w+ RENAME TO (\w+);?$", statement.strip(), re.IGNORECASE)
    if rename:
        # A table copied whole (SQLite cannot widen a CHECK in place) keeps its ids, but its
        # BIGSERIAL sequence starts at 1: move it past the largest id, as SQLite's does.
        return [statement.strip().rstrip(";"), _serial_past_max(rename[1])]
    text = re.sub(
        r"INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY", statement, flags=re.I
    )
    text = re.sub(r"\bREAL\b", "DOUBLE PRECISION", text)
    text = re.sub(r"\bBLOB\b", "BYTEA", text)
    return [text.rstrip().rstrip(";")]


def _serial_past_max(table: str) -> str:
    """A block that sets each serial column's sequence of ``table`` past its largest value."""
    return f"""
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT attname FROM pg_attribute
        WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped
        AND pg_get_serial_sequence('{table}', attname) IS NOT NULL
    LOOP
        EXECUTE 'SELECT setval(pg_get_serial_sequence(' || quote_literal('{table}') || ', '
            || quote_literal(r.attname) || '), COALESCE((SELECT MAX(' || quote_ident(r.attname)
            || ') FROM {table}), 0) + 1, false)';
    END LOOP;
END $$
"""
