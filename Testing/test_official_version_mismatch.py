"""A server whose nnInteractive cannot serve this client is named as such, in words a user can act on."""

from __future__ import annotations

import pytest

from nninteractive_slicer.backends.official_errors import client_version, version_mismatch

URL = "https://nninteractive.example:1527"


@pytest.mark.parametrize(("server", "client"), [("2.6.0", "2.6.0"), ("2.7.1", "2.6.0"), ("2.6", "2.6.3"),
                                                (None, "2.6.0"), ("unknown", "2.6.0")])
def test_versions_that_work_together_pass(server, client):
    assert version_mismatch(URL, server, client) is None


def test_an_older_server_is_named_with_what_to_do():
    error = version_mismatch(URL, "2.5.2", "2.6.0")
    assert error is not None
    text = str(error)
    assert "Version mismatch" in text and URL in text and "2.5.2" in text and "2.6.0" in text
    assert "The server is older: ask its operator to update" in text


def test_a_newer_major_on_the_server_asks_to_update_the_client():
    text = str(version_mismatch(URL, "3.0.0", "2.6.0"))
    assert "client is older" in text and "pip install -U nninteractive-client" in text


def test_the_installed_client_version_is_found():
    assert client_version() is not None and client_version().startswith("2.")
