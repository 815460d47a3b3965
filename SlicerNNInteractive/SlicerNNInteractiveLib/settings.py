"""The Configuration tab's choices in the application settings (a QSettings, passed in: any value/setValue store).

The server's address and key are kept per server kind, so switching between this project's server and
an official one keeps both; "server" remembers the last server kind chosen, which Automatic and the
local backend's fallback use.
"""

from __future__ import annotations

from typing import Any

from .automatic import AUTOMATIC, CHOICES, LOCAL, SERVER_KINDS, BackendChoice
from .backends import BackendConfig, current_kind

PREFIX = "SlicerNNInteractive"
DEFAULT_URL = "http://127.0.0.1:1527"


def server_kind(store: Any, kind: str) -> str:
    """The server a choice of ``kind`` uses: that kind itself, or the last server kind chosen."""
    if kind in SERVER_KINDS:
        return kind
    last = store.value(f"{PREFIX}/server")
    return last if last in SERVER_KINDS else SERVER_KINDS[0]


def server_fields(store: Any, kind: str) -> tuple[str, str]:
    """(URL, API key) stored for the server a choice of ``kind`` uses."""
    server = server_kind(store, kind)
    url = store.value(f"{PREFIX}/{server}/url")  # "" is kept: a cleared address means no server
    return DEFAULT_URL if url is None else url, store.value(f"{PREFIX}/{server}/apiKey") or ""


def remember_server(store: Any, kind: str) -> None:
    """The user chose this server kind: Automatic and the fallback use it from now on."""
    store.setValue(f"{PREFIX}/server", kind)


def migrate(store: Any) -> None:
    """Settings saved under a backend's former kind (this project's server was "remote") move to its current one."""
    for key in (f"{PREFIX}/backend", f"{PREFIX}/server"):
        saved = store.value(key)
        if saved and current_kind(saved) != saved:
            store.setValue(key, current_kind(saved))
    for key in store.allKeys():
        _, kind, *rest = key.split("/") if key.startswith(f"{PREFIX}/") and key.count("/") >= 2 else ("", "", "")
        if rest and current_kind(kind) != kind:
            renamed = "/".join([PREFIX, current_kind(kind), *rest])
            if store.value(renamed) is None:
                store.setValue(renamed, store.value(key))
            store.remove(key)


def load(store: Any) -> BackendChoice:
    migrate(store)
    kind = store.value(f"{PREFIX}/backend")
    kind = kind if kind in CHOICES else AUTOMATIC
    url, api_key = server_fields(store, kind)
    local = BackendConfig(LOCAL, device=store.value(f"{PREFIX}/local/device") or "auto",
                          model=store.value(f"{PREFIX}/local/model") or "")
    return BackendChoice(kind, local, BackendConfig(server_kind(store, kind), url, api_key))


def save(store: Any, choice: BackendChoice) -> None:
    store.setValue(f"{PREFIX}/backend", choice.kind)
    if choice.kind in SERVER_KINDS:
        remember_server(store, choice.kind)
    store.setValue(f"{PREFIX}/local/device", choice.local.device)
    store.setValue(f"{PREFIX}/local/model", choice.local.model)
    store.setValue(f"{PREFIX}/{choice.server.kind}/url", choice.server.url)
    store.setValue(f"{PREFIX}/{choice.server.kind}/apiKey", choice.server.api_key)


def autosave(store: Any) -> tuple[str, int]:
    """(folder, every how many recorded steps) for writing every segment history; ("", 0) is off."""
    every = int(store.value(f"{PREFIX}/history/autosaveEvery") or 0)
    return store.value(f"{PREFIX}/history/autosaveFolder") or "", every


def save_autosave(store: Any, folder: str, every: int) -> None:
    store.setValue(f"{PREFIX}/history/autosaveFolder", folder)
    store.setValue(f"{PREFIX}/history/autosaveEvery", every)


def snapshot(store: Any) -> dict[str, Any]:
    """Every value the module keeps, so a self-test can put the user's settings back afterwards."""
    return {key: store.value(key) for key in store.allKeys() if key.startswith(f"{PREFIX}/")}


def restore(store: Any, saved: dict[str, Any]) -> None:
    """The module's settings exactly as :func:`snapshot` found them (keys added since are removed)."""
    for key in store.allKeys():
        if key.startswith(f"{PREFIX}/") and key not in saved:
            store.remove(key)
    for key, value in saved.items():
        store.setValue(key, value)


def offered(store: Any, kind: str) -> bool:
    """Whether the packages that make ``kind`` faster were offered already (asked once per user, not per session)."""
    return bool(store.value(f"{PREFIX}/offered/{kind}"))


def remember_offered(store: Any, kind: str) -> None:
    store.setValue(f"{PREFIX}/offered/{kind}", "1")
