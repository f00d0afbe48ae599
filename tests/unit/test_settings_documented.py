"""Every setting the app reads is in local.settings.sample.json and in the settings table of the docs.

What the app reads: the field aliases of `shared.settings.Settings`, the app settings named in
trigger decorators as `%NAME%` (the host resolves them, so a missing one stops the function from
loading), and the two telemetry settings `shared.telemetry` reads at import. The docs' table is
every table headed `| setting |` in docs/settings.md when that file exists, else in README.md. A
setting only the Functions host reads may be listed too (`HOST_SETTINGS`), nothing else.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared import telemetry
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "local.settings.sample.json"
# Read by the Functions host (or Core Tools), not by the app's code.
HOST_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME": "Core Tools needs it locally (never set on Flex Consumption)",
    "AzureWebJobsStorage__credential": "the host's identity-based storage connection (managedidentity)",
}
BINDING_SETTING = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)%")
ENVIRONMENT_READ = re.compile(r"""(?:environ\.get|getenv|environ\[)\(?\s*["']([A-Za-z_][A-Za-z0-9_]*)["']""")


def settings_fields() -> set[str]:
    return {field.alias or name for name, field in Settings.model_fields.items()}


def binding_settings() -> set[str]:
    """`%NAME%` app settings in the trigger decorators (timer schedules)."""
    return {name for path in (REPO / "functions").glob("*.py") for name in BINDING_SETTING.findall(path.read_text())}


def settings_the_app_reads() -> set[str]:
    return settings_fields() | binding_settings() | set(telemetry.SETTINGS)


def sample_values() -> dict[str, str]:
    values = json.loads(SAMPLE.read_text(encoding="utf-8"))["Values"]
    assert isinstance(values, dict)
    return values


def docs_file() -> Path:
    moved = REPO / "docs" / "settings.md"
    return moved if moved.is_file() else REPO / "README.md"


def documented_settings() -> set[str]:
    """The names in the first column of every table of the docs headed `| setting |`.

    A cell may name several: `` `A` / `B` `` or `` `AzureWebJobsStorage__accountName`, `__clientId` ``,
    where a name starting with `__` continues the prefix of the name before it.
    """
    lines = docs_file().read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"^\|\s*setting\s*\|", line, re.IGNORECASE)]
    assert starts, f"{docs_file().relative_to(REPO)} has no table headed '| setting |'"
    names: set[str] = set()
    for start in starts:
        for line in lines[start + 2 :]:
            if not line.startswith("|"):
                break
            prefix = ""
            for name in re.findall(r"`([^`]+)`", line.split("|")[1]):
                if name.startswith("__"):
                    name = prefix + name
                else:
                    prefix = name.split("__")[0]
                names.add(name)
    return names


def test_the_sample_lists_every_setting_the_app_reads():
    missing = sorted(settings_the_app_reads() - set(sample_values()))
    assert missing == [], f"local.settings.sample.json lacks {missing}"


def test_the_sample_lists_nothing_the_app_or_host_does_not_read():
    unknown = sorted(set(sample_values()) - settings_the_app_reads() - set(HOST_SETTINGS))
    assert unknown == [], f"local.settings.sample.json names settings nothing reads: {unknown}"


def test_the_docs_table_describes_every_setting_the_app_reads():
    missing = sorted(settings_the_app_reads() - documented_settings())
    assert missing == [], f"the settings table of {docs_file().relative_to(REPO)} lacks {missing}"


def test_the_docs_table_names_nothing_the_app_or_host_does_not_read():
    unknown = sorted(documented_settings() - settings_the_app_reads() - set(HOST_SETTINGS))
    assert unknown == [], f"the settings table of {docs_file().relative_to(REPO)} names unknown settings {unknown}"


def test_every_binding_setting_is_a_validated_setting():
    """A `%NAME%` the host resolves is also a field, so a local run validates it like the rest."""
    assert binding_settings() <= settings_fields()


def test_the_sample_as_it_is_is_accepted_by_the_settings_code():
    Settings.model_validate(sample_values())


@pytest.mark.parametrize("name", sorted(binding_settings()))
def test_each_schedule_in_the_sample_has_six_ncrontab_fields(name):
    assert len(sample_values()[name].split()) == 6, f"{name}: {sample_values()[name]!r}"


def test_no_code_reads_an_app_setting_the_settings_do_not_know():
    """A literal `os.environ`/`getenv` read in shared/ or functions/ must be one of the settings above."""
    read = {
        name
        for folder in ("shared", "functions")
        for path in (REPO / folder).rglob("*.py")
        for name in ENVIRONMENT_READ.findall(path.read_text(encoding="utf-8"))
    }
    assert read <= settings_the_app_reads(), sorted(read - settings_the_app_reads())


def test_the_docs_table_reader_expands_continued_names(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text(
        "| setting | default | meaning |\n|---|---|---|\n"
        "| `A_ONE` / `A_TWO` | 1 | x |\n| `Store`, `__accountName`, `__clientId` | empty | y |\n\nafter\n\n"
        "| setting | default | meaning |\n|---|---|---|\n| `B_ONE` | 2 | z |\n"
    )
    monkeypatch.setattr(__import__(__name__, fromlist=["REPO"]), "REPO", tmp_path)
    assert documented_settings() == {"A_ONE", "A_TWO", "Store", "Store__accountName", "Store__clientId", "B_ONE"}
