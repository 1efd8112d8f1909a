"""The store's hot writes, compiled once for the dialect and handed to the driver as they are."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect


@dataclass(frozen=True)
class _Compiled:
    """A statement as the driver takes it, and the order of its parameters (None: by name)."""

    sql: str
    positions: tuple[str, ...] | None

    def parameters(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        if self.positions is None:
            return [dict(row) for row in rows]
        if len(self.positions) == 1:
            (name,) = self.positions
            return [(row[name],) for row in rows]
        values = itemgetter(*self.positions)
        return [values(row) for row in rows]


class CompiledStatements:
    """Statements by name, compiled once per dialect and row shape."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def executemany(
        self,
        conn: Connection,
        key: str,
        build: Callable[[], Any],
        rows: Sequence[Mapping[str, Any]],
    ) -> int:
        """Run the statement ``build()`` makes once for every row, straight through the driver;
        returns the rows it changed.

        SQLAlchemy's executemany prepares every row's parameters in Python, which costs more than
        SQLite's own insert: the hot writes are compiled once for the dialect instead, and the
        rows handed to the driver as they are (values are plain Python: str, int, float, bool).
        """
        names = tuple(rows[0])
        compiled = self._compiled.get((key, names))
        if compiled is None:
            statement = build()
            # An INSERT takes its columns from the rows; other statements name their parameters.
            keys = list(names) if statement.is_insert else None
            sql = statement.compile(dialect=self.dialect, column_keys=keys)
            compiled = self._compiled[key, names] = _Compiled(
                sql.string, tuple(sql.positiontup or ()) if sql.positional else None
            )
        return conn.exec_driver_sql(compiled.sql, compiled.parameters(rows)).rowcount
