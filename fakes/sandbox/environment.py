"""The settings a local tool (sandbox, simulator) runs with: env over `local.settings.json` over defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from devhost.defaults import apply_local_defaults
from devhost.local_settings import LocalSettingsError, read_local_settings
from shared.settings import SettingsError


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
