"""The questions of the sandbox's lead forms, as Meta's `questions` field lists them, and dummy answers.

A question is `{"key", "label", "type", "id"}` (plus `options` for a multiple-choice custom
question). Standard questions carry Meta's fixed type and key (`FULL_NAME`/`full_name`,
`EMAIL`/`email`, `PHONE`/`phone_number`, `CITY`/`city`; `ZIP`/`zip_code`, `COMPANY_NAME`/
`company_name` and `JOB_TITLE`/`job_title` as integrators report them); a `CUSTOM` question's key
is the form's own, such as `what_is_your_budget?`. A lead's `field_data` names each answer by key.
Each page's first form asks standard questions only, its second adds two custom ones; more forms
take turns with these two sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Question = dict[str, Any]

STANDARD: dict[str, tuple[str, str]] = {
    "FULL_NAME": ("full_name", "Full name"),
    "FIRST_NAME": ("first_name", "First name"),
    "LAST_NAME": ("last_name", "Last name"),
    "EMAIL": ("email", "Email"),
    "PHONE": ("phone_number", "Phone number"),
    "CITY": ("city", "City"),
    "ZIP": ("zip_code", "ZIP code"),
    "COMPANY_NAME": ("company_name", "Company name"),
    "JOB_TITLE": ("job_title", "Job title"),
}
BUDGET_KEY = "what_is_your_budget?"
START_KEY = "when_do_you_want_to_start?"
CUSTOM: dict[str, Question] = {
    BUDGET_KEY: {
        "key": BUDGET_KEY,
        "label": "What is your budget?",
        "type": "CUSTOM",
        "options": [
            {"key": "under_5000", "value": "Under $5,000"},
            {"key": "5000_to_20000", "value": "$5,000 to $20,000"},
            {"key": "over_20000", "value": "Over $20,000"},
        ],
    },
    START_KEY: {
        "key": START_KEY,
        "label": "When do you want to start?",
        "type": "CUSTOM",
        "options": [
            {"key": "right_away", "value": "Right away"},
            {"key": "within_3_months", "value": "Within 3 months"},
            {"key": "just_browsing", "value": "Just browsing"},
        ],
    },
}
QUESTION_FIELDS = frozenset({"id", "key", "label", "type", "options"})
FORM_QUESTION_SETS: tuple[tuple[str, ...], ...] = (
    ("FULL_NAME", "EMAIL", "PHONE", "CITY", "ZIP"),
    ("FULL_NAME", "EMAIL", "PHONE", "COMPANY_NAME", "JOB_TITLE", BUDGET_KEY, START_KEY),
)
TEST_EMAIL = "test@fb.com"


def question(name: str) -> Question:
    """A standard question by its type (`EMAIL`) or a custom one by its key (`what_is_your_budget?`)."""
    if name in STANDARD:
        key, label = STANDARD[name]
        return {"key": key, "label": label, "type": name}
    return {key: (list(value) if isinstance(value, list) else value) for key, value in CUSTOM[name].items()}


def form_questions(form_id: str, number: int) -> tuple[Question, ...]:
    """The questions of a page's `number`-th form (1-based), each with an id made from the form's."""
    names = FORM_QUESTION_SETS[(number - 1) % len(FORM_QUESTION_SETS)]
    return tuple({**question(name), "id": f"{form_id}{index}"} for index, name in enumerate(names))


def dummy_answers(questions: Sequence[Question]) -> list[dict[str, Any]]:
    """One answer per question, as the Lead Ads Testing Tool fills a form: `test@fb.com` or dummy text."""
    return [
        {
            "name": q["key"],
            "values": [TEST_EMAIL if q["type"] == "EMAIL" else f"<test lead: dummy data for {q['key']}>"],
        }
        for q in questions
    ]
