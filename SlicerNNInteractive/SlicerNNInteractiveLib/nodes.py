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


TOOL_ATTRIBUTE = "SlicerNNInteractive.tool"


def prompt_markups(scene) -> dict:
    """One markups node per drawing tool, not saved with the scene; points show their + or - label. The nodes
    a previous instance of the module made (Reload) are taken over, emptied, so none is left twice."""
    markups = {}
    for tool, class_name in MARKUPS.items():
        markup = _tool_node(scene, class_name, tool)
        if markup is None:
            markup = scene.AddNewNodeByClass(class_name, f"nnInteractive {tool}")
            markup.SetAttribute(TOOL_ATTRIBUTE, tool)
        markup.RemoveAllControlPoints()
        markup.SetSaveWithScene(False)
        markup.CreateDefaultDisplayNodes()
        if tool != "point":
            markup.SetCurveTypeToLinear()
            markup.SetLocked(True)
            markup.GetDisplayNode().SetPropertiesLabelVisibility(False)
        markups[tool] = markup
    markups["point"].GetDisplayNode().SetPointLabelsVisibility(True)
    return markups


def _tool_node(scene, class_name: str, tool: str):
    for index in range(scene.GetNumberOfNodesByClass(class_name)):
        node = scene.GetNthNodeByClass(index, class_name)
        if node.GetAttribute(TOOL_ATTRIBUTE) == tool:
            return node
    return None
