"""``python -m edge_agent --config FILE``."""
from .cli import main

raise SystemExit(main())
