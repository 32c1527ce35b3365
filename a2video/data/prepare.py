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
``<name>.part`` and renamed when complete, so an interrupted run leaves no half file that a
rerun would take as done (reruns skip finished files and redo ``.part`` ones). Videos that
cannot be read are copied unchanged (the loaders' bad-video handling still sees them) and
listed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from .annotations import VIDEO_EXTENSIONS, walk_files

MARKER = "a2video_prepared.json"
LAYOUT_MARKERS = {"kinetics": "annotations", "ucf101": "ucfTrainTestlist"}


class PrepareError(ValueError):
    """Bad arguments to :func:`prepare_dataset` (one line, with the fix)."""


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
    return int(json.loads(marker.read_text()).get("frame_step", 1))


def find_prepared_root(video: str | os.PathLike) -> Path | None:
    """The prepared copy a video file lies in: the nearest folder above it holding
    ``a2video_prepared.json`` (None outside one). Symlinks in the path are not resolved, so a
    copy assembled from links to another tree is still found."""
    for folder in Path(os.path.abspath(video)).parents:
        if (folder / MARKER).is_file():
            return folder
    return None


def video_frame_step(video: str | os.PathLike) -> tuple[int, Path | None]:
    """``(frame_step, prepared root)`` of a video file: that of the prepared copy it lies in
    (:func:`find_prepared_root`), ``(1, None)`` outside one."""
    root = find_prepared_root(video)
    return (1, None) if root is None else (read_frame_step(root), root)


def records_frame_step(videos: Iterable[str | os.PathLike]) -> int:
    """``frame_step`` of the prepared copy that ``videos`` lie in (:func:`video_frame_step`,
    looked up once per folder), 1 outside one, whatever folder the caller names as the root
    (the copy's root or its video folder). Videos from copies with different steps: a
    :class:`PrepareError` naming one of each (a stride cannot mean the same time in both)."""
    first: dict[int, str] = {}  # step -> a video with it
    folders: set[str] = set()
    for video in videos:
        folder = os.path.dirname(os.path.abspath(video))
        if folder in folders:
            continue
        folders.add(folder)
        first.setdefault(video_frame_step(video)[0], str(video))
    if len(first) > 1:
        (a, va), (b, vb) = sorted(first.items())[:2]
        raise PrepareError(
            f"{vb}: this split mixes videos of prepared copies with frame_step {b} and {a} "
            f"(e.g. {va}); point its annotation file at one copy (a2video prepare the rest)."
        )
    return next(iter(first), 1)


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def output_path(rel: Path, layout: str) -> Path:
    """Where a source video goes: Kinetics ``.mp4`` (CSVs name stems); UCF-101 keeps its name.

    UCF-101 split files name ``Class/v_..._gXX_cYY.avi``, so the file keeps that name and holds
    an MP4 container (decoders read the container from the bytes, not from the name).
    """
    return rel.with_suffix(".mp4") if layout == "kinetics" else rel


def check_paths(src: Path, dst: Path, layout: str) -> None:
    if layout not in LAYOUT_MARKERS:
        raise PrepareError(f"layout must be kinetics or ucf101, got {layout!r}")
    if not src.is_dir():
        raise PrepareError(f"{src}: source dataset folder not found")
    s, d = src.resolve(), dst.resolve()
    if d == s or s in d.parents:
        raise PrepareError(f"{dst} is inside the source {src}: choose a DST outside SRC")
    if d in s.parents:
        raise PrepareError(f"the source {src} is inside {dst}: choose a DST outside SRC")
    if not (src / LAYOUT_MARKERS[layout]).is_dir():
        raise PrepareError(
            f"{src}: no {LAYOUT_MARKERS[layout]}/ folder, not a {layout} dataset root "
            "(fix: point SRC at the dataset root or pick the right --layout)"
        )


def _walk(src: Path) -> Iterator[Path]:
    """Every file below ``src``, relative to it; symlinked folders are followed (as the loaders
    do), each real folder once."""
    for path in walk_files(src):
        yield Path(path).relative_to(src)


def _output_size(w: int, h: int, short_side: int) -> tuple[int, int]:
    """Even (W, H) with the short side at most ``short_side`` (never upscaled)."""
    scale = min(1.0, short_side / min(w, h))
    return max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2)


def transcode(src: str | os.PathLike, dst: str | os.PathLike, enc: Encoding) -> int:
    """Re-encode the first video stream of ``src`` into an MP4 at ``dst``; frames written.

    Raises on a file with no decodable video. Phone-video rotation is applied to the pixels.
    """
    import av
    import numpy as np

    with av.open(str(src), metadata_errors="ignore") as inp:
        if not inp.streams.video:
            raise ValueError("no video stream")
        stream = inp.streams.video[0]
        rate = Fraction(stream.average_rate or stream.guessed_rate or 25)
        out_rate = (rate / enc.frame_step).limit_denominator(1001)
        with av.open(str(dst), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            ostream = out.add_stream("libx264", rate=out_rate, options=enc.x264_options())
            ostream.pix_fmt = "yuv420p"
            ostream.codec_context.thread_count = 1
            written = 0
            for k, frame in enumerate(inp.decode(stream)):
                if k % enc.frame_step:
                    continue
                rotation = int(getattr(frame, "rotation", 0) or 0) % 360
                if rotation % 90 == 0 and rotation:
                    arr = np.rot90(frame.to_ndarray(format="rgb24"), k=rotation // 90)
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), "rgb24")
                if written == 0:
                    ostream.width, ostream.height = _output_size(
                        frame.width, frame.height, enc.short_side
                    )
                frame = frame.reformat(
                    ostream.width, ostream.height, "yuv420p", interpolation="AREA"
                )
                frame.pts, frame.time_base = written, 1 / out_rate
                for packet in ostream.encode(frame):
                    out.mux(packet)
                written += 1
            if written == 0:
                raise ValueError("no decodable video frames")
            for packet in ostream.encode():
                out.mux(packet)
    return written


def _prepare_one(job: tuple[str, str, Encoding]) -> tuple[str, str | None]:
    """Encode one video to ``<dst>.part`` then rename; on failure copy the source unchanged."""
    src, dst, enc = job
    part = dst + ".part"
    try:
        transcode(src, part, enc)
        os.replace(part, dst)
        return dst, None
    except Exception as err:  # any decoder/encoder failure: listed, not fatal
        if os.path.exists(part):
            os.remove(part)
        text = str(err).strip().splitlines()
        reason = f"{type(err).__name__}: {text[-1][:160] if text else ''}"
        shutil.copyfile(src, part)
        os.replace(part, dst)
        return dst, reason


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
    from multiprocessing import get_context

    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    enc = encoding or Encoding()
    check_paths(src, dst, layout)
    if enc.frame_step < 1 or enc.gop < 1 or enc.short_side < 2:
        raise PrepareError(f"invalid encoding {enc}")
    # A prepared source already keeps every source_step-th frame: the copy keeps every
    # (source_step * frame_step)-th frame of the original, and strides count original frames.
    source_step = read_frame_step(src)
    frame_step = source_step * enc.frame_step
    marker = dst / MARKER
    if marker.is_file():
        old = json.loads(marker.read_text())
        if old.get("encoding") != enc.__dict__ or old.get("frame_step", 1) != frame_step:
            raise PrepareError(
                f"{dst} was prepared with {old.get('encoding')} (frame_step "
                f"{old.get('frame_step', 1)}), not {enc.__dict__} (frame_step {frame_step}): "
                "resume with the same options or choose another DST"
            )
    dst.mkdir(parents=True, exist_ok=True)
    if not marker.is_file():
        state = {
            "frame_step": frame_step,
            "encoding": enc.__dict__,
            "source_frame_step": source_step,
        }
        marker.write_text(json.dumps(state))
    report = PrepareReport()
    jobs = []
    for rel in _walk(src):
        source = src / rel
        if rel.name == MARKER:
            continue
        if not _is_video(rel):
            target = dst / rel
            if not target.exists() or target.stat().st_size != source.stat().st_size:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
            continue
        report.videos += 1
        report.bytes_before += source.stat().st_size
        target = dst / output_path(rel, layout)
        if target.is_file():
            report.skipped += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((str(source), str(target), enc))
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    bar = tqdm(total=len(jobs), desc="prepare", unit="video", disable=not progress)
    with get_context("spawn").Pool(workers) as pool:
        for written, reason in pool.imap_unordered(_prepare_one, jobs):
            report.encoded += 1
            if reason is not None:
                report.unreadable[os.path.relpath(written, dst)] = reason
            bar.update()
    bar.close()
    state = json.loads(marker.read_text())
    state["unreadable"] = {**state.get("unreadable", {}), **report.unreadable}
    report.unreadable = state["unreadable"]  # also those a previous, interrupted run met
    marker.write_text(json.dumps(state, indent=1))
    for rel in _walk(dst):
        if _is_video(rel):
            report.bytes_after += (dst / rel).stat().st_size
    return report
