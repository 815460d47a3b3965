"""``nninteractive-slicer segment|replay``: nnInteractive from a terminal or a script, on any backend.

Everything the run needs (image, prompt file or history, backend choice) is read and checked before
a backend is made, so bad input costs no model time. Exit status: 0 done, 2 bad input, 1 the backend
failed. A replay that departs from the recording says so per step and exits 0 (3 with --strict).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from .. import history as history_io
from ..backends.registry import local_kind
from ..errors import BackendError
from .api import check_replay, replay, segment
from .backend_spec import API_KEY_VARIABLE, BackendSpecError, check_spec, make_backend
from .images import ImageReadError, check_output, read_image, write_labels
from .preview import write_preview
from .progress import Progress
from .prompt_file import PromptFileError, load_prompts

BAD_INPUT, BACKEND_FAILED, REPLAY_DIFFERS = 2, 1, 3
COMMANDS = "nninteractive_slicer.commands"  # the entry-point group of extra subcommands


def extra_commands() -> dict[str, EntryPoint]:
    """Subcommands that other parts of the package add through its entry points (``web``), by name: this module,
    which Slicer ships, never imports them (see the folder rule in SlicerNNInteractive/CMakeLists.txt)."""
    return {point.name: point for point in entry_points(group=COMMANDS)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nninteractive-slicer", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    seg = commands.add_parser("segment", help="run a prompt file on an image")
    seg.add_argument("image", help="NIfTI, NRRD or MHA file, or a folder with one DICOM series")
    seg.add_argument("--prompts", required=True, help="prompt file (JSON, see the README)")
    seg.add_argument("--history-dir", help="write one history file per object here (for `replay`)")
    for name, command in extra_commands().items():
        commands.add_parser(name, help=f"from an extra of the package ({command.value}; see `{name} --help`)")
    rep = commands.add_parser("replay", help="run a saved history again and compare")
    rep.add_argument("history", help="a history file (docs/history.md)")
    rep.add_argument("image", help="the image the history was made on")
    rep.add_argument("--label", type=int, default=1, help="label value of the object in the output (default 1)")
    rep.add_argument("--strict", action="store_true", help="exit with status 3 when the replay differs")
    for sub in (seg, rep):
        sub.add_argument("-o", "--output", required=True, help="label image to write (.nii.gz, .nrrd, .mha)")
        sub.add_argument("--backend", default=local_kind(),
                         help=f"local, a server URL, or official+URL (API key: ${API_KEY_VARIABLE})")
        sub.add_argument("--model", help="local backend: model folder or official model id (default: recommended)")
        sub.add_argument("--device", default="auto", help="local backend: auto, cuda, cuda:N or cpu")
        sub.add_argument("--preview", help="also write a PNG: three slices, labels overlaid, prompts marked")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = extra_commands().get(argv[0]) if argv else None
    if extra is not None:  # its own arguments and dependencies (web: trame-slicer, in the [web] extra)
        return extra.load()(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    progress = Progress()
    try:
        check_spec(args.backend)
        check_output(args.output)
        if args.preview and not args.preview.lower().endswith(".png"):
            raise ImageReadError(f"{args.preview}: the preview is a PNG picture; name it .png.")
        volume = read_image(args.image)
        if args.command == "segment":
            objects = load_prompts(args.prompts, volume)
            progress.log(f"{volume.source}: {len(objects)} object(s), "
                         f"{sum(len(o.prompts) for o in objects)} prompt(s); starting the {args.backend} backend")
        else:
            history = history_io.load(args.history)
            check_replay(history, volume)
            progress.log(f"{args.history}: {len(history.steps)} step(s); starting the {args.backend} backend")
    except (BackendSpecError, ImageReadError, PromptFileError, history_io.HistoryFormatError,
            history_io.HistoryMismatchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BAD_INPUT
    try:
        with make_backend(args.backend, args.model, args.device) as backend:
            if args.command == "segment":
                result = segment(volume, objects, backend, progress.step)
                labels, prompts = result.labels, [p for o in objects for p in o.prompts]
                if args.history_dir:
                    _write_histories(result.histories, objects, Path(args.history_dir), progress)
            else:
                report = replay(history, volume, backend, progress.step)
                labels = report.mask.astype("uint8") * args.label
                prompts = [s.prompt for s in history.steps if s.prompt is not None]
    except (BackendError, history_io.HistoryMismatchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BACKEND_FAILED
    write_labels(labels, volume, args.output)
    progress.log(f"wrote {args.output}")
    if args.preview:
        write_preview(volume, labels, prompts, args.preview)
        progress.log(f"wrote {args.preview}")
    if args.command == "replay":
        differing = [s for s in report.steps if s.differing_voxels]
        if not differing:
            progress.log("replay: bit-identical to the recording at every step")
            return 0
        for step in differing:
            progress.log(f"replay: step {step.index + 1} ({step.op} {step.kind or ''}): "
                         f"{step.differing_voxels} voxels differ from the recording")
        return REPLAY_DIFFERS if args.strict else 0
    return 0


def _write_histories(histories, objects, folder: Path, progress: Progress) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for history, obj in zip(histories, objects):
        path = folder / f"label-{obj.label}.history.json"
        history_io.save(history, path)
        progress.log(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
