"""Route templates as the Functions host (ASP.NET Core routing) reads them.

A template is `/`-separated segments of literal text and parameters: `{name}`, optional
`{name?}` (trailing segments only), defaults `{name=value}`, catch-all `{*rest}`, and inline
constraints `{id:int}`, `{id:int:min(1)}`, `{code:regex(^[a-z]+$)}`, ... Literals match case-
insensitively. Known constraints are checked (`int`, `long`, `bool`, `alpha`, `guid`, `decimal`,
`double`, `float`, `datetime`, `min`, `max`, `range`, `length`, `minlength`, `maxlength`,
`regex`); unknown ones are accepted, so a route never fails to load here that loads in Azure.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

_NUMBER = re.compile(r"^-?\d+$")
_ALPHA = re.compile(r"^[A-Za-z]+$")


class RouteError(ValueError):
    """A route template cannot be parsed."""


@dataclass(frozen=True)
class _Parameter:
    name: str
    optional: bool
    catch_all: bool
    default: str | None
    checks: tuple[Callable[[str], bool], ...]

    def accepts(self, value: str) -> bool:
        return all(check(value) for check in self.checks)


def _parses(convert: Callable[[str], object]) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        try:
            convert(value)
        except ValueError:
            return False
        return True

    return check


def _int_args(args: str, count: int, constraint: str) -> list[int]:
    parts = [p.strip() for p in args.split(",")] if args else []
    if len(parts) not in ((count,) if count else (1, 2)) or not all(_NUMBER.match(p) for p in parts):
        raise RouteError(f"constraint {constraint!r} has bad arguments")
    return [int(p) for p in parts]


def _constraint(text: str) -> Callable[[str], bool] | None:
    name, paren, rest = text.partition("(")
    args = rest[:-1] if paren and rest.endswith(")") else ""
    kind = name.strip().lower()
    if kind in ("int", "long"):
        return lambda v: bool(_NUMBER.match(v))
    if kind == "bool":
        return lambda v: v.lower() in ("true", "false")
    if kind == "alpha":
        return lambda v: bool(_ALPHA.match(v))
    if kind == "guid":
        return _parses(uuid.UUID)
    if kind in ("decimal", "double", "float"):
        return _parses(float)
    if kind == "datetime":
        return _parses(datetime.fromisoformat)
    if kind == "regex":
        pattern = re.compile(args, re.IGNORECASE)
        return lambda v: pattern.search(v) is not None
    if kind in ("min", "max"):
        (bound,) = _int_args(args, 1, text)
        if kind == "min":
            return lambda v: bool(_NUMBER.match(v)) and int(v) >= bound
        return lambda v: bool(_NUMBER.match(v)) and int(v) <= bound
    if kind == "range":
        low, high = _int_args(args, 2, text)
        return lambda v: bool(_NUMBER.match(v)) and low <= int(v) <= high
    if kind in ("minlength", "maxlength"):
        (size,) = _int_args(args, 1, text)
        return (lambda v: len(v) >= size) if kind == "minlength" else (lambda v: len(v) <= size)
    if kind == "length":
        sizes = _int_args(args, 0, text)
        low, high = (sizes[0], sizes[0]) if len(sizes) == 1 else (sizes[0], sizes[1])
        return lambda v: low <= len(v) <= high
    return None


def _split_top_level(text: str, separator: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == separator and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _parse_parameter(body: str, template: str) -> _Parameter:
    catch_all = body.startswith("*")
    body = body.lstrip("*")
    optional = body.endswith("?")
    body = body.removesuffix("?")
    default: str | None = None
    pieces = _split_top_level(body, ":")
    name, *constraints = pieces
    if constraints and "=" in constraints[-1] and ")" not in constraints[-1].partition("=")[2]:
        constraints[-1], _, default = constraints[-1].partition("=")
    elif "=" in name:
        name, _, default = name.partition("=")
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-.]*", name):
        raise RouteError(f"route {template!r}: bad parameter name {name!r}")
    checks = tuple(c for c in (_constraint(text) for text in constraints) if c is not None)
    return _Parameter(name, optional or catch_all or default is not None, catch_all, default, checks)


def _segment_tokens(segment: str, template: str) -> list[tuple[bool, str]]:
    """Literal text and `{parameter}` bodies of one segment; `{{` and `}}` are escaped braces."""
    tokens: list[tuple[bool, str]] = []
    literal, i = "", 0
    while i < len(segment):
        if segment.startswith(("{{", "}}"), i):
            literal, i = literal + segment[i], i + 2
        elif segment[i] == "}":
            raise RouteError(f"route {template!r}: unbalanced braces in {segment!r}")
        elif segment[i] == "{":
            body, i = "", i + 1
            while i < len(segment) and (segment[i] != "}" or segment.startswith("}}", i)):
                if segment.startswith(("{{", "}}"), i):
                    body, i = body + segment[i], i + 2
                elif segment[i] == "{":
                    raise RouteError(f"route {template!r}: unbalanced braces in {segment!r}")
                else:
                    body, i = body + segment[i], i + 1
            if i >= len(segment) or not body:
                raise RouteError(f"route {template!r}: unbalanced braces in {segment!r}")
            if literal:
                tokens.append((False, literal))
                literal = ""
            tokens.append((True, body))
            i += 1
        else:
            literal, i = literal + segment[i], i + 1
    if literal:
        tokens.append((False, literal))
    return tokens


class RouteTemplate:
    """A parsed route template; `match(path)` gives the route parameters or `None`."""

    def __init__(self, template: str) -> None:
        self.template = template
        self._parameters: dict[str, _Parameter] = {}
        self._groups: dict[str, str] = {}
        self.precedence: tuple[int, ...] = ()
        self._regex = re.compile(self._build(template.strip("/")), re.IGNORECASE | re.DOTALL)

    def _param_group(self, body: str) -> tuple[str, _Parameter]:
        parameter = _parse_parameter(body, self.template)
        if parameter.name.lower() in (n.lower() for n in self._parameters):
            raise RouteError(f"route {self.template!r}: parameter {parameter.name!r} appears twice")
        group = f"p{len(self._parameters)}"
        self._parameters[parameter.name] = parameter
        self._groups[group] = parameter.name
        return group, parameter

    def _build(self, template: str) -> str:
        if not template:
            return "^$"
        pattern, ranks = "^", []
        segments = template.split("/")
        for index, segment in enumerate(segments):
            separator = "/" if index else ""
            tokens = _segment_tokens(segment, self.template)
            if len(tokens) == 1 and tokens[0][0]:
                group, parameter = self._param_group(tokens[0][1])
                if parameter.catch_all:
                    if index != len(segments) - 1:
                        raise RouteError(f"route {self.template!r}: a catch-all parameter must be last")
                    pattern += f"(?:{separator}(?P<{group}>.*))?"
                    ranks.append(4)
                elif parameter.optional:
                    pattern += f"(?:{separator}(?P<{group}>[^/]+))?"
                    ranks.append(3)
                else:
                    pattern += f"{separator}(?P<{group}>[^/]+)"
                    ranks.append(1 if parameter.checks else 2)
                continue
            pattern += separator
            for is_parameter, text in tokens:
                if is_parameter:
                    group, _ = self._param_group(text)
                    pattern += f"(?P<{group}>[^/]+?)"
                else:
                    pattern += re.escape(text)
            ranks.append(0 if len(tokens) == 1 else 1)
        self.precedence = tuple(ranks)
        return pattern + "$"

    def match(self, path: str) -> dict[str, str] | None:
        """Route parameters for `path` (no prefix, no leading `/`), or `None` when it doesn't match."""
        found = self._regex.match(path.strip("/"))
        if found is None:
            return None
        values: dict[str, str] = {}
        for group, name in self._groups.items():
            parameter = self._parameters[name]
            value = found.group(group)
            if value is None or value == "":
                if not parameter.optional:
                    return None
                if parameter.default is not None:
                    values[name] = parameter.default
                continue
            if not parameter.accepts(value):
                return None
            values[name] = value
        return values

    def __repr__(self) -> str:
        return f"RouteTemplate({self.template!r})"
