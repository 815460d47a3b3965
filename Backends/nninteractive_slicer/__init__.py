"""nnInteractive for 3D Slicer: one backend interface and its local, remote and official-server backends.

Importing this package (and the interface, wire format and remote client in it) never imports torch:
3D Slicer loads these modules at start-up. torch and nnInteractive are imported only by the local
backend and the server, when they are actually used.
"""

__version__ = "0.1.0"
