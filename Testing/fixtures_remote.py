"""The remote backend's factory (being written: see issue)."""
