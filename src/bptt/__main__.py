"""``python -m bptt`` runs the ``bptt`` command."""

from bptt.cli import main

raise SystemExit(main())
