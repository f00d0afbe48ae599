"""NCRONTAB schedules as the Functions timer trigger reads them: six fields, UTC, `%SETTING%` allowed.

Fields are `second minute hour day month day-of-week`. Each field is `*`, a number, a range
`a-b`, a step over any of those (`*/n`, `a-b/n`, `a/n` meaning `a-max/n`), or a comma list of
them. Months and days of week also take English names (`Jan`, `January`, `Mon`, `Monday`);
day of week 0 and 7 are both Sunday. As in NCrontab, a time matches when every field matches
(day of month and day of week are combined with AND). Five-field (minute-first) expressions are
rejected: the Functions host only accepts six.
"""

from __future__ import annotations

import calendar
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_SETTING = re.compile(r"%([^%\s]+)%")

_MONTHS = [m.lower() for m in calendar.month_name[1:]]
_DAYS = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]

# Search far enough to cover every weekday/leap-year combination (a 28-year cycle) and more.
_SEARCH_YEARS = 30


class ScheduleError(ValueError):
    """A schedule expression is malformed, has the wrong number of fields, or never fires."""


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    names_base: int = 0


_FIELDS = (
    _FieldSpec("second", 0, 59),
    _FieldSpec("minute", 0, 59),
    _FieldSpec("hour", 0, 23),
    _FieldSpec("day", 1, 31),
    _FieldSpec("month", 1, 12, tuple(_MONTHS), 1),
    _FieldSpec("day-of-week", 0, 7, tuple(_DAYS), 0),
)


def resolve_settings(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace every `%NAME%` in `text` with the setting's value; a missing setting raises `ScheduleError`."""
    source = os.environ if environ is None else environ

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in source:
            raise ScheduleError(f"schedule {text!r} refers to setting {name}, which is not set")
        return source[name]

    return _SETTING.sub(lookup, text)


def _parse_value(token: str, spec: _FieldSpec) -> int:
    if token.isdigit():
        value = int(token)
    else:
        lowered = token.lower()
        matches = [i for i, name in enumerate(spec.names) if lowered in (name, name[:3])]
        if not matches:
            allowed = f"a number {spec.low}-{spec.high}"
            if spec.names:
                allowed += " or a name such as " + ", ".join(n[:3].title() for n in spec.names)
            raise ScheduleError(f"{spec.name} field: {token!r} is not {allowed}")
        value = matches[0] + spec.names_base
    if not spec.low <= value <= spec.high:
        raise ScheduleError(f"{spec.name} field: {value} is outside {spec.low}-{spec.high}")
    return value


def _parse_part(part: str, spec: _FieldSpec) -> set[int]:
    base, slash, step_text = part.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or int(step_text) == 0:
            raise ScheduleError(f"{spec.name} field: step in {part!r} must be a positive number")
        step = int(step_text)
    if base == "*":
        low, high = spec.low, spec.high
    elif "-" in base:
        first, _, last = base.partition("-")
        low, high = _parse_value(first, spec), _parse_value(last, spec)
        if low > high:
            raise ScheduleError(f"{spec.name} field: range {part!r} runs backwards")
    else:
        low = _parse_value(base, spec)
        high = spec.high if slash else low
    return set(range(low, high + 1, step))


def _parse_field(text: str, spec: _FieldSpec) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ScheduleError(f"{spec.name} field: empty item in {text!r}")
        values |= _parse_part(part, spec)
    if spec.name == "day-of-week" and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    """A parsed six-field NCRONTAB schedule; `next_after` gives its occurrences in UTC."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]

    @classmethod
    def parse(cls, text: str, environ: Mapping[str, str] | None = None) -> Schedule:
        """Parse `text` (after `%SETTING%` resolution from `environ`, default `os.environ`).

        Guarantees a schedule that fires at least once; anything else raises `ScheduleError`
        with a message naming the expression and the offending field.
        """
        expression = resolve_settings(text, environ).strip()
        tokens = expression.split()
        if len(tokens) != len(_FIELDS):
            hint = " (add a seconds field in front, e.g. '0 ' + it)" if len(tokens) == 5 else ""
            raise ScheduleError(
                f"schedule {expression!r} has {len(tokens)} fields; NCRONTAB needs 6: "
                f"second minute hour day month day-of-week{hint}"
            )
        try:
            fields = [_parse_field(token, spec) for token, spec in zip(tokens, _FIELDS, strict=True)]
        except ScheduleError as exc:
            raise ScheduleError(f"schedule {expression!r}: {exc}") from None
        schedule = cls(expression, *fields)
        if schedule._search(datetime(2000, 1, 1)) is None:
            raise ScheduleError(f"schedule {expression!r} never fires (no date matches its day and month fields)")
        return schedule

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment`, in UTC.

        An aware `moment` is converted to UTC and an aware UTC datetime is returned; a naive
        `moment` is taken as UTC and a naive UTC datetime is returned.
        """
        aware = moment.tzinfo is not None
        naive_utc = moment.astimezone(UTC).replace(tzinfo=None) if aware else moment
        found = self._search(naive_utc)
        if found is None:  # pragma: no cover - parse() guarantees the schedule fires
            raise ScheduleError(f"schedule {self.expression!r} has no occurrence after {moment.isoformat()}")
        return found.replace(tzinfo=UTC) if aware else found

    def _day_matches(self, moment: datetime) -> bool:
        weekday = (moment.weekday() + 1) % 7  # Python: Monday=0; cron: Sunday=0
        return moment.day in self.days and weekday in self.days_of_week

    def _search(self, after: datetime) -> datetime | None:
        t = after.replace(microsecond=0) + timedelta(seconds=1)
        limit = after.year + _SEARCH_YEARS
        while t.year <= limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0, second=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_matches(t):
                t = t.replace(hour=0, minute=0, second=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0, second=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t = t.replace(second=0) + timedelta(minutes=1)
            elif t.second not in self.seconds:
                t += timedelta(seconds=1)
            else:
                return t
        return None

    def __str__(self) -> str:
        return self.expression
