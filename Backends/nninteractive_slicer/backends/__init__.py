"""The backends: nnInteractive here (local), on this project's server (remote), on an official server (official)."""
