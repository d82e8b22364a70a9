"""Calls for the database process tests, in a module the child process can import
(test modules are imported under other names by pytest)."""

from __future__ import annotations

import time
from typing import Any


def create_table(cursor: Any) -> None:
    cursor.execute("CREATE TABLE t (x INTEGER)")


def insert(cursor: Any, value: int) -> int:
    cursor.execute("INSERT INTO t (x) VALUES (?)", (value,))
    return value


def insert_then_fail(cursor: Any, value: int) -> None:
    cursor.execute("INSERT INTO t (x) VALUES (?)", (value,))
    raise ValueError(f"no {value}")


def values(cursor: Any) -> list[int]:
    cursor.execute("SELECT x FROM t ORDER BY rowid")
    return [row[0] for row in cursor.fetchall()]


def unpicklable_result(cursor: Any) -> Any:
    return lambda: None


def journal_mode(connection: Any) -> str:
    return str(connection.execute("PRAGMA journal_mode").fetchone()[0])


def slow(cursor: Any, seconds: float) -> float:
    time.sleep(seconds)
    return seconds
