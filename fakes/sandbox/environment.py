"""The settings a local tool (sandbox, simulator) runs with: env over `local.settings.json` over defaults.

Besides the merged settings it reads the page ids (`FACEBOOK_PAGE_IDS`) and each page's own token
(`FACEBOOK_PAGE_TOKEN_{page_id}`), as the agent does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from devhost.defaults import apply_local_defaults
from devhost.local_settings import LocalSettingsError, read_local_settings
from shared.settings import SettingsError

PAGE_TOKEN_PREFIX = "FACEBOOK_PAGE_TOKEN_"


def local_environment(
    directory: str | os.PathLike[str] = ".", environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Every setting, taken from the environment first, then `local.settings.json` Values, then the local defaults."""
    merged = dict(os.environ if environ is None else environ)
    try:
        local_values, _ = read_local_settings(Path(directory))
    except LocalSettingsError as exc:
        raise SettingsError(str(exc)) from None
    for name, value in local_values.items():
        merged.setdefault(name, value)
    apply_local_defaults(merged)
    return merged


def page_ids(environ: Mapping[str, str]) -> list[str]:
    """`FACEBOOK_PAGE_IDS` split on commas, blanks dropped."""
    return [part.strip() for part in environ.get("FACEBOOK_PAGE_IDS", "").split(",") if part.strip()]


def page_tokens(environ: Mapping[str, str]) -> dict[str, str]:
    """Page id → token from every non-empty `FACEBOOK_PAGE_TOKEN_{page_id}` (the sample's placeholder skipped)."""
    return {
        name.removeprefix(PAGE_TOKEN_PREFIX): value.strip()
        for name, value in environ.items()
        if name.startswith(PAGE_TOKEN_PREFIX) and name.removeprefix(PAGE_TOKEN_PREFIX).isdigit() and value.strip()
    }
