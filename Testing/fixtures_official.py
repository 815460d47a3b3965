"""The official backend's factory (being written: see issue)."""
