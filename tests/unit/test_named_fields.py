"""Chosen forms and named fields: the pure rules behind FACEBOOK_FORMS_INCLUDE / _EXCLUDE and FIELD_MAP."""

from __future__ import annotations

from shared.models.fields import mapped_fields, unmatched_field_map
from shared.models.forms import ChosenForms, form_chosen

ANSWERS = {
    "full_name": ["Zoë Åström"],
    "phone_number": ["+44 20 7946 0000"],
    "zip_code": ["10115"],
    "company_name": ["Solar & Sons"],
    "job_title": ["Buyer"],
    "what_is_your_budget?": ["", " 5000 € ", "6000"],
}


def test_every_form_is_chosen_without_lists():
    assert form_chosen("101", (), ())


def test_an_excluded_form_is_not_chosen():
    assert not form_chosen("101", (), ("101",))
    assert form_chosen("102", (), ("101",))


def test_only_included_forms_are_chosen():
    assert form_chosen("101", ("101",), ())
    assert not form_chosen("102", ("101",), ())


def test_include_wins_over_exclude():
    assert form_chosen("101", ("101",), ("101",))
    assert not form_chosen("102", ("101",), ("102", "103"))


def test_a_lead_whose_form_is_unknown_is_chosen_until_its_form_is_known():
    assert form_chosen(None, ("101",), ())


def test_chosen_forms_is_the_rule_bound_to_the_settings_lists():
    chosen = ChosenForms.of(include=(), exclude=["101"])
    assert (chosen("101"), chosen("102")) == (False, True)


def test_meta_standard_questions_have_built_in_names():
    assert mapped_fields(ANSWERS, {}) == {
        "full_name": "Zoë Åström",
        "phone": "+44 20 7946 0000",
        "zip": "10115",
        "company": "Solar & Sons",
        "job_title": "Buyer",
    }


def test_post_code_is_zip_too():
    assert mapped_fields({"post_code": ["SW1A 1AA"]}, {}) == {"zip": "SW1A 1AA"}


def test_the_field_map_names_a_custom_question_with_its_first_non_blank_answer():
    assert mapped_fields(ANSWERS, {"what_is_your_budget?": "budget"})["budget"] == "5000 €"


def test_a_field_map_name_wins_over_a_built_in_name():
    answers = {"phone_number": ["+44 20 7946 0000"], "mobile": ["+49 30 1234"]}
    assert mapped_fields(answers, {"mobile": "phone"})["phone"] == "+49 30 1234"


def test_a_question_the_field_map_renames_loses_its_built_in_name():
    assert mapped_fields({"phone_number": ["+44 20"]}, {"phone_number": "tel"}) == {"tel": "+44 20"}


def test_question_keys_match_whatever_their_case():
    assert mapped_fields({"What_Is_Your_Budget?": ["5000"]}, {"what_is_your_budget?": "budget"}) == {"budget": "5000"}


def test_a_name_without_an_answer_is_left_out_and_fields_are_untouched():
    fields = {"email": [], "what_is_your_budget?": ["  "]}
    assert mapped_fields(fields, {"what_is_your_budget?": "budget"}) == {}
    assert fields == {"email": [], "what_is_your_budget?": ["  "]}


def test_a_field_map_key_no_form_has_is_unmatched():
    questions = {"101": ["full_name", "email", "what_is_your_budget?"], "102": ["email", "city"]}
    field_map = {"what_is_your_budget?": "budget", "City": "town", "how_many_panels?": "panels"}
    assert unmatched_field_map(field_map, questions) == ["how_many_panels?"]


def test_nothing_is_unmatched_while_no_form_is_known():
    assert unmatched_field_map({"anything": "x"}, {}) == []
