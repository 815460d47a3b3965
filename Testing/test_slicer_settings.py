"""The Configuration tab's choices in the settings: per-server addresses and keys, and the server Automatic uses."""

from __future__ import annotations

import slicer_scene  # noqa: F401 (puts the module folder on sys.path)

from SlicerNNInteractiveLib import settings
from SlicerNNInteractiveLib.automatic import BackendChoice
from SlicerNNInteractiveLib.backends import BackendConfig


class Store:
    """QSettings' value/setValue on a dict (QSettings returns None for a missing key)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def value(self, key: str):
        return self.values.get(key)

    def setValue(self, key: str, value: str) -> None:  # noqa: N802 (QSettings' name)
        self.values[key] = value

    def allKeys(self) -> list[str]:  # noqa: N802 (QSettings' name)
        return list(self.values)

    def remove(self, key: str) -> None:
        self.values.pop(key, None)


def test_a_first_start_is_automatic_with_this_projects_server_on_this_computer():
    choice = settings.load(Store())
    assert choice.kind == "automatic"
    assert choice.server == BackendConfig("slicer_server", settings.DEFAULT_URL, "")
    assert choice.local.device == "auto"


def test_each_server_kind_keeps_its_address_and_automatic_uses_the_last_chosen():
    store = Store()
    local = BackendConfig("local", device="cuda:1", model="/models/x")
    settings.save(store, BackendChoice("slicer_server", local, BackendConfig("slicer_server", "http://lab:1527", "k1")))
    settings.save(store, BackendChoice("official", local, BackendConfig("official", "https://gpu:8000", "k2")))
    assert settings.server_fields(store, "slicer_server") == ("http://lab:1527", "k1")
    assert settings.server_fields(store, "official") == ("https://gpu:8000", "k2")
    store.setValue(f"{settings.PREFIX}/backend", "automatic")
    assert settings.load(store).server == BackendConfig("official", "https://gpu:8000", "k2")
    settings.remember_server(store, "slicer_server")
    choice = settings.load(store)
    assert choice.server == BackendConfig("slicer_server", "http://lab:1527", "k1") and choice.local == local


def test_an_unknown_stored_kind_falls_back_to_automatic():
    store = Store()
    store.setValue(f"{settings.PREFIX}/backend", "gpu-cluster")
    store.setValue(f"{settings.PREFIX}/server", "nonsense")
    choice = settings.load(store)
    assert choice.kind == "automatic" and choice.server.kind == "slicer_server"


def test_a_cleared_server_address_stays_cleared_so_automatic_offers_the_install():
    store = Store()
    settings.save(store, BackendChoice("automatic", BackendConfig("local"), BackendConfig("slicer_server", "", "")))
    choice = settings.load(store)
    assert choice.server.url == "" and not choice.has_server


def test_a_self_test_puts_the_users_settings_back_as_they_were():
    store = Store()
    store.setValue("Other/key", "kept")
    settings.save(store, BackendChoice("official", BackendConfig("local", device="cuda:1"),
                                       BackendConfig("official", "https://gpu:8000", "secret")))
    saved = settings.snapshot(store)
    before = dict(store.values)
    settings.save(store, BackendChoice("local", BackendConfig("local", device="cpu", model="/tmp/tiny"),
                                       BackendConfig("slicer_server", "http://127.0.0.1:9", "")))
    settings.save_autosave(store, "/tmp/x", 3)
    settings.restore(store, saved)
    assert store.values == before


def test_a_recommended_package_is_offered_once_per_user_not_per_session():
    store = Store()
    assert not settings.offered(store, "slicer_server")
    settings.remember_offered(store, "slicer_server")
    assert settings.offered(store, "slicer_server") and not settings.offered(store, "official")


def test_settings_saved_under_the_servers_former_kind_are_read_as_its_current_one():
    """This project's server was the kind "remote" until it was named after itself."""
    store = Store()
    store.setValue("SlicerNNInteractive/backend", "remote")
    store.setValue("SlicerNNInteractive/remote/url", "http://lab:1527")
    store.setValue("SlicerNNInteractive/remote/apiKey", "k1")
    choice = settings.load(store)
    assert choice.kind == "slicer_server"
    assert choice.server == BackendConfig("slicer_server", "http://lab:1527", "k1")
    assert not any("/remote/" in key for key in store.allKeys())
