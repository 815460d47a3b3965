"""Who may listen where: the rule of both servers this package starts (the API server and the web app).

Beyond this machine a server needs a key, or the operator's explicit word that anyone who reaches the port
may use it."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (a name other than localhost counts as reachable from outside)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
