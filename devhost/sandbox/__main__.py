"""`python -m devhost.sandbox`: the same as `python -m devhost.sandbox_graph`."""

from __future__ import annotations

from devhost.sandbox.cli import main

raise SystemExit(main())
