"""A Kinetics split's video folders listed once per node, not once per process.

Matching a Kinetics CSV to its videos lists the split's folders (Kinetics-400's train split:
~300k files in 400 class folders; :func:`~a2video.data.annotations.find_kinetics_videos`). Under
DDP every process of every node did it in ``setup``, on the network file systems clusters keep
datasets on: 8 x N listings of the same folders at the same moment. Now the DataModule's
``prepare_data`` (Lightning: local rank 0 of each node, the other ranks waiting at its barrier)
writes the listing to a cache file and ``setup`` in every process reads it; where there is no
valid cache (a DataModule used without a Trainer, ``prepare_data`` never called) ``setup`` lists
the folders itself, as before. No collective is added: a process that finds no valid cache lists.

The cache lies in the node's temporary folder (``$TMPDIR``, else ``/tmp``:
``a2video-listings-<uid>/``), one file per video folder, keyed by the folder's path. It is used
only while every folder the listing read is in the state it was read in: the same inode,
modification and change time (adding, removing or renaming a video changes its folder's); a
folder changed less than :data:`SETTLE_SECONDS` before it was read (a download still writing)
is not cached, so two changes within one timestamp tick cannot hide. A file system that keeps
no folder times (some FUSE mounts of object stores) needs ``listing_cache=False``.
Files are replaced atomically (two nodes sharing one temporary folder may write at once).

The folder is pruned as a cache: a listing not read nor written for :data:`KEEP_DAYS` days is
removed, checked at most once a day (the time of its :data:`PRUNED` stamp) and only when a
listing is written (a listing read is marked used, at most once a day: its time is set to now).
A listing removed while a process is about to read it is just not there: that process lists
the folders, as without a cache.

A node whose only temporary folder is the working folder (``tempfile``'s last resort when
``$TMPDIR``, ``/tmp``, ``/var/tmp`` and ``/usr/tmp`` are not writable) caches nothing, so that
no cache folder is made in the run's folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import time
from pathlib import Path

from ..atomic_write import replaced_atomically
from . import annotations as ann

log = logging.getLogger(__name__)

VERSION = 1
# a folder modified less than this before it was read is not cached (timestamp ticks, clocks)
SETTLE_SECONDS = 2.0
# a listing neither read nor written for this long is removed (when a listing is written)
KEEP_DAYS = 7
DAY = 24 * 3600.0
PRUNED = ".pruned"  # the cache folder's stamp: its time is that of the last pruning
# the cache files and the temp files of their writers (replaced_atomically, host suffix)
_CACHE_FILE = re.compile(r"\.?[0-9a-f]{24}\.json(\.\d+\.tmp\..+)?")
_said: set[str] = set()  # working folders said to be no temporary folder (one line each)


def cache_dir() -> Path:
    """This user's cache folder in the node's temporary folder; an OSError where the node has
    none (``tempfile`` finds no writable one, or falls back to the working folder)."""
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    folder = tempfile.gettempdir()
    if _is_the_working_folder(folder):
        if folder not in _said and ann.first_process():
            log.info(
                "video listings not cached: no writable temporary folder but the working "
                "folder %s (set TMPDIR to cache them once per node)",
                folder,
            )
        _said.add(folder)
        raise OSError(f"{folder}: the working folder, not a temporary folder")
    return Path(folder) / f"a2video-listings-{uid}"


def _is_the_working_folder(folder: str) -> bool:
    """Whether ``folder`` (``tempfile.gettempdir()``) is the working folder that ``tempfile``
    falls back to, rather than one of the temporary folders it tries first (a run started in
    one of those, or with $TMPDIR naming its working folder, caches there)."""
    here = os.getcwd()  # (tempfile's last candidate, as it names it)
    if folder != here:
        return False
    tried = [os.environ.get(k) for k in ("TMPDIR", "TEMP", "TMP")]
    tried += ["/tmp", "/var/tmp", "/usr/tmp"]  # (POSIX's; elsewhere such a run lists)
    return not any(t and os.path.realpath(t) == os.path.realpath(here) for t in tried)


def _key(video_dir: str | os.PathLike, recursive: bool) -> list:
    # the folder as the scan names it (its paths start with it) and where it is
    return [os.fspath(video_dir), os.path.abspath(video_dir), bool(recursive)]


def cache_path(video_dir: str | os.PathLike, recursive: bool = False) -> Path:
    """The cache file of ``video_dir``'s listing."""
    digest = hashlib.sha1(json.dumps(_key(video_dir, recursive)).encode()).hexdigest()[:24]
    return cache_dir() / f"{digest}.json"


def _state(stat: os.stat_result | None) -> list[int] | None:
    return None if stat is None else [stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns]


def _state_now(path: str) -> list[int] | None:
    try:
        return _state(os.stat(path))
    except OSError:
        return None


def _own_folder(folder: Path) -> bool:
    """Whether ``folder`` is a folder of this user's, closed to others (a shared /tmp: no one
    else's file is read as a listing)."""
    try:
        st = os.stat(folder)
    except OSError:
        return False
    return not hasattr(os, "getuid") or (st.st_uid == os.getuid() and not st.st_mode & 0o077)


def load(video_dir: str | os.PathLike, recursive: bool = False) -> ann.KineticsVideos | None:
    """The cached listing of ``video_dir``, or None where there is none or it is stale."""
    try:  # (cache_path: no usable temporary folder is an OSError too)
        path = cache_path(video_dir, recursive)
        if not _own_folder(path.parent):
            return None
        with open(path, "rb") as f:  # (pruned meanwhile: FileNotFoundError, listed again)
            used = os.fstat(f.fileno()).st_mtime
            data = json.loads(f.read())
        if data["version"] != VERSION or data["key"] != _key(video_dir, recursive):
            return None
        for folder, state in data["folders"]:
            if _state_now(folder) != state:
                log.debug("%s: %s changed since it was listed", path, folder)
                return None
        prefix = data["prefix"]
        index, replacements = (
            dict(zip(stems, [prefix + p for p in paths], strict=True))
            for stems, paths in (data["index"], data["replacements"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, or not a listing: the folders are read
    if time.time() - used > DAY:  # used: kept by the pruning (marked at most once a day)
        with contextlib.suppress(OSError):
            os.utime(path)
    return ann.KineticsVideos(index, replacements)


def scan(video_dir: str | os.PathLike, recursive: bool = False) -> ann.KineticsVideos:
    """List ``video_dir``'s videos (:func:`~a2video.data.annotations.find_kinetics_videos`) and
    cache the listing for the other processes of this node (where its folders are settled)."""
    read: ann.ReadFolders = {}
    videos = ann.find_kinetics_videos(video_dir, recursive, read)
    settled = time.time() - SETTLE_SECONDS
    if any(st is not None and st.st_mtime > settled for st in read.values()):
        log.debug("%s: a folder is being written to; its listing is not cached", video_dir)
        return videos
    try:
        _write(cache_path(video_dir, recursive), video_dir, recursive, videos, read)
    except OSError as err:  # no room, read-only: each process lists, as without a cache
        log.debug("%s: listing not cached: %s", video_dir, err)
    return videos


def _write(
    path: Path,
    video_dir: str | os.PathLike,
    recursive: bool,
    videos: ann.KineticsVideos,
    read: ann.ReadFolders,
) -> None:
    prefix = os.fspath(video_dir)
    paths = [*videos.index.values(), *videos.replacements.values()]
    if not all(p.startswith(prefix) for p in paths):
        prefix = ""
    data = {
        "version": VERSION,
        "key": _key(video_dir, recursive),
        "folders": [[folder, _state(st)] for folder, st in read.items()],
        "prefix": prefix,
        "index": [list(videos.index), [p[len(prefix) :] for p in videos.index.values()]],
        "replacements": [
            list(videos.replacements),
            [p[len(prefix) :] for p in videos.replacements.values()],
        ],
    }
    path.parent.mkdir(mode=0o700, exist_ok=True)
    if not _own_folder(path.parent):
        raise OSError(f"{path.parent} is not this user's own folder")
    prune(path.parent)
    # the host in the temp name: two nodes' processes of one pid sharing this folder
    with replaced_atomically(path, suffix=f".{socket.gethostname()}") as tmp:
        tmp.write_text(json.dumps(data), encoding="utf-8")


def prune(folder: Path) -> None:
    """Remove the listings (and writers' temp files) in this user's cache ``folder`` not read
    nor written for :data:`KEEP_DAYS` days, at most once a day (its :data:`PRUNED` stamp).
    A process reading one meanwhile either has it open (its data stays readable) or finds
    none and lists the folders."""
    now, stamp = time.time(), folder / PRUNED
    with contextlib.suppress(OSError):
        if now - os.stat(stamp).st_mtime < DAY:
            return
    try:
        stamp.touch()  # the other writers of the day skip it from now on
        entries = list(os.scandir(folder))
    except OSError as err:
        log.debug("%s: not pruned: %s", folder, err)
        return
    for entry in entries:
        if not _CACHE_FILE.fullmatch(entry.name):
            continue
        with contextlib.suppress(OSError):  # gone already: another process pruned it
            if now - entry.stat(follow_symlinks=False).st_mtime > KEEP_DAYS * DAY:
                os.unlink(entry.path)
                log.debug("%s: unused for %d days, removed", entry.path, KEEP_DAYS)
