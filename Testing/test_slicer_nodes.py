"""The module's own nodes: one Segment Editor node per scene, and markups that show each point's + or -."""

from __future__ import annotations

from slicer_scene import make_scene

from SlicerNNInteractiveLib import nodes


def test_the_editor_node_is_one_singleton_per_scene():
    s = make_scene()
    first = nodes.editor_node(s.scene)
    assert nodes.editor_node(s.scene) is first
    assert s.scene.GetNumberOfNodesByClass("vtkMRMLSegmentEditorNode") == 1


def test_point_labels_are_shown_and_no_markup_is_saved_with_the_scene():
    s = make_scene()  # kept: the display nodes live in its scene
    markups = nodes.prompt_markups(s.scene)
    assert set(markups) == {"point", "scribble", "lasso"}
    assert markups["point"].GetDisplayNode().GetPointLabelsVisibility()
    assert not any(markup.GetSaveWithScene() for markup in markups.values())
    assert all(markups[tool].GetLocked() for tool in ("scribble", "lasso"))


def test_reload_takes_over_the_markups_instead_of_adding_them_again():
    s = make_scene()
    first = nodes.prompt_markups(s.scene)
    first["point"].AddControlPointWorld(1.0, 2.0, 3.0)
    again = nodes.prompt_markups(s.scene)  # the reloaded module's setup
    assert s.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsNode") == 3
    assert all(again[tool] is first[tool] for tool in first)
    assert again["point"].GetNumberOfControlPoints() == 0
