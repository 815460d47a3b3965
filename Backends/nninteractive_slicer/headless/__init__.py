"""Headless nnInteractive: read an image, run a prompt file or a saved history, write the labels.

The Python API behind the ``nninteractive-slicer`` command (see the README and :mod:`.api`).
Images need SimpleITK (``pip install 'nninteractive-slicer[cli]'``); the rest is numpy.
"""

from .api import Segmentation, check_replay, replay, segment
from .backend_spec import API_KEY_VARIABLE, BackendSpecError, make_backend
from .images import ImageReadError, Volume, read_image, write_labels
from .preview import write_preview
from .prompt_file import ObjectPrompts, PromptFileError, load_prompts, parse_prompts

__all__ = [
    "API_KEY_VARIABLE",
    "BackendSpecError",
    "ImageReadError",
    "ObjectPrompts",
    "PromptFileError",
    "Segmentation",
    "Volume",
    "check_replay",
    "load_prompts",
    "make_backend",
    "parse_prompts",
    "read_image",
    "replay",
    "segment",
    "write_labels",
    "write_preview",
]
