"""`local.settings.json`: the local host's settings file, read only here (the app reads its environment).

Core Tools (`func start`) and the devhost both load its `Values` into the process environment
before the app starts; the app itself never opens the file.
"""

from __future__ import annotations

import json
from pathlib import Path

LOCAL_SETTINGS_FILE = "local.settings.json"


class LocalSettingsError(RuntimeError):
    """`local.settings.json` exists but is not usable."""


def read_local_settings(script_root: Path) -> tuple[dict[str, str], int | None]:
    """`Values` and `Host.LocalHttpPort` of `local.settings.json` (empty and None when absent)."""
    path = script_root / LOCAL_SETTINGS_FILE
    if not path.is_file():
        return {}, None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LocalSettingsError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(document, dict):
        raise LocalSettingsError(f"{path}: must be a JSON object")
    values = document.get("Values") or {}
    port = (document.get("Host") or {}).get("LocalHttpPort")
    return {str(k): str(v) for k, v in values.items()}, int(port) if port else None
