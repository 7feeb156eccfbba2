"""Make ``import edge_agent`` / ``import devices`` mean the project's packages.

``tests/conftest.py`` is rootless, so pytest (prepend import mode) puts
``tests/`` on ``sys.path``; ``tests/edge_agent/`` and ``tests/devices/`` would
then shadow the real packages as empty namespace packages (the editable
install's finder runs after the path finder). The path finder prefers a
regular package anywhere on ``sys.path`` over namespace portions, so
appending the project root is enough (same fix as ``tests/actors/conftest.py``).
"""
import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)
for _name in ("edge_agent", "devices"):
    _stale = sys.modules.get(_name)
    if _stale is not None and getattr(_stale, "__file__", None) is None:
        # A namespace-package impostor: forget it and anything imported under it.
        for _sub in [n for n in sys.modules if n == _name or n.startswith(_name + ".")]:
            del sys.modules[_sub]
