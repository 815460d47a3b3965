"""SlicerNNInteractiveLogic through its public methods, on slicer-core with the real local and remote backends.

The widget's timer is replaced by a loop calling poll() until the Logic is no longer busy.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED
from concurrent.futures import wait as wait_futures
from dataclasses import replace

import numpy as np
import pytest
import vtk
from fixtures_remote import ALICE_KEY
from slicer_scene import counted, make_scene
from synthetic import blob_centre, mr_like_image

from nninteractive_slicer.backends.local import LocalBackend
from SlicerNNInteractiveLib import PromptPipeline, VolumeGeometry, control_points_world, point_prompt
from SlicerNNInteractiveLib.automatic import BackendChoice
from SlicerNNInteractiveLib.backends import BackendConfig
from SlicerNNInteractiveLib.logic import Built, Event, QueuedPrompt, SlicerNNInteractiveLogic, open_backend
from SlicerNNInteractiveLib.segments import full_box, index_to_segmentation, read_mask

SHAPE = (32, 48, 48)


class Scene:
    """A volume, its segmentation, a Segment Editor node, and a Logic whose builds are recorded."""

    def __init__(self, choice: BackendChoice, save_undo=None, **logic_options) -> None:
        self.s = make_scene()
        self.volume = self.s.volume(mr_like_image(SHAPE, seed=2))
        self.segmentation = self.s.segmentation(self.volume)
        self.editor = self.s.editor_node(self.volume, self.segmentation)
        self.pipeline = PromptPipeline(self.s.scene, None, self.editor, self.s.app_logic, counted(save_undo))
        self.built: list[Built] = []
        self.logic = SlicerNNInteractiveLogic(self.pipeline, choice, build=self.build, **logic_options)
        self.events: list[Event] = []
        self.cleared: list[str] = []

    def build(self, choice: BackendChoice) -> Built:
        built = open_backend(choice)
        self.built.append(built)
        return built

    def point(self, kji, name: str = "point") -> QueuedPrompt:
        node = self.s.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
        node.AddControlPointWorld(vtk.vtkVector3d(*(float(c) for c in reversed(kji))))  # identity IJK-to-RAS
        return QueuedPrompt(lambda g: point_prompt(control_points_world(node)[0], g), lambda: self.cleared.append(name))

    def drive(self, seconds: float = 120.0) -> list[Event]:
        deadline = time.monotonic() + seconds
        while self.logic.busy:
            assert time.monotonic() < deadline, "the Logic did not finish in time"
            self.events.extend(self.logic.poll())
        return self.events

    def texts(self, kind: str = "status") -> list[str]:
        return [e.text for e in self.events if e.kind == kind]

    def mask(self) -> np.ndarray:
        index_to_seg = index_to_segmentation(VolumeGeometry.from_volume_node(self.volume), self.segmentation)
        return read_mask(self.segmentation, self.editor.GetSelectedSegmentID(), index_to_seg, full_box(SHAPE))


def wait_closed(backend, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not backend._closed:
        assert time.monotonic() < deadline, f"{backend!r} was never closed"
        time.sleep(0.05)


@pytest.fixture
def local_choice(tiny_model_dir) -> BackendChoice:
    return BackendChoice("local", BackendConfig("local", device="cpu", model=str(tiny_model_dir)),
                         BackendConfig("slicer_server"))


@pytest.fixture
def remote_choice(remote_server) -> BackendChoice:
    return BackendChoice("slicer_server", BackendConfig("local", device="cpu"),
                         BackendConfig("slicer_server", remote_server.url, ALICE_KEY, timeout=120.0))


CENTRE = blob_centre(SHAPE)


def test_a_prompt_placed_while_the_previous_one_runs_follows_it(local_choice):
    scene = Scene(local_choice)
    scene.logic.enqueue(scene.point(CENTRE, "first"))
    while scene.logic.backend is None or scene.cleared == [] and not scene.logic._running:
        scene.events.extend(scene.logic.poll())  # until the first prompt is running
    scene.logic.enqueue(scene.point((CENTRE[0], CENTRE[1] + 3, CENTRE[2]), "second"))
    scene.drive()
    assert scene.cleared == ["first", "second"]
    assert len([t for t in scene.texts() if t.startswith("Done")]) == 2
    np.testing.assert_array_equal(scene.mask(), scene.logic.backend.get_mask())
    assert scene.mask().any()
    scene.logic.close()


def test_an_error_while_writing_the_result_does_not_stall_the_queue(local_choice):
    failures = ["the undo state could not be saved"]

    def save_undo() -> None:
        if failures:
            raise RuntimeError(failures.pop())

    scene = Scene(local_choice, save_undo=save_undo)
    scene.logic.enqueue(scene.point(CENTRE, "first"))
    scene.logic.enqueue(scene.point((CENTRE[0], CENTRE[1] + 3, CENTRE[2]), "second"))
    scene.drive()
    assert scene.cleared == ["first", "second"]
    assert any("RuntimeError" in t and "not changed" in t for t in scene.texts())
    assert scene.texts()[-1].startswith("Done")
    np.testing.assert_array_equal(scene.mask(), scene.logic.backend.get_mask())
    scene.logic.close()


def test_a_configuration_changed_while_building_closes_what_was_built(local_choice, remote_choice):
    scene = Scene(local_choice)
    scene.logic.enqueue(scene.point(CENTRE))
    scene.logic.poll()  # the local model starts loading
    assert scene.logic.configure(remote_choice)
    scene.logic.enqueue(scene.point(CENTRE))
    scene.drive()
    deadline = time.monotonic() + 60
    while len(scene.built) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    local = next(b.backend for b in scene.built if b.config.kind == "local")
    wait_closed(local)
    assert type(scene.logic.backend).__name__ == "SlicerServerBackend"
    assert scene.mask().any()
    scene.logic.close()


def test_test_connection_while_building_closes_the_first_build(local_choice):
    scene = Scene(local_choice)
    scene.logic.enqueue(scene.point(CENTRE))
    scene.logic.poll()
    scene.logic.test_connection()
    scene.drive()
    deadline = time.monotonic() + 60
    while len(scene.built) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (used,) = [b.backend for b in scene.built if b.backend is scene.logic.backend]
    (abandoned,) = [b.backend for b in scene.built if b.backend is not used]  # either may finish first
    wait_closed(abandoned)
    assert not used._closed
    assert any("tiny" in t for t in scene.texts("connection"))
    scene.logic.close()
    wait_closed(used)


def test_only_a_real_change_of_configuration_drops_the_backend(local_choice, tiny_model_dir):
    scene = Scene(local_choice)
    backend = LocalBackend(model_dir=tiny_model_dir, device="cpu")
    scene.logic.use_backend(backend, local_choice.local)
    assert not scene.logic.configure(replace(local_choice))  # focus in and out of a field: equal values
    assert scene.logic.backend is backend
    assert scene.logic.configure(replace(local_choice, local=replace(local_choice.local, device="auto")))
    assert scene.logic.backend is None
    wait_closed(backend)


def test_a_missing_requirement_asks_for_an_install_and_drops_the_queue(local_choice):
    scene = Scene(local_choice, missing=lambda kind: ["nninteractive>=2.6,<3"])
    scene.logic.enqueue(scene.point(CENTRE))
    scene.drive()
    (install,) = [e for e in scene.events if e.kind == "install"]
    assert install.data == "local" and "nninteractive" in install.text
    assert scene.cleared == ["point"] and scene.built == []


def test_closing_waits_for_a_model_load_only_up_to_its_bound(local_choice):
    """Quit stays quick: close() waits for the load (torch must not be running at finalisation), but bounded."""
    scene = Scene(local_choice)
    scene.logic.enqueue(scene.point(CENTRE))
    scene.logic.poll()
    began = time.monotonic()
    scene.logic.close(wait_s=0.2)
    assert time.monotonic() - began < 1.0
    assert not scene.logic.busy
    scene.logic.enqueue(scene.point(CENTRE))  # no more work after close
    assert not scene.logic.busy and scene.logic.poll() == []
    deadline = time.monotonic() + 60
    while not scene.built:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    wait_closed(scene.built[0].backend)


def test_automatic_uses_the_server_without_a_gpu_and_says_why(remote_choice):
    scene = Scene(replace(remote_choice, kind="automatic"))
    scene.logic.enqueue(scene.point(CENTRE))
    scene.drive()
    assert type(scene.logic.backend).__name__ == "SlicerServerBackend"
    (ready,) = [t for t in scene.texts() if t.startswith("Ready")]
    assert "Automatic: no usable CUDA GPU here" in ready
    assert scene.mask().any()
    scene.logic.close()


def test_a_local_backend_without_a_gpu_offers_the_server_and_continues_there(local_choice, remote_choice):
    choice = replace(local_choice, local=replace(local_choice.local, device="cuda"), server=remote_choice.server)
    scene = Scene(choice)
    scene.logic.enqueue(scene.point(CENTRE, "kept"))
    scene.drive()
    (offer,) = [e for e in scene.events if e.kind == "fallback"]
    assert "no CUDA GPU" in offer.text and remote_choice.server.url in offer.text
    assert ALICE_KEY not in offer.text
    # Nothing was written (no segment was even made), and the prompt waits for the answer.
    assert scene.segmentation.GetSegmentation().GetNumberOfSegments() == 0 and scene.cleared == []
    scene.logic.accept_fallback()
    scene.drive()
    assert scene.logic.choice.kind == "slicer_server"
    assert type(scene.logic.backend).__name__ == "SlicerServerBackend"
    assert scene.cleared == ["kept"] and scene.mask().any()
    # The fallback is for this run: the widget's configuration (still Local) neither drops the server backend
    # nor is replaced by it; a real change of configuration ends the fallback.
    backend = scene.logic.backend
    assert not scene.logic.configure(choice) and scene.logic.backend is backend
    assert scene.logic.configure(replace(choice, kind="automatic")) and scene.logic.backend is None
    scene.logic.close()


def test_poll_waits_on_the_work_in_flight_and_never_past_its_budget(local_choice):
    waits: list[tuple[int, float]] = []

    def wait(futures, timeout: float) -> None:  # the real wait, recorded
        waits.append((len(futures), timeout))
        wait_futures(futures, timeout, FIRST_COMPLETED)

    scene = Scene(local_choice, wait=wait, poll_wait=0.02)
    scene.logic.enqueue(scene.point(CENTRE))
    scene.drive()
    assert scene.mask().any()
    assert len(waits) > 3, "poll() should have waited on the model load and the prompt"
    assert all(count == 1 and 0 < timeout <= 0.02 for count, timeout in waits)
    scene.logic.close()


class AutomaticRunsHere(Scene):
    """Automatic as on a machine with a usable GPU: it resolves to the local backend (the build is the seam)."""

    def build(self, choice: BackendChoice) -> Built:
        return super().build(replace(choice, kind="local"))


def zstandard_missing(kind: str) -> list[str]:
    return ["zstandard>=0.22"] if kind == "slicer_server" else []


def test_the_zstandard_offer_is_made_once_and_only_for_a_server_in_use(local_choice, remote_choice):
    here = AutomaticRunsHere(replace(local_choice, kind="automatic", server=remote_choice.server),
                             recommended=zstandard_missing)
    here.logic.enqueue(here.point(CENTRE))
    here.drive()
    assert type(here.logic.backend).__name__ == "LocalBackend"
    assert not [e for e in here.events if e.kind in ("recommend", "install")], here.events
    here.logic.close()

    scene = Scene(remote_choice, recommended=zstandard_missing)
    scene.logic.enqueue(scene.point(CENTRE))
    scene.drive()
    (offer,) = [e for e in scene.events if e.kind == "recommend"]
    assert offer.data == "slicer_server" and "faster with zstandard" in offer.text and "needs" not in offer.text
    scene.logic.test_connection()
    scene.drive()
    assert len([e for e in scene.events if e.kind == "recommend"]) == 1
    scene.logic.close()


def test_no_capabilities_request_runs_on_the_main_thread(local_choice, monkeypatch):
    """A server backend may answer capabilities() with an HTTP request (after a lost session: up to its
    timeout), so the builder's thread asks, and the main thread, scribbles included, uses that answer."""
    import threading

    from slicer_scene import CountingBackend

    import SlicerNNInteractiveLib.logic as logic_module
    from SlicerNNInteractiveLib.strokes import stroke_builder

    askers: list[str] = []

    class Asked(CountingBackend):
        def capabilities(self):
            askers.append(threading.current_thread().name)
            return super().capabilities()

    real = logic_module.build_backend
    monkeypatch.setattr(logic_module, "build_backend", lambda config: Asked(real(config)))
    scene = Scene(local_choice)
    scene.logic.enqueue(scene.point(CENTRE))
    scene.drive()
    centre = np.array(CENTRE[::-1], dtype=float)
    stroke = np.array([centre + [dx, 0.0, 0.0] for dx in range(-6, 7)])
    build = stroke_builder("scribble", stroke, np.array([0.0, 0.0, 1.0]), True,
                           lambda: scene.logic.capabilities.scribble_thickness)
    scene.logic.enqueue(QueuedPrompt(build))
    scene.drive()
    assert askers and threading.main_thread().name not in askers, askers
    assert not [t for t in scene.texts() if "not changed" in t], scene.texts()
    scene.logic.close()


def test_a_volume_switch_drops_the_uploads_for_volumes_left_and_stops_the_running_one():
    import threading

    from slicer_scene import InstantBackend

    class SlowUploads(InstantBackend):
        """Each image upload waits until the test lets it go; records which image arrived."""

        def __init__(self) -> None:
            super().__init__()
            self.go = threading.Event()
            self.images: list[float] = []

        def _set_image(self, image, spacing) -> None:
            self.go.wait(60)
            self.images.append(float(image.flat[0]))

    s = make_scene()
    volumes = [s.volume(np.full(SHAPE, value, np.float32), name=f"V{value}") for value in (1.0, 2.0, 3.0)]
    editor = s.editor_node(volumes[0], s.segmentation(volumes[0]))
    backend = SlowUploads()
    logic = SlicerNNInteractiveLogic(PromptPipeline(s.scene, backend, editor, s.app_logic), poll_wait=0.01)
    logic.use_backend(backend)
    assert logic.image_chosen(volumes[0])
    logic.poll()  # volume 1's upload starts, and waits
    for volume in volumes[1:]:  # the user goes on to volume 2, then 3
        editor.SetAndObserveSourceVolumeNode(volume)
        logic.image_chosen(volume)
    assert len(logic.queue) == 1 and logic._running is None  # noqa: SLF001
    backend.go.set()
    deadline = time.monotonic() + 60
    events = []
    while logic.busy:
        assert time.monotonic() < deadline
        events.extend(logic.poll())
    deadline = time.monotonic() + 10
    while len(backend.images) < 2 and time.monotonic() < deadline:  # volume 1's abandoned call ends too
        time.sleep(0.05)
    assert sorted(backend.images) == [1.0, 3.0], backend.images  # volume 2 was never sent
    assert [e.text for e in events if e.text.startswith("The image is ready for prompts.")], events
    logic.close(wait_s=1)


def test_cancelling_the_model_load_drops_the_waiting_prompts_and_closes_what_loaded(local_choice):
    scene = Scene(local_choice)
    scene.logic.enqueue(scene.point(CENTRE, "waiting"))
    scene.events.extend(scene.logic.poll())  # the model starts loading
    assert scene.logic.busy
    scene.logic.cancel_build()
    scene.events.extend(scene.logic.poll())
    assert not scene.logic.busy and scene.cleared == ["waiting"] and scene.logic.backend is None
    assert "Loading cancelled; the segment was not changed." in scene.texts()
    deadline = time.monotonic() + 60
    while not scene.built:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    wait_closed(scene.built[0].backend)
    assert scene.segmentation.GetSegmentation().GetNumberOfSegments() == 0
