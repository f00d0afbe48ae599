"""`python -m devhost.sandbox`: serve the sandbox Graph API (see `devhost.sandbox.cli`)."""

from __future__ import annotations

from devhost.sandbox.cli import main

raise SystemExit(main())
