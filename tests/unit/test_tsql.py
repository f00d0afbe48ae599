"""Every T-SQL statement and migration of the Azure SQL backend parses in SQL Server's dialect."""

from __future__ import annotations

import dataclasses

import pytest
import sqlglot

from shared.store.mssql_schema import MIGRATIONS, STATEMENTS
from shared.store.sqlite import MIGRATIONS as SQLITE_MIGRATIONS

STATEMENT_CASES = [(f.name, getattr(STATEMENTS, f.name)) for f in dataclasses.fields(STATEMENTS)]
MIGRATION_CASES = [(f"v{m.version}-{i}", sql) for m in MIGRATIONS for i, sql in enumerate(m.statements)]


@pytest.mark.parametrize(("name", "sql"), STATEMENT_CASES, ids=[c[0] for c in STATEMENT_CASES])
def test_statement_parses_as_tsql(name, sql):
    expressions = sqlglot.parse(sql.replace("{params}", "?, ?"), read="tsql", error_level=sqlglot.ErrorLevel.RAISE)
    assert expressions and all(e is not None for e in expressions)


@pytest.mark.parametrize(("name", "sql"), MIGRATION_CASES, ids=[c[0] for c in MIGRATION_CASES])
def test_migration_parses_as_tsql(name, sql):
    assert sqlglot.parse(sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE)


def test_both_backends_have_the_same_migration_versions():
    assert [m.version for m in MIGRATIONS] == [m.version for m in SQLITE_MIGRATIONS]


def test_no_sqlite_only_syntax_is_left_in_the_tsql():
    for name, sql in STATEMENT_CASES + MIGRATION_CASES:
        for sqlite_only in (" LIMIT ", "ON CONFLICT", "excluded.", "substr(", "AUTOINCREMENT", " || "):
            assert sqlite_only not in sql, f"{name} still uses {sqlite_only.strip()}"


def test_reserved_words_are_bracketed():
    assert "[key]" in STATEMENTS.get_state and "[key]" in STATEMENTS.put_state
    assert "[trigger]" in STATEMENTS.insert_poll_run


def test_placeholders_match_between_backends():
    from shared.store.sqlite import STATEMENTS as SQLITE

    for field in dataclasses.fields(STATEMENTS):
        ours, theirs = getattr(STATEMENTS, field.name), getattr(SQLITE, field.name)
        assert ours.count("?") == theirs.count("?"), f"{field.name}: parameter count differs"
