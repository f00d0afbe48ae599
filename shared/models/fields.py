"""Named fields: a lead's answers under names a team chose (`FIELD_MAP`), beside the untouched `fields`.

Computed whenever a lead is read, from its stored `fields` and the current map, never stored: a
changed `FIELD_MAP` applies to old leads too. Meta's standard questions have built-in names;
`FIELD_MAP` entries win over them. Question keys are matched without regard to case.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

# Meta's standard question keys → their built-in names.
BUILT_IN_NAMES: Mapping[str, str] = {
    "first_name": "first_name",
    "last_name": "last_name",
    "full_name": "full_name",
    "phone_number": "phone",
    "email": "email",
    "city": "city",
    "zip_code": "zip",
    "post_code": "zip",
    "company_name": "company",
    "job_title": "job_title",
}


def mapped_fields(fields: Mapping[str, Sequence[str]], field_map: Mapping[str, str]) -> dict[str, str]:
    """Each name → the first non-blank answer (trimmed) of a question mapped to it; names without one are left out.

    A name `field_map` gives wins over a built-in name: its question is read first, and a question
    `field_map` renames loses its built-in name. `fields` is not changed.
    """
    answers: dict[str, Sequence[str]] = {}
    for key, values in fields.items():
        answers.setdefault(key.lower(), values)
    mapped: dict[str, str] = {}
    for key, name in _effective_map(field_map):
        if name in mapped:
            continue
        value = next((v.strip() for v in answers.get(key, ()) if v.strip()), None)
        if value is not None:
            mapped[name] = value
    return mapped


def unmatched_field_map(field_map: Mapping[str, str], questions_by_form: Mapping[str, Sequence[str]]) -> list[str]:
    """The `field_map` keys that name no question of any known form, sorted (empty while no form is known).

    `questions_by_form` is form id → its question keys, as the poller keeps it in the store's
    coordination state under `form_questions`. Meant for one warning on the health route.
    """
    if not questions_by_form:
        return []
    known = {key.lower() for keys in questions_by_form.values() for key in keys}
    return sorted(key for key in field_map if key.lower() not in known)


def _effective_map(field_map: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """(lower-cased question key, name): `field_map`'s entries first, then the built-ins it does not rename."""
    own = {key.lower(): name for key, name in field_map.items()}
    yield from own.items()
    yield from ((key, name) for key, name in BUILT_IN_NAMES.items() if key not in own)
