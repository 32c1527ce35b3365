"""Run the exploration notebooks top to bottom, in place or into copies.

``python -m a2video.explore.notebooks --execute-in-place`` re-runs ``notebooks/*.ipynb``
against the demo's run and saves their outputs (figures included) in the files, so they show on
a repository page; ``--run`` (the test run's ``scores.npz`` the explore notebook reads),
``--ckpt`` / ``--data`` (the attention notebook's model and videos, nothing else) point them
elsewhere, ``--video`` the file the attention notebook draws. The notebooks read their paths
from the environment variables ``A2VIDEO_RUN``, ``A2VIDEO_CKPT``, ``A2VIDEO_DATA`` and
``A2VIDEO_VIDEO`` (see their first cell), which this module sets for the kernel.

Before any kernel starts, the inputs of the notebooks asked for are checked (:func:`needs`): the
run's ``scores.npz`` for a notebook that reads one (stdout names the file), the checkpoint for a
notebook that loads one (the explore notebook needs none) and the data root whose test videos
it reads (``--data``, else the checkpoint's), and the video it draws where one is chosen
(``--video``: its centre clip decoded as the notebook decodes it); a missing or wrong one ends
in one line and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from a2video.explore.predict import Predictor

__all__ = [
    "DEMO_RUNS",
    "NOTEBOOKS",
    "execute_notebook",
    "image_outputs",
    "main",
    "needs",
    "notebook_paths",
    "notebook_scores",
    "notebook_video",
    "repo_root",
    "run_of",
    "unsafe_load",
]

NOTEBOOKS = ("explore_predictions.ipynb", "attention_maps.ipynb")
ENV_VARS = {
    "ckpt": "A2VIDEO_CKPT",
    "data": "A2VIDEO_DATA",
    "run": "A2VIDEO_RUN",
    "video": "A2VIDEO_VIDEO",
}
UNSAFE_ENV = "A2VIDEO_UNSAFE_LOAD"  # set to 1 by --unsafe-load; read by the notebooks' loader
# Where the demo leaves its checkpoints, first found wins: `make demo` (python -m a2video.demo)
# fine-tunes on the UCF-101 layout (tested with 10x3 views, so its run holds predictions.csv)
# from a Kinetics-layout pretraining; train.py with configs/demo_kinetics.yaml alone.
DEMO_CHECKPOINTS = (
    "runs/demo/finetune/checkpoints/last.ckpt",
    "runs/demo/pretrain/checkpoints/last.ckpt",
    "runs/demo_kinetics/checkpoints/last.ckpt",
)
# The demo's tested runs the explore notebook reads by default, the first holding a scores.npz:
# `make demo`'s fine-tuned run (10x3-view test), else `train.py test` with demo_kinetics.yaml.
# Never the checkpoint's run: --ckpt / A2VIDEO_CKPT are the attention notebook's input only.
DEMO_RUNS = ("runs/demo/finetune", "runs/demo_kinetics")


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The repository root: the first folder upwards holding ``pyproject.toml``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "a2video").is_dir():
            return folder
    return Path(__file__).resolve().parents[2]


def notebook_paths() -> tuple[Path, Path | None, Path | None]:
    """The notebooks' inputs: ``(checkpoint, data root, predictions.csv)``.

    ``A2VIDEO_CKPT`` or else the demo's checkpoint; ``A2VIDEO_DATA`` or else None (the data root
    recorded in the checkpoint); the newest ``predictions.csv`` under ``A2VIDEO_RUN`` or else
    under the checkpoint's run folder (:func:`run_of`; None when there is none). Relative paths
    are taken from the repository root.
    """
    root = repo_root()
    if os.environ.get("A2VIDEO_CKPT"):
        ckpt = root / os.environ["A2VIDEO_CKPT"]
    else:
        candidates = [root / c for c in DEMO_CHECKPOINTS]
        ckpt = next((c for c in candidates if c.is_file()), candidates[0])
    data = root / os.environ["A2VIDEO_DATA"] if os.environ.get("A2VIDEO_DATA") else None
    run = root / os.environ["A2VIDEO_RUN"] if os.environ.get("A2VIDEO_RUN") else run_of(ckpt)
    found = (
        sorted(run.rglob("predictions.csv"), key=lambda p: p.stat().st_mtime)
        if run.is_dir()
        else []
    )
    return ckpt, data, (found[-1] if found else None)


def notebook_video() -> Path | None:
    """The video the attention notebook draws: ``A2VIDEO_VIDEO`` (relative: from the repository
    root, where the notebook moves), else None (the first test video)."""
    video = os.environ.get("A2VIDEO_VIDEO")
    return repo_root() / video if video else None


def run_of(ckpt: Path) -> Path:
    """The run folder of a checkpoint: above its ``checkpoints/`` folder, else its own folder
    (not the folder above: for ``/tmp/model.ckpt`` that was ``/``, searched for runs)."""
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def unsafe_load() -> bool:
    """Whether the notebooks may load a pickled checkpoint (``--unsafe-load`` of :func:`main`)."""
    return os.environ.get(UNSAFE_ENV) == "1"


# What a notebook's code calls -> the input it needs (checked before its kernel starts).
_NEEDS = {
    "notebook_scores(": "run",
    "load_run(": "run",
    "load_predictor(": "ckpt",
    "capture_attention(": "blocks",  # the checkpoint's network must have A2-blocks
    "centre_clip(": "video",  # A2VIDEO_VIDEO where set (the checkpoint's clip of it)
}


def needs(path: str | os.PathLike) -> set[str]:
    """The inputs a notebook reads, from its code: ``"run"`` (a test run's ``scores.npz``:
    ``notebook_scores``, ``load_run``), ``"ckpt"`` (a checkpoint: ``load_predictor``),
    ``"blocks"`` (that checkpoint's A²-blocks: ``capture_attention``) and ``"video"`` (a video's
    centre clip as that checkpoint sees it: ``centre_clip``).

    Raises:
        FileNotFoundError: no such notebook.
        ValueError: not a notebook (one line).
    """
    import json

    path = Path(path)
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        code = "".join("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code")
    except (ValueError, AttributeError) as err:
        raise ValueError(f"{path}: not a Jupyter notebook ({err})") from None
    return {what for call, what in _NEEDS.items() if call in code}


def _check_checkpoint(
    ckpt: Path, unsafe: bool, notebook: Path, data: Path | None, blocks: Path | None = None
) -> tuple[str, Predictor]:
    """Refuse (one line, before any kernel starts) a checkpoint the notebook cannot load: a
    missing file, one safe loading refuses, one without a2video's metadata, one without
    A²-blocks where the notebook ``blocks`` draws them; and a data root (``data``, else the
    one the checkpoint records) whose test split the notebook cannot read.

    Returns:
        The data root checked, absolute (the kernel is given it, since it runs in another
        folder, the repository root, where a relative one names another folder or none), and
        the checkpoint loaded.
    """
    from a2video.data.annotations import AnnotationError
    from a2video.explore.predict import load_predictor

    if not ckpt.is_file():
        raise FileNotFoundError(
            f"{ckpt}: no such checkpoint ({notebook.name} loads one); pass --ckpt CKPT "
            "(a .ckpt written by train.py or finetune_ucf.py), or run `make demo`"
        )
    predictor = load_predictor(ckpt, unsafe=unsafe)
    if blocks is not None:
        from a2video.explore.attention_maps import attention_blocks

        if not attention_blocks(predictor.model):  # its figures would be left empty
            raise ValueError(
                f"{ckpt}: {predictor.meta.get('arch')} has no A2-block ({blocks.name} draws "
                "their maps); pass --ckpt with the checkpoint of an A2-Net (a2net_*)"
            )
    fix = (
        f"pass --data DIR (A2VIDEO_DATA in Jupyter), the dataset {ckpt.name} was trained on "
        f"({notebook.name} reads its test videos)"
    )
    try:
        dm = predictor.datamodule(data, num_clips=1, num_crops=1, num_workers=0)
        dm.setup("test")
    except AnnotationError as err:  # its fix names train.py's --data.data_root
        raise ValueError(f"{err.file}: {err.message}; {fix}") from None
    except ValueError as err:  # no data root recorded
        raise ValueError(f"{ckpt}: {err}; {fix}") from None
    return os.path.abspath(dm.data_root), predictor


def _check_video(predictor: Predictor, video: Path, notebook: Path) -> str:
    """Refuse (one line, before any kernel starts) a video the notebook cannot draw: its centre
    clip is decoded as the notebook decodes it (:func:`a2video.explore.predict.centre_clip`),
    so a missing file, one that is no video and one cut short there are named with the fix.

    Returns:
        The video checked, absolute (the kernel is given it).
    """
    from a2video.data.video import VideoDecodeError
    from a2video.explore.predict import centre_clip

    try:
        centre_clip(predictor, video)
    except VideoDecodeError as err:
        raise ValueError(
            f"{err} ({notebook.name} draws its centre clip); pass --video VIDEO (A2VIDEO_VIDEO "
            "in Jupyter) with a video file it can decode, or leave it out for the first test "
            "video"
        ) from None
    return os.path.abspath(video)


def _check_run(notebook: Path) -> str:
    """The run the notebook will read (one line naming its ``scores.npz``), or refuse one that
    is missing or unreadable (one line, before any kernel starts)."""
    from a2video.explore.results import describe_scores, load_run

    asked = os.environ.get("A2VIDEO_RUN")
    run = load_run(notebook_scores())
    return f"{notebook.name}: {describe_scores(run, repo_root() / asked if asked else None)}"


@contextmanager
def _environ(values: Mapping[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def execute_notebook(
    source: str | os.PathLike,
    target: str | os.PathLike | None = None,
    *,
    env: Mapping[str, str] | None = None,
    timeout: int = 600,
    cwd: str | os.PathLike | None = None,
):
    """Executes a notebook with a fresh kernel and writes the executed copy.

    Args:
        source: The ``.ipynb`` to run.
        target: Where to write the executed notebook (default: over ``source``).
        env: Environment variables for the kernel (e.g. ``A2VIDEO_CKPT``).
        timeout: Seconds allowed per cell.
        cwd: The kernel's working directory (default: the notebook's folder).

    Returns:
        The executed ``nbformat.NotebookNode``.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised; the message holds its traceback.
    """
    import nbformat
    from nbclient import NotebookClient

    source = Path(source)
    nb = nbformat.read(source, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd or source.parent)}},
    )
    values = {"MPLBACKEND": "module://matplotlib_inline.backend_inline", **(env or {})}
    with _environ(values):
        client.execute()
    nbformat.write(nb, Path(target or source))
    return nb


def image_outputs(nb) -> list[tuple[int, str]]:
    """``(cell index, mime type)`` of every image output of an executed notebook."""
    found = []
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            for mime in output.get("data", {}):
                if mime.startswith("image/"):
                    found.append((i, mime))
    return found


def notebook_scores() -> Path:
    """The test run the explore notebook reads: ``A2VIDEO_RUN`` (a run folder or its
    ``scores.npz``), else the demo's (:data:`DEMO_RUNS`, the first holding one); in a folder,
    the newest ``scores.npz`` a test wrote (:func:`a2video.explore.results.find_scores`). The
    checkpoint (``A2VIDEO_CKPT``) plays no part: it is the attention notebook's input.

    Raises:
        FileNotFoundError: there is none (the message says how to make one and choose it).
    """
    from a2video.explore.results import find_scores, no_scores_message

    root = repo_root()
    if os.environ.get("A2VIDEO_RUN"):
        run = root / os.environ["A2VIDEO_RUN"]
        found = find_scores(run)
        if found is None:
            raise FileNotFoundError(no_scores_message(run, "--run (A2VIDEO_RUN in Jupyter)"))
        return found
    demo = [root / r for r in DEMO_RUNS]
    found = next((f for f in map(find_scores, demo) if f is not None), None)
    if found is None:
        raise FileNotFoundError(
            f"no --run given and the demo's runs ({', '.join(map(str, demo))}) hold no "
            "scores.npz; test a checkpoint (`python train.py test --config CONFIG --ckpt_path "
            "CKPT`) and pass its run folder or scores.npz with --run (A2VIDEO_RUN in Jupyter), "
            "or run `make demo`"
        )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m a2video.explore.notebooks",
        description="Execute the exploration notebooks (figures kept in the outputs).",
    )
    parser.add_argument(
        "notebooks",
        nargs="*",
        help=f"notebooks to run (default: notebooks/{{{','.join(NOTEBOOKS)}}})",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--execute-in-place", action="store_true", help="save the outputs into the notebooks"
    )
    where.add_argument("--out", default=None, help="folder for the executed copies")
    parser.add_argument(
        "--ckpt", default=None, help="checkpoint of attention_maps.ipynb (sets A2VIDEO_CKPT)"
    )
    parser.add_argument("--data", default=None, help="dataset root (sets A2VIDEO_DATA)")
    parser.add_argument(
        "--video",
        default=None,
        help="video attention_maps.ipynb draws (sets A2VIDEO_VIDEO; default: the first test video)",
    )
    parser.add_argument(
        "--run",
        default=None,
        help="run folder or scores.npz of explore_predictions.ipynb (sets A2VIDEO_RUN; default: "
        "the demo's, never --ckpt's run)",
    )
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per cell")
    parser.add_argument(
        "--unsafe-load",
        action="store_true",
        help="allow pickled Python objects in the checkpoint (trusted files only)",
    )
    args = parser.parse_args(argv)
    if not args.execute_in_place and args.out is None:
        parser.error("pass --execute-in-place or --out FOLDER")
    root = repo_root()
    paths = [Path(p) for p in args.notebooks] or [root / "notebooks" / n for n in NOTEBOOKS]
    env = {
        var: str(Path(value).resolve())
        for key, var in ENV_VARS.items()
        if (value := getattr(args, key)) is not None
    }
    from a2video.errors import exit_on_user_error

    prog = "python -m a2video.explore.notebooks"
    with exit_on_user_error(prog, "--unsafe-load"), _environ(env):
        if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
            raise ValueError(
                f"{args.out}: a file, not a folder; --out takes the folder for the executed "
                "notebooks (or pass --execute-in-place)"
            )
        first: dict[str, Path] = {}  # each input once, for the first notebook that needs it
        for path in paths:
            for what in needs(path):
                first.setdefault(what, path)
        if "ckpt" in first:  # first: an untrusted checkpoint is refused before anything else
            ckpt, data, _ = notebook_paths()
            checked, predictor = _check_checkpoint(
                ckpt, args.unsafe_load, first["ckpt"], data, first.get("blocks")
            )
            env.setdefault(ENV_VARS["data"], checked)  # what was checked is what the kernel reads
            if "video" in first and (video := notebook_video()) is not None:
                env[ENV_VARS["video"]] = _check_video(predictor, video, first["video"])
        if "run" in first:
            print(_check_run(first["run"]), flush=True)
    if args.unsafe_load:
        env[UNSAFE_ENV] = "1"
    from nbclient.exceptions import CellExecutionError

    for path in paths:
        target = path if args.execute_in_place else Path(args.out) / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        print(f"executing {path} -> {target}", flush=True)
        try:
            nb = execute_notebook(path, target, env=env, timeout=args.timeout)
        except CellExecutionError as err:
            print(f"{path}: a cell failed:\n{err}", file=sys.stderr)
            return 1
        print(f"  {len(image_outputs(nb))} figures", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
