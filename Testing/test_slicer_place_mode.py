"""Place mode for the point and box tools on slicer-core's interaction node: the user's persistence comes back,
and the module's own mode changes are told apart from the user's."""

from __future__ import annotations

from slicer_scene import make_scene

from SlicerNNInteractiveLib.place_mode import PlaceMode


def test_the_users_place_mode_persistence_comes_back_after_the_tools():
    s = make_scene()
    interaction = s.app_logic.GetInteractionNode()
    interaction.SetPlaceModePersistence(0)  # the user's own setting
    mode = PlaceMode(s.app_logic)
    points = s.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    box = s.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    mode.start(points, persistent=True)
    assert interaction.GetPlaceModePersistence() == 1
    assert interaction.GetCurrentInteractionMode() == interaction.Place
    assert s.app_logic.GetSelectionNode().GetActivePlaceNodeID() == points.GetID()
    mode.start(box, persistent=False)
    assert interaction.GetPlaceModePersistence() == 0
    assert s.app_logic.GetSelectionNode().GetActivePlaceNodeClassName() == "vtkMRMLMarkupsROINode"
    mode.stop()
    assert interaction.GetCurrentInteractionMode() == interaction.ViewTransform
    assert interaction.GetPlaceModePersistence() == 0
    interaction.SetPlaceModePersistence(1)  # the user changes it while no tool is active: kept
    mode.start(points, persistent=True)
    mode.stop()
    assert interaction.GetPlaceModePersistence() == 1


def test_only_the_user_leaving_place_mode_counts():
    s = make_scene()
    interaction = s.app_logic.GetInteractionNode()
    mode = PlaceMode(s.app_logic)
    seen: list[bool] = []
    interaction.AddObserver(interaction.InteractionModeChangedEvent, lambda *args: seen.append(mode.left_by_user()))
    mode.start(s.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode"), persistent=True)
    mode.stop()
    assert seen and not any(seen)  # the module's own switches
    mode.start(s.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode"), persistent=True)
    seen.clear()
    interaction.SwitchToViewTransformMode()  # Esc
    assert seen == [True]
