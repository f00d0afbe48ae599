"""Who gets which email: lead emails by form, then page, then the default list; digests; alerts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Recipients:
    """Addresses from settings; `routes` keys are `form:<id>` or `page:<id>`."""

    default: tuple[str, ...]
    routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    digest: tuple[str, ...] = ()
    alerts: tuple[str, ...] = ()

    def for_lead(self, page_id: str | None, form_id: str | None) -> tuple[str, ...]:
        """The most specific route: the lead's form, else its page, else the default list."""
        for key in (f"form:{form_id}", f"page:{page_id}"):
            if key in self.routes:
                return tuple(self.routes[key])
        return self.default

    def for_digest(self) -> tuple[str, ...]:
        return self.digest or self.default

    def for_alerts(self) -> tuple[str, ...]:
        return self.alerts
