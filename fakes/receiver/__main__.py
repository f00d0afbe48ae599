"""`python -m fakes.receiver`: serve the local receiver (see `fakes.receiver.cli`)."""

from __future__ import annotations

from fakes.receiver.cli import main

raise SystemExit(main())
