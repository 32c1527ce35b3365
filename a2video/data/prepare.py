"""Re-encode a dataset for fast training clips (``a2video prepare``).

Downloaded Kinetics videos are H.264 with a keyframe every ~8 s and B-frames: a training clip
decodes, on average, several seconds of video it never uses. The prepared copy keeps the layout
and the annotation files and rewrites every video as H.264 (MP4, index at the front) with a
short keyframe interval, no B-frames and x264's ``fastdecode`` tuning, at a short side of
``short_side`` pixels; optionally it keeps only every ``frame_step``-th frame.

``frame_step`` and ``stride``: ``stride`` keeps meaning frames *of the original video*. The copy
records ``frame_step`` in ``a2video_prepared.json`` at its root, and the DataModules (and
``a2video predict``, for a video inside the copy) divide the stride by it (stride 8 on the
original = stride 4 on a ``frame_step=2`` copy: the same time span), so configs and checkpoints
stay valid. The stride must be a multiple of ``frame_step``. Preparing a prepared copy composes
the steps: the new copy records the source's ``frame_step`` times ``--frame-step``.

Safety: the source is only read; DST may not be SRC or lie inside it; each video is written to
``<name>.<pid>.part`` and renamed when complete, so an interrupted run leaves no half file that a
rerun would take as done (reruns skip finished files and redo the others); the encoder processes
end with the run (a killed run leaves none writing). Videos whose source cannot be opened or
decoded are copied unchanged (the loaders' bad-video handling still sees them) and listed, also
across interrupted runs (``.a2video_unreadable.jsonl``, written before each such copy); a failure
to write the copy (disk full, the encoder refusing its options) stops the run in one line.
Every file keeps its name (a Kinetics ``.mkv`` holds an MP4 container, as UCF-101's ``.avi`` do:
decoders read the container from the bytes), so ``path label`` lists still name the videos.
"""

from __future__ import annotations

import contextlib
import filecmp
import functools
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..atomic_write import replaced_atomically
from .annotations import VIDEO_EXTENSIONS, walk_files
from .processes import map_surviving_crashes

MARKER = "a2video_prepared.json"
JOURNAL = ".a2video_unreadable.jsonl"  # DST's unreadable sources, one JSON line each, as met
LAYOUT_MARKERS = {"kinetics": "annotations", "ucf101": "ucfTrainTestlist"}


def other_layout(root: str | os.PathLike, layout: str) -> str | None:
    """The layout whose marker folder ``root`` holds where ``layout``'s is absent (a UCF-101
    root given as Kinetics, or the reverse), else None."""
    if os.path.isdir(os.path.join(root, LAYOUT_MARKERS[layout])):
        return None
    found = (n for n, m in LAYOUT_MARKERS.items() if os.path.isdir(os.path.join(root, m)))
    return next(found, None)


def not_this_layout(layout: str, other: str | None = None) -> str:
    """``no <marker>/ folder, not a <layout> dataset root`` and, given ``other``
    (:func:`other_layout`), what the root holds instead: one wording for every entry point."""
    said = f"no {LAYOUT_MARKERS[layout]}/ folder, not a {layout} dataset root"
    return said if other is None else f"{said} (it holds {LAYOUT_MARKERS[other]}/: a {other} root)"


class PrepareError(ValueError):
    """Bad arguments to :func:`prepare_dataset` (one line, with the fix)."""


class SourceUnreadable(Exception):
    """A source video that cannot be opened or decoded (it is copied unchanged and listed)."""


@dataclass(frozen=True)
class Encoding:
    """How the prepared videos are encoded (the defaults decode fastest; docs/data.md)."""

    short_side: int = 256
    gop: int = 16
    crf: int = 23
    frame_step: int = 1
    preset: str = "fast"
    fastdecode: bool = True  # x264 tune: no CABAC, no deblocking, cheaper per frame to decode
    bframes: int = 0

    def x264_options(self) -> dict[str, str]:
        opts = {
            "preset": self.preset,
            "crf": str(self.crf),
            "threads": "1",
            "x264-params": (
                f"keyint={self.gop}:min-keyint={self.gop}:scenecut=0:bframes={self.bframes}"
            ),
        }
        if self.fastdecode:
            opts["tune"] = "fastdecode"
        return opts


@dataclass
class PrepareReport:
    videos: int = 0
    encoded: int = 0
    skipped: int = 0  # already done by an earlier run
    unreadable: dict[str, str] = field(default_factory=dict)  # relative path -> reason
    bytes_before: int = 0
    bytes_after: int = 0


def read_frame_step(root: str | os.PathLike) -> int:
    """``frame_step`` of a prepared copy at ``root`` (1 for any other dataset).

    It counts frames of the *original* video: a copy of a copy records the product of the
    steps (see :func:`prepare_dataset`).
    """
    marker = Path(root) / MARKER
    if not marker.is_file():
        return 1
    return int(_read_marker(marker).get("frame_step", 1))


def _read_marker(marker: Path) -> dict[str, Any]:
    """The state in a prepared copy's marker; a damaged one is a one-line :class:`PrepareError`
    (it was a JSON traceback)."""
    try:
        state = json.loads(marker.read_text(encoding="utf-8"))
        if not isinstance(state, dict):
            raise ValueError("not a JSON object")
        if int(state.get("frame_step", 1)) < 1:
            raise ValueError(f"frame_step {state['frame_step']}")
        return state
    except (OSError, ValueError, TypeError) as err:
        raise PrepareError(
            f"{marker}: damaged ({_reason(err)}); it records how its folder was prepared "
            "(frame_step, encoding): restore it, or prepare the source into a new DST"
        ) from None


def _write_atomically(path: Path, text: str) -> None:
    """Write through a temp file and a rename: a run killed meanwhile leaves the old file
    (a half-written marker was a damaged copy)."""
    with replaced_atomically(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def find_prepared_root(video: str | os.PathLike) -> Path | None:
    """The prepared copy a video file lies in: the nearest folder above it holding
    ``a2video_prepared.json`` (None outside one). Symlinks in the path are not resolved, so a
    copy assembled from links to another tree is still found."""
    return _Lookups().root(video)


def _copy_roots(video: str | os.PathLike, lookups: _Lookups | None = None) -> list[Path]:
    """The prepared copies a video lies in: through the links in its path, and where they lead
    (a dataset root of links to a copy's folders); ``lookups`` keeps what many calls share."""
    lookups = lookups or _Lookups()
    roots = [lookups.root(video), lookups.root(lookups.realpath(video))]
    return [r for r in roots if r is not None]


def _step_in(
    video: str | os.PathLike, roots: list[Path], lookups: _Lookups
) -> tuple[int, Path | None]:
    """``(frame_step, root)`` of ``video`` in its copies ``roots`` (:func:`video_frame_step`)."""
    found = [(lookups.frame_step(r), r) for r in roots]
    if not found:
        return 1, None
    if len({step for step, _ in found}) > 1:
        (a, ra), (b, rb) = found
        raise PrepareError(
            f"{video}: it lies in a prepared copy with frame_step {a} ({ra}) through its path and "
            f"{b} ({rb}) where its links lead; point the data at one copy"
        )
    return found[0]


def video_frame_step(video: str | os.PathLike) -> tuple[int, Path | None]:
    """``(frame_step, prepared root)`` of a video file: that of the prepared copy it lies in
    (:func:`find_prepared_root`), through the links in its path or where they lead (a dataset
    root of links to a copy's folders), ``(1, None)`` outside one. Both a copy: a
    :class:`PrepareError` where their steps differ."""
    lookups = _Lookups()
    return _step_in(video, _copy_roots(video, lookups), lookups)


def _one_per_folder(videos: Iterable[str | os.PathLike]) -> Iterator[str | os.PathLike]:
    """The first of ``videos`` in each folder (a copy's marker is looked up once per folder)."""
    folders: set[str] = set()
    for video in videos:
        folder = os.path.dirname(os.path.abspath(video))
        if folder not in folders:
            folders.add(folder)
            yield video


class _LinkLoop(Exception):
    """A path whose links lead back to it (:meth:`_Lookups.realpath` leaves it to realpath)."""


def _plain(path: str) -> bool:
    """Whether ``path`` resolves component by component as written: no ``..`` (after a link
    it leads elsewhere than where the text points) and no leading ``//``."""
    return ".." not in path.split(os.sep) and not path.startswith("//")


class _Lookups:
    """:func:`find_prepared_root`, ``os.path.realpath`` and :func:`read_frame_step` for the
    videos of a whole split, each folder's marker and real path read once: its 400 class
    folders share their parents (each looked up 400 times before), and links share their
    targets' folders. The answers are those of the per-video calls."""

    def __init__(self) -> None:
        self._roots: dict[str, Path | None] = {}  # folder -> find_prepared_root of a file in it
        self._real: dict[str, str] = {}  # absolute plain path -> os.path.realpath of it
        self._steps: dict[Path, int] = {}  # prepared root -> read_frame_step of it

    def root(self, video: str | os.PathLike) -> Path | None:
        """:func:`find_prepared_root` of ``video``."""
        folder = os.path.dirname(os.path.abspath(video))
        walked = []
        while folder not in self._roots:
            walked.append(folder)
            if (Path(folder) / MARKER).is_file():
                self._roots[folder] = Path(folder)
                break
            parent = os.path.dirname(folder)
            if parent == folder:  # the file system's root
                self._roots[folder] = None
                break
            folder = parent
        root = self._roots[folder]
        self._roots.update(dict.fromkeys(walked, root))
        return root

    def frame_step(self, root: Path) -> int:
        """:func:`read_frame_step` of ``root``."""
        if root not in self._steps:
            self._steps[root] = read_frame_step(root)
        return self._steps[root]

    def realpath(self, path: str | os.PathLike) -> str:
        """``os.path.realpath(path)``, each folder above it (and above its links' targets)
        resolved once for all calls."""
        path = os.fspath(path)
        if not _plain(path):
            return os.path.realpath(path)
        try:
            return self._resolved(os.path.abspath(path), set())
        except _LinkLoop:
            return os.path.realpath(path)  # realpath says where its loop stops

    def _resolved(self, path: str, resolving: set[str]) -> str:
        if path in self._real:
            return self._real[path]
        parent, name = os.path.split(path)
        if not name:  # the file system's root
            return path
        if path in resolving:
            raise _LinkLoop(path)
        resolving.add(path)
        # realpath resolves the components in order: this one follows its resolved parent
        here = os.path.join(self._resolved(parent, resolving), name)
        if os.path.islink(here):
            target = os.readlink(here)
            if _plain(target):
                target = os.path.normpath(os.path.join(os.path.dirname(here), target))
                here = self._resolved(target, resolving)
            else:
                here = os.path.realpath(here)
        resolving.discard(path)
        self._real[path] = here
        return here


def records_prepared(videos: Iterable[str | os.PathLike]) -> tuple[int, int | None]:
    """``(frame_step, short side)`` of the prepared copies that ``videos`` lie in, in one pass
    (looked up once per folder), whatever folder the caller names as the root (the copy's root
    or its video folder).

    ``frame_step``: 1 outside a copy; videos from copies with different steps are a
    :class:`PrepareError` naming one of each (a stride cannot mean the same time in both).
    Short side: the largest ``--short-side`` of those copies (their videos' short side is at
    most that: ``prepare`` never upscales); None when no video lies in one.
    """
    first: dict[int, str] = {}  # step -> a video with it
    sides: dict[Path, int] = {}
    lookups = _Lookups()  # each folder above the split's videos looked up once
    for video in _one_per_folder(videos):
        roots = _copy_roots(video, lookups)
        first.setdefault(_step_in(video, roots, lookups)[0], str(video))
        for root in roots:
            if root not in sides:
                encoding = _read_marker(root / MARKER).get("encoding") or {}
                sides[root] = int(encoding.get("short_side") or 0)
    if len(first) > 1:
        (a, va), (b, vb) = sorted(first.items())[:2]
        raise PrepareError(
            f"{vb}: this split mixes videos of prepared copies with frame_step {b} and {a} "
            f"(e.g. {va}); point its annotation file at one copy (a2video prepare the rest)."
        )
    found = [side for side in sides.values() if side > 0]
    return next(iter(first), 1), (max(found) if found else None)


def records_frame_step(videos: Iterable[str | os.PathLike]) -> int:
    """``frame_step`` of the prepared copy that ``videos`` lie in (:func:`records_prepared`)."""
    return records_prepared(videos)[0]


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def output_path(rel: Path, layout: str) -> Path:
    """Where a source video goes: its own name, in both layouts.

    Annotation files name videos by path (UCF-101 split files, ``path label`` lists) or by
    stem (Kinetics CSVs), so the file keeps its name and holds an MP4 container (decoders read
    the container from the bytes, not from the name).
    """
    return rel


def _done_by_an_earlier_version(src: Path, dst: Path, rel: Path, layout: str) -> bool:
    """Whether an earlier a2video's prepare, which named every Kinetics copy ``.mp4``, wrote
    this video's copy into ``dst`` (a rerun does not encode it twice). Not where the source
    has that ``.mp4`` too: the file in ``dst`` is that video's copy."""
    legacy = rel.with_suffix(".mp4")
    if layout != "kinetics" or legacy == rel or (src / legacy).exists():
        return False
    return (dst / legacy).is_file()


def check_paths(src: Path, dst: Path, layout: str) -> None:
    if layout not in LAYOUT_MARKERS:
        raise PrepareError(f"layout must be kinetics or ucf101, got {layout!r}")
    if not src.is_dir():
        raise PrepareError(
            f"{src}: source dataset folder not found (fix: point SRC at the dataset root, the "
            f"folder holding {LAYOUT_MARKERS[layout]}/)"
        )
    s, d = src.resolve(), dst.resolve()
    if d == s or s in d.parents:
        raise PrepareError(f"{dst} is inside the source {src}: choose a DST outside SRC")
    if d in s.parents:
        raise PrepareError(f"the source {src} is inside {dst}: choose a DST outside SRC")
    if not (src / LAYOUT_MARKERS[layout]).is_dir():
        other = other_layout(src, layout)
        if other is not None:  # as check-data says it
            raise PrepareError(
                f"{src}: {not_this_layout(layout, other)}; fix: pass --layout {other}"
            )
        raise PrepareError(
            f"{src}: {not_this_layout(layout)} "
            "(fix: point SRC at the dataset root or pick the right --layout)"
        )


def _walk(src: Path, outside: Path | None = None) -> Iterator[Path]:
    """Every file below ``src``, relative to it; symlinked folders are followed (as the loaders
    do), each real folder once; none that really lies in ``outside`` (a link in SRC to the copy
    being written: its videos were encoded again into a folder of the copy, one deeper on each
    rerun)."""
    skip = os.path.realpath(outside) + os.sep if outside is not None else None
    for path in walk_files(src):
        if skip is None or not os.path.realpath(path).startswith(skip):
            yield Path(path).relative_to(src)


def _output_size(w: int, h: int, short_side: int) -> tuple[int, int]:
    """Even (W, H) with the short side at most ``short_side`` (never upscaled)."""
    scale = min(1.0, short_side / min(w, h))
    return max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2)


def transcode(src: str | os.PathLike, dst: str | os.PathLike, enc: Encoding) -> int:
    """Re-encode the first video stream of ``src`` into an MP4 at ``dst``; frames written.

    Raises on a file with no decodable video. The display matrix (phone-video rotation, a
    mirror) is applied to the pixels.
    """
    import av

    from .video import UPRIGHT, apply_orientation, video_orientation

    try:
        inp = av.open(str(src), metadata_errors="ignore")
    except Exception as err:
        raise SourceUnreadable(_reason(err)) from err
    with inp:
        if not inp.streams.video:
            raise SourceUnreadable("no video stream")
        stream = inp.streams.video[0]
        rate = Fraction(stream.average_rate or stream.guessed_rate or 25)
        out_rate = (rate / enc.frame_step).limit_denominator(1001)
        with av.open(str(dst), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            ostream = out.add_stream("libx264", rate=out_rate, options=enc.x264_options())
            ostream.pix_fmt = "yuv420p"
            ostream.codec_context.thread_count = 1
            written = 0
            orientation = None  # the source's display matrix, read at its first frame
            for k, frame in enumerate(_source_frames(inp, stream)):
                if k % enc.frame_step:
                    continue
                try:  # the source frame to the copy's size and pixel format
                    if orientation is None:
                        orientation = video_orientation(src, frame)
                    if orientation != UPRIGHT:  # the copy shows what the source shows
                        arr = frame.to_ndarray(format="rgb24")[None]
                        arr = apply_orientation(arr, orientation)[0]
                        frame = av.VideoFrame.from_ndarray(arr, "rgb24")
                    if written == 0:
                        ostream.width, ostream.height = _output_size(
                            frame.width, frame.height, enc.short_side
                        )
                    frame = frame.reformat(
                        ostream.width, ostream.height, "yuv420p", interpolation="AREA"
                    )
                except Exception as err:
                    raise SourceUnreadable(_reason(err)) from err
                frame.pts, frame.time_base = written, 1 / out_rate
                for packet in ostream.encode(frame):
                    out.mux(packet)
                written += 1
            if written == 0:
                raise SourceUnreadable("no decodable video frames")
            for packet in ostream.encode():
                out.mux(packet)
    return written


def _source_frames(inp: Any, stream: Any) -> Iterator[Any]:
    """The decoded frames of ``stream``; a decoding failure is :class:`SourceUnreadable`."""
    frames = inp.decode(stream)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except Exception as err:
            raise SourceUnreadable(_reason(err)) from err
        yield frame


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1][:160] if text else ''}"


def _end_with_the_parent(parent: int) -> None:
    """Pool initializer: the encoder process ends when the run does (a SIGKILL or SIGTERM to
    ``prepare`` used to leave it encoding, and a rerun then raced it on the same file) and
    leaves Ctrl-C to the run (which ends it; it printed a traceback of its own)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):  # elsewhere _prepare_one checks the parent instead
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError, TypeError):  # no libc to open (musl, a sandbox)
            pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    global _PARENT
    _PARENT = parent


_PARENT: int | None = None  # the prepare run of this encoder process


def _orphaned() -> bool:
    return _PARENT is not None and os.getppid() != _PARENT


@contextlib.contextmanager
def _children_ignore_ctrl_c() -> Iterator[None]:
    """Processes started inside ignore SIGINT from their first instruction (a Ctrl-C while an
    encoder process still starts up printed its traceback); the run itself handles Ctrl-C."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:  # None: a handler not set from Python (an embedding program's), not restorable
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)


def _prepare_one(
    job: tuple[str, str, Encoding], unreadable: str | None = None
) -> tuple[str, str | None, str | None]:
    """Encode one video to ``<dst>.<pid>.part``, then rename. A source that cannot be read
    (or ``unreadable``: why it is not even tried) is journalled, then copied unchanged.
    Returns ``(dst, unreadable reason, fatal error)``."""
    src, dst, enc = job
    part = f"{dst}.{os.getpid()}.part"
    try:
        try:
            if unreadable is not None:
                raise SourceUnreadable(unreadable)
            transcode(src, part, enc)
            reason = None
        except SourceUnreadable as err:
            reason = str(err)
            with contextlib.suppress(FileNotFoundError):
                os.remove(part)
            shutil.copyfile(src, part)
            _journal(dst, reason)
        if _orphaned():  # the run is gone: leave no file a rerun would take as done
            os.remove(part)
            os._exit(1)
        os.replace(part, dst)
        return dst, reason, None
    except Exception as err:  # writing the copy failed: the run stops, the video is not done
        with contextlib.suppress(OSError):
            os.remove(part)
        return dst, None, _reason(err)


CRASHED = "its encoder process died on it (a crash in the codec library); copied unchanged"


@contextlib.contextmanager
def _encoder_pool(workers: int) -> Iterator[Any]:
    """``workers`` spawned encoder processes (:func:`_end_with_the_parent`). Left by an
    exception (Ctrl-C, a failed write) they are killed at once: a shutdown would wait for
    the videos they encode and then run the ones queued."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    pool = ProcessPoolExecutor(
        workers,
        mp_context=get_context("spawn"),
        initializer=_end_with_the_parent,
        initargs=(os.getpid(),),
    )
    try:
        yield pool
    except BaseException:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            with contextlib.suppress(Exception):
                process.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _submit(pool: Any, fn: Callable, job: tuple) -> Any:
    """``fn(job)`` in ``pool``; an encoder process it starts ignores Ctrl-C."""
    with _children_ignore_ctrl_c():
        return pool.submit(fn, job)


def _encode_all(jobs: list[tuple[str, str, Encoding]], workers: int) -> Iterator[tuple]:
    """:func:`_prepare_one` of every job in ``workers`` encoder processes, as they finish; a
    video that kills its encoder process even alone (a crash in the codec library) is copied
    unchanged and listed (:func:`~a2video.data.processes.map_surviving_crashes`: with
    ``multiprocessing.Pool`` a dead encoder's video was waited for for ever)."""
    for _, result in map_surviving_crashes(
        _prepare_one,
        jobs,
        workers,
        on_crash=functools.partial(_prepare_one, unreadable=CRASHED),
        pool=_encoder_pool,
        submit=_submit,
    ):
        yield result


def _journal(dst: str, reason: str) -> None:
    """Append ``dst``'s unreadable source to the run's journal (before its copy is renamed in:
    a run killed after the rename still lists it)."""
    root = _root_of(dst)
    line = json.dumps({"video": os.path.relpath(dst, root), "reason": reason}) + "\n"
    fd = os.open(os.path.join(root, JOURNAL), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _root_of(dst: str) -> str:
    """The DST root a target path lies in (the folder holding the marker)."""
    for folder in Path(dst).parents:
        if (folder / MARKER).is_file():
            return str(folder)
    raise FileNotFoundError(f"no {MARKER} above {dst}")


def _read_journal(dst: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    path = dst / JOURNAL
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            entry = json.loads(line)
            out[str(entry["video"])] = str(entry["reason"])
    return out


def _leftover(name: str) -> bool:
    """Whether ``name`` is a file a run writes before renaming it into place: a video's
    ``NAME.<pid>.part`` (an earlier a2video's ``NAME.part``), an annotation's
    ``.NAME.<pid>.tmp``."""
    return name.endswith(".part") or (name.startswith(".") and _writer_pid(name) is not None)


def _writer_pid(name: str) -> int | None:
    """The process id in a ``NAME.<pid>.part`` / ``.NAME.<pid>.tmp`` name (None without one)."""
    parts = name.rsplit(".", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2] in ("part", "tmp"):
        return int(parts[1])
    return None


def _remove_leftovers_of_dead_runs(dst: Path) -> None:
    """Remove the part and temp files in ``dst`` whose process is gone (a killed run's; its
    encoders ended with it). Those of a live process (a run beside this one, writing) are
    left to it: removing them made its rename fail."""
    for path in list(dst.rglob("*.part")) + list(dst.rglob(".*.tmp")):
        pid = _writer_pid(path.name)
        if pid is None and not path.name.endswith(".part"):
            continue
        if pid is not None and pid != os.getpid() and _alive(pid):
            continue
        with contextlib.suppress(OSError):
            path.unlink()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (an ended one not yet reaped, a zombie, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    try:  # Linux: the state after the command name
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _copy_if_changed(source: Path, target: Path) -> None:
    """An annotation or other non-video file: copied (temp file, rename) unless the same."""
    if target.is_file() and filecmp.cmp(source, target, shallow=False):
        return
    with replaced_atomically(target) as tmp:
        shutil.copyfile(source, tmp)


def prepare_dataset(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    layout: str,
    encoding: Encoding | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> PrepareReport:
    """Write a re-encoded copy of the dataset at ``src`` into ``dst`` (see the module doc).

    Args:
        src: dataset root (read only).
        dst: output root, outside ``src``; created if needed; a rerun resumes.
        layout: "kinetics" or "ucf101".
        encoding: short side, keyframe interval, crf, frame step (default :class:`Encoding`).
        workers: parallel encoder processes (default: all cores).
        progress: tqdm progress bar.
    """
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    enc = encoding or Encoding()
    check_paths(src, dst, layout)
    if enc.frame_step < 1 or enc.gop < 1 or enc.short_side < 2 or not 0 <= enc.crf <= 51:
        raise PrepareError(
            f"invalid encoding {enc}: frame_step and gop must be >= 1, short_side >= 2, crf 0..51"
        )
    # A prepared source already keeps every source_step-th frame: the copy keeps every
    # (source_step * frame_step)-th frame of the original, and strides count original frames.
    source_step = read_frame_step(src)
    frame_step = source_step * enc.frame_step
    marker = dst / MARKER
    if marker.is_file():
        old = _read_marker(marker)
        changed = old.get("encoding") != enc.__dict__ or old.get("frame_step", 1) != frame_step
        if changed and not any(_is_video(rel) for rel in _walk(dst)):
            # no video written yet (say the encoder refused the first run's options): the
            # options are free again
            marker.unlink()
            with contextlib.suppress(FileNotFoundError):
                (dst / JOURNAL).unlink()
        elif changed:
            raise PrepareError(
                f"{dst} was prepared with {old.get('encoding')} (frame_step "
                f"{old.get('frame_step', 1)}), not {enc.__dict__} (frame_step {frame_step}): "
                "resume with the same options or choose another DST"
            )
    elif dst.is_dir() and any(_is_video(rel) for rel in _walk(dst)):
        # every prepare writes its marker before any video: these videos are not its copies,
        # and those with a source's name would be taken as done without being encoded
        raise PrepareError(
            f"{dst} holds videos but is not a copy made by a2video prepare (no {MARKER}): "
            "they would count as prepared without being encoded; choose a new or empty DST"
        )
    dst.mkdir(parents=True, exist_ok=True)
    if not marker.is_file():
        state = {
            "frame_step": frame_step,
            "encoding": enc.__dict__,
            "source_frame_step": source_step,
        }
        _write_atomically(marker, json.dumps(state))
    _remove_leftovers_of_dead_runs(dst)
    report = PrepareReport()
    readable: set[str] = set()  # videos encoded by this run
    jobs = []
    for rel in _walk(src, outside=dst):
        source = src / rel
        if rel.name in (MARKER, JOURNAL) or _leftover(rel.name):
            continue
        if not _is_video(rel):
            _copy_if_changed(source, dst / rel)
            continue
        report.videos += 1
        target = dst / output_path(rel, layout)
        try:
            report.bytes_before += source.stat().st_size
        except OSError as err:  # a link to nothing: listed (no copy to make), not fatal
            report.unreadable[str(target.relative_to(dst))] = f"{_reason(err)} (not copied)"
            continue
        if target.is_file() or _done_by_an_earlier_version(src, dst, rel, layout):
            report.skipped += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((str(source), str(target), enc))
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    bar = tqdm(total=len(jobs), desc="prepare", unit="video", disable=not progress)
    with bar:  # leaving: the bar's line is ended
        for written, reason, failed in _encode_all(jobs, workers):
            if failed is not None:
                raise PrepareError(
                    f"{written}: writing the prepared copy failed ({failed}); nothing of it "
                    "counts as done: fix the cause (disk space, permissions, the encoding "
                    "options) and rerun the same command to resume"
                )
            report.encoded += 1
            if reason is None:
                readable.add(os.path.relpath(written, dst))
            else:
                report.unreadable[os.path.relpath(written, dst)] = reason
            bar.update()
    state = _read_marker(marker)
    # also those an earlier, interrupted run met (its journal) or recorded whose unchanged
    # copy is still in DST: not a video encoded now (its source replaced, its copy deleted),
    # nor one whose copy was deleted with its source
    earlier = {**state.get("unreadable", {}), **_read_journal(dst)}
    kept = {r: why for r, why in earlier.items() if r not in readable and (dst / r).is_file()}
    state["unreadable"] = {**kept, **report.unreadable}
    report.unreadable = state["unreadable"]
    _write_atomically(marker, json.dumps(state, indent=1))
    lines = [json.dumps({"video": v, "reason": r}) + "\n" for v, r in report.unreadable.items()]
    if lines:  # the same list: a later run reads it again
        _write_atomically(dst / JOURNAL, "".join(lines))
    else:
        with contextlib.suppress(FileNotFoundError):
            (dst / JOURNAL).unlink()
    _remove_leftovers_of_dead_runs(dst)  # also those of processes still ending at the start
    for rel in _walk(dst):
        if _is_video(rel):
            report.bytes_after += (dst / rel).stat().st_size
    return report
