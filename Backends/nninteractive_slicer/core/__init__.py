"""The shared core below both the backends and the server: the engine, model loading, the device thread, the wire."""
