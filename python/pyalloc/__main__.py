"""``python -m pyalloc``: the ``pyalloc`` command."""
from .cli import main

raise SystemExit(main())
