"""The module's own nodes in a scene: its Segment Editor node and the markups that show prompts being placed."""

from __future__ import annotations

EDITOR_NODE_TAG = "SlicerNNInteractive"
# Tool -> the markups class that shows its prompt; boxes get a fresh ROI each (see boxes.py).
MARKUPS = {
    "point": "vtkMRMLMarkupsFiducialNode",
    "scribble": "vtkMRMLMarkupsCurveNode",
    "lasso": "vtkMRMLMarkupsClosedCurveNode",
}


def editor_node(scene):
    """The module's singleton Segment Editor node, made on first use (kept apart from the Segment Editor module's)."""
    node = scene.GetSingletonNode(EDITOR_NODE_TAG, "vtkMRMLSegmentEditorNode")
    if node is None:
        node = scene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
        node.UnRegister(None)
        node.SetSingletonTag(EDITOR_NODE_TAG)
        node = scene.AddNode(node)
    return node


def prompt_markups(scene) -> dict:
    """One markups node per drawing tool, not saved with the scene; points show their + or - label."""
    markups = {}
    for tool, class_name in MARKUPS.items():
        markup = scene.AddNewNodeByClass(class_name, f"nnInteractive {tool}")
        markup.SetSaveWithScene(False)
        markup.CreateDefaultDisplayNodes()
        if tool != "point":
            markup.SetCurveTypeToLinear()
            markup.SetLocked(True)
            markup.GetDisplayNode().SetPropertiesLabelVisibility(False)
        markups[tool] = markup
    markups["point"].GetDisplayNode().SetPointLabelsVisibility(True)
    return markups
