"""nnInteractive driven for one user: the engine over an inference session and its undo, model loading, the
one device thread, undo snapshots. Shared by the local backend and the server; torch is imported lazily."""
