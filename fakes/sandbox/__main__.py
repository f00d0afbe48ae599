"""`python -m fakes.sandbox`: serve the sandbox Graph API (see `fakes.sandbox.cli`)."""

from __future__ import annotations

from fakes.sandbox.cli import main

raise SystemExit(main())
