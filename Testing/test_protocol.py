"""Client and server speak one contract (:mod:`nninteractive_slicer.protocol.contract`): these fail when they drift."""

from __future__ import annotations

import ast
from pathlib import Path

from fixtures_remote import ALICE_KEY, CLIENT_TIMEOUT_S
from starlette.routing import compile_path

import nninteractive_slicer.server as server_package
from nninteractive_slicer.backends import slicer_server
from nninteractive_slicer.protocol.contract import ErrorCode, Route, Routes


def served(remote_server) -> set[tuple[str, str]]:
    """Method and path template of every operation the app documents (all but /docs and /openapi.json)."""
    paths = remote_server.app.openapi()["paths"]
    return {(method.upper(), path) for path, operations in paths.items() for method in operations}


def test_the_server_serves_exactly_the_routes_of_the_contract(remote_server):
    assert served(remote_server) == {(r.method, r.path) for r in Routes.all().values()}


def test_every_route_the_client_calls_is_served(remote_server, image64):
    """The client's real traffic, matched against the app: method and path template of each request."""
    calls: list[tuple[str, str]] = []
    backend = slicer_server.SlicerServerBackend(remote_server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S)
    record = lambda r, *a, **k: calls.append((r.request.method, r.request.path_url))  # noqa: E731
    backend._server._pool.hooks["response"].append(record)  # calls outside ServerConnection.request too
    request = backend._server.request

    def recorded(route, **kwargs):  # image chunks go over pools of their own
        response = request(route, **kwargs)
        record(response)
        return response

    backend._server.request = recorded
    image = image64.copy()
    image[0, 0, 0] += 0.5  # an image no earlier test uploaded, so this one is sent (PUT)
    with backend:
        backend.check_connection()
        backend.set_image(image)
        backend.set_initial_mask((image > image.mean()).astype("uint8"))
        backend.reset()
        backend.get_mask()
    routes = [(method, compile_path(template)[0]) for method, template in served(remote_server)]
    for method, path in calls:
        assert any(m == method and regex.match(path) for m, regex in routes), (method, path)
    assert {method for method, _ in calls} == {"GET", "POST", "PUT", "DELETE"}


def test_every_error_code_the_server_can_send_is_declared_and_mapped_by_the_client():
    declared = {code.value for code in ErrorCode}
    # Every ErrorCode.X the server's modules name exists (an unknown one fails at import), and the server
    # names no error code as a bare string: ApiError also refuses codes outside the contract at run time.
    named: set[str] = set()
    for source in Path(server_package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ErrorCode":
                named.add(ErrorCode[node.attr].value)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ApiError" and node.args:
                assert not isinstance(node.args[0], ast.Constant), f"{source.name}: a bare error code or status"
    assert named <= declared


def test_routes_fill_their_parameters():
    assert Routes.UPLOAD_CHUNK.url(digest="ab", index=3) == "/v1/images/ab/chunks/3"
    assert isinstance(Routes.all()["PROMPT"], Route)


def test_each_error_code_has_one_status_on_both_sides():
    """The server sends a typed error with its code's status; the client raises the code's typed error."""
    from types import SimpleNamespace

    from nninteractive_slicer import errors
    from nninteractive_slicer.backends.slicer_server_http import ServerConnection
    from nninteractive_slicer.server.errors import ApiError, from_backend_error

    for error in (errors.UndoError, errors.InvalidPromptError, errors.NoImageError, errors.OutOfMemoryError,
                  errors.AuthenticationError, errors.ServerBusyError, errors.BackendError):
        sent = from_backend_error(error("x"))
        assert ErrorCode(sent.code).error is error and sent.status == ErrorCode(sent.code).status
    assert from_backend_error(errors.BackendUnavailableError("x")).code == ErrorCode.BACKEND_FAILED
    assert from_backend_error(KeyError("x")).code == ErrorCode.INTERNAL
    connection = ServerConnection("http://127.0.0.1:9", None, 1.0, True, "key")
    for code in ErrorCode:
        if code is ErrorCode.HTTP_ERROR:
            continue
        assert ApiError(code, "x").status == code.status
        reply = SimpleNamespace(status_code=code.status, headers={}, json=lambda code=code: {"error": code.value,
                                "detail": "x"}, request=SimpleNamespace(path_url="/v1/x"))
        assert isinstance(connection.error(reply), code.error), code


def test_a_reply_without_our_code_is_read_by_its_status_never_as_a_lost_session():
    from nninteractive_slicer.protocol.contract import code_of_reply

    assert code_of_reply("not ours", 404) is ErrorCode.NOT_FOUND
    assert code_of_reply("not ours", 503) is ErrorCode.BUSY
    assert code_of_reply("not ours", 418) is ErrorCode.HTTP_ERROR
    assert code_of_reply(ErrorCode.SESSION_UNKNOWN.value, 404) is ErrorCode.SESSION_UNKNOWN


def test_the_bodies_the_client_builds_and_checks_agree_with_the_servers_models_field_by_field():
    from dataclasses import MISSING, fields

    from nninteractive_slicer.protocol import bodies
    from nninteractive_slicer.server import schemas

    pairs = [(bodies.PointPrompt, schemas.PointPrompt), (bodies.BBoxPrompt, schemas.BBoxPrompt),
             (bodies.CropHeader, schemas.CropHeader), (bodies.MaskHeader, schemas.MaskHeader),
             (bodies.ChunkHeader, schemas.ChunkHeader), (bodies.SetImageBody, schemas.SetImageBody),
             (bodies.Health, schemas.Health), (bodies.SessionState, schemas.SessionState),
             (bodies.ImageStatus, schemas.ImageStatus), (bodies.UploadStatus, schemas.UploadStatus),
             (bodies.Info, schemas.Info)]
    for body, model in pairs:
        ours = {f.name: f.default is MISSING and f.default_factory is MISSING for f in fields(body)}
        theirs = {name: info.is_required() for name, info in model.model_fields.items()}
        assert set(ours) == set(theirs), body.__name__
        # A field the client may leave out, the server must not require; "kind" is a constant of the body.
        assert all(not theirs[name] for name, required in ours.items() if not required and name != "kind"), body
    assert {f.name for f in fields(bodies.Limits)} == set(bodies.Limits().to_json())


def test_a_body_is_checked_by_json_type_strictly():
    import pytest

    from nninteractive_slicer.protocol.bodies import BodyError, ChangedRegion, SessionState

    state = {"session_id": "s", "revision": 3, "image_digest": None, "shape": [2, 3, 4], "prompt_count": 0,
             "can_undo": False, "undo": 0, "redo": 0, "a newer field": 1}
    assert SessionState.read(state).shape == [2, 3, 4]
    for field, bad in (("revision", True), ("revision", "3"), ("shape", [2, "3", 4]), ("can_undo", 0)):
        with pytest.raises(BodyError, match=field):
            SessionState.read({**state, field: bad})
    with pytest.raises(BodyError, match="lacks 'redo'"):
        SessionState.read({k: v for k, v in state.items() if k != "redo"})
    reply = ChangedRegion(changed=False, revision=1, prompt_count=1, undo=1, redo=0, codec="zlib")
    assert ChangedRegion.read(reply.to_json()) == reply
