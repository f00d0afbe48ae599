"""Which lead forms this agent takes: the one rule behind `FACEBOOK_FORMS_INCLUDE` / `_EXCLUDE`.

The webhook, ingestion and the poller all ask `form_chosen`, so a form that is not chosen is never
queued, fetched, stored, emailed or polled, whichever way its lead arrives.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass


def form_chosen(form_id: str | None, include: Collection[str], exclude: Collection[str]) -> bool:
    """Whether leads of `form_id` are taken.

    With an include list, only its forms are chosen (the exclude list is then ignored: include
    wins); otherwise every form but the excluded ones. A lead whose form is unknown (`None`) is
    chosen, so the caller can decide once the form is known.
    """
    if form_id is None:
        return True
    if include:
        return form_id in include
    return form_id not in exclude


@dataclass(frozen=True)
class ChosenForms:
    """`form_chosen` bound to the settings' lists: a predicate to pass to the webhook, ingestion and poller."""

    include: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()

    @classmethod
    def of(cls, include: Collection[str] = (), exclude: Collection[str] = ()) -> ChosenForms:
        return cls(frozenset(include), frozenset(exclude))

    def __call__(self, form_id: str | None) -> bool:
        return form_chosen(form_id, self.include, self.exclude)


EVERY_FORM = ChosenForms()
