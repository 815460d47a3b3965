"""What the module says while an image travels to the backend (the first thing a remote user waits for)."""

from __future__ import annotations

from nninteractive_slicer.interface import Backend


def upload_status(backend: Backend | None) -> str | None:
    """A status line for the image upload in progress, or None when nothing is being sent."""
    progress = backend.upload_progress() if backend is not None else None
    if progress is None:
        return None
    megabytes = progress.total_bytes / 1e6
    return f"Uploading the image: {progress.fraction:.0%} of {megabytes:,.0f} MB ..."
