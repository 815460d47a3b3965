"""The bundled multi-user server: ``nninteractive-slicer-server`` (see :mod:`.cli`) or ``create_app(config)``.

Imports torch and nnInteractive (through the model); the remote client never imports this package.
"""

from .app import create_app
from .config import Limits, ServerConfig

__all__ = ["Limits", "ServerConfig", "create_app"]
