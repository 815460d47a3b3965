"""Development tools, not shipped into Slicer: random models in nnInteractive's exact folder format."""
