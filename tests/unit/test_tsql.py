"""Every statement the stores run parses in SQL Server's dialect, and the two dialects agree on parameters."""

from __future__ import annotations

import re
from types import ModuleType

import pytest
import sqlglot

from shared.store import audit, coordination, database, failed_events, leads, mssql, outbox, stats
from shared.store.backend import Sql
from shared.store.schema import migrations

MODULES: tuple[ModuleType, ...] = (audit, coordination, database, failed_events, leads, mssql, outbox, stats)
_STATEMENT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|IF|DECLARE|ALTER|EXEC)\b", re.IGNORECASE)


def statements() -> list[tuple[str, str, str]]:
    """(name, SQLite text, T-SQL text) of every module-level statement in the store."""
    found = []
    for module in MODULES:
        for name, value in vars(module).items():
            if isinstance(value, Sql):
                found.append((f"{module.__name__}.{name}", value.text, value.for_dialect("mssql")))
            elif isinstance(value, str) and _STATEMENT.match(value):
                found.append((f"{module.__name__}.{name}", value, value))
            elif isinstance(value, tuple) and value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
                for index, (_, sql) in enumerate(value):
                    if isinstance(sql, str) and _STATEMENT.match(sql):
                        found.append((f"{module.__name__}.{name}[{index}]", sql, sql))
    return found


CASES = statements()


def test_the_collection_found_the_stores_statements():
    names = {name for name, _, _ in CASES}
    assert {"shared.store.leads.INSERT_LEAD", "shared.store.outbox.CLAIM", "shared.store.mssql.MIGRATION_LOCK"} <= names
    assert len(CASES) > 60


@pytest.mark.parametrize(("name", "sqlite", "tsql"), CASES, ids=[c[0] for c in CASES])
def test_statement_parses_as_tsql(name, sqlite, tsql):
    expressions = sqlglot.parse(tsql.replace("{params}", "?, ?"), read="tsql", error_level=sqlglot.ErrorLevel.RAISE)
    assert expressions and all(e is not None for e in expressions)


@pytest.mark.parametrize(("name", "sqlite", "tsql"), CASES, ids=[c[0] for c in CASES])
def test_no_sqlite_only_syntax_is_left_in_the_tsql(name, sqlite, tsql):
    for sqlite_only in (" LIMIT ", "ON CONFLICT", "excluded.", "substr(", "AUTOINCREMENT", " || ", "IF NOT EXISTS"):
        assert sqlite_only not in tsql, f"{name} still uses {sqlite_only.strip()}"


@pytest.mark.parametrize(("name", "sqlite", "tsql"), CASES, ids=[c[0] for c in CASES])
def test_both_dialects_take_the_same_parameters(name, sqlite, tsql):
    if name.endswith(("MIGRATION_LOCK", "ENSURE_VERSIONS")):
        return  # no parameters; engine-specific by nature
    assert sqlite.count("?") == tsql.count("?")


@pytest.mark.parametrize(("name", "sqlite", "tsql"), CASES, ids=[c[0] for c in CASES])
def test_reserved_words_are_quoted(name, sqlite, tsql):
    for word in ("key", "trigger"):
        bare = re.search(rf"(?<![\"\[\w]){word}(?![\"\]\w])", tsql)
        assert bare is None, f'{name}: `{word}` must be quoted as "{word}"'


@pytest.mark.parametrize("dialect", ["mssql"])
def test_every_migration_statement_parses_as_tsql(dialect):
    for migration in migrations(dialect):
        for sql in migration.statements:
            assert sqlglot.parse(sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE), sql
