"""Slicer's place mode for the module's point and box tools, and the persistence the user had before.

The tools change the interaction node's place-mode persistence (points stay in place mode, each box
ends it); leaving the tool gives the user's own setting back. The module's own mode changes are told
apart from the user's (Esc, right-click, another module), which deactivate the tool.
"""

from __future__ import annotations


class PlaceMode:
    """Place mode for one markups node at a time, through the application logic's interaction and selection nodes."""

    def __init__(self, app_logic) -> None:
        self.app_logic = app_logic
        self.switching = False  # the module itself is changing the mode
        self._persistence: int | None = None  # the user's setting, while a tool has changed it

    @property
    def interaction(self):
        return self.app_logic.GetInteractionNode()

    def start(self, node, persistent: bool) -> None:
        """Place into ``node``: persistent for points, one placement for a box."""
        selection = self.app_logic.GetSelectionNode()
        selection.SetReferenceActivePlaceNodeClassName(node.GetClassName())
        selection.SetActivePlaceNodeID(node.GetID())
        interaction = self.interaction
        self.switching = True
        try:
            if self._persistence is None:
                self._persistence = interaction.GetPlaceModePersistence()
            interaction.SetPlaceModePersistence(1 if persistent else 0)
            interaction.SetCurrentInteractionMode(interaction.Place)
        finally:
            self.switching = False

    def stop(self) -> None:
        """Leave place mode, and give the user's persistence setting back."""
        interaction = self.interaction
        self.switching = True
        try:
            if interaction.GetCurrentInteractionMode() == interaction.Place:
                interaction.SwitchToViewTransformMode()
            if self._persistence is not None:
                interaction.SetPlaceModePersistence(self._persistence)
                self._persistence = None
        finally:
            self.switching = False

    def left_by_user(self) -> bool:
        """On InteractionModeChanged: did the user leave place mode (not the module)?"""
        return not self.switching and self.interaction.GetCurrentInteractionMode() != self.interaction.Place
