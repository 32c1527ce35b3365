"""Video decoders behind one interface (decord default, PyAV fallback; torchcodec, NVDEC optional).

``get_decoder(name)`` returns an object with ``open(path) -> reader``; a reader has
``num_frames``, ``fps``, ``height``, ``width``, ``get_frames(indices) -> uint8 (T, H, W, 3)``
and ``close()``. Every failure (missing file, not a video, no video stream, truncated data)
surfaces as one exception type, :class:`VideoDecodeError`, carrying the path and a reason.

Readers decode only the frames a clip needs: ``get_frames`` takes any list of indices
(repeats and any order allowed), decodes each distinct frame once and gathers the result.
The NVDEC reader returns its frames on the GPU that decoded them. :func:`iter_frames` hands the
distinct frames over in chunks of at most :data:`CHUNK_BYTES` as they are decoded (decord and
PyAV), so a caller that shrinks each chunk (the datasets' resize) never holds all of a sample's
frames at full size: ~80 frames of a 4K video are 2 GB.

This module imports only torch at the top (decoders import their library when opened), so
GPU-side tools can use it without PyAV, decord or numpy.
"""

from __future__ import annotations

import importlib.util
import math
import os
import struct
import sys
from collections.abc import Iterator, Sequence
from typing import NamedTuple, Protocol

import torch

DECODERS = ("decord", "pyav", "torchcodec", "nvdec")

# Decoded frames per chunk of iter_frames, in bytes: one frame of 4K (24.9 MB), 5 of 1080p, all
# of a Kinetics-sized sample (80 frames of 340x256: 20.9 MB) in one chunk, as before.
CHUNK_BYTES = 32 << 20


class VideoDecodeError(RuntimeError):
    """A video that cannot be used, with its path and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across DataLoader workers
        return (VideoDecodeError, (self.path, self.reason))


class DecoderUnavailableError(ImportError, ValueError):
    """A decoder whose package is not installed (one line naming what to install).

    An ``ImportError`` (what it is) and a ``ValueError`` (a bad ``decoder`` setting), so the
    entry points print it in one line (:func:`a2video.errors.is_user_error`).
    """


class VideoReader(Protocol):
    num_frames: int
    fps: float
    height: int
    width: int

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor: ...

    def close(self) -> None: ...


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise VideoDecodeError(path, "file not found")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")


def select_frames(frames: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
    """``frames[positions]`` along the first dim, as one ``index_select``.

    The one way the data path gathers frames: on uint8 frames advanced indexing copies byte by
    byte, ~20× slower than ``index_select`` (1.7 ms against 0.09 ms for 8 frames of 256×456).
    Returns ``frames`` itself when ``positions`` is ``0..len-1``. Frames on a GPU (NVDEC's) are
    stacked from views instead: an index made from host numbers there is a blocking copy that
    waits for the decoding thread's queued work, once per clip.
    """
    positions = [int(p) for p in positions]
    if positions == list(range(frames.shape[0])):
        return frames
    if frames.device.type != "cpu":
        return torch.stack([frames[p] for p in positions])
    index = torch.tensor(positions, dtype=torch.long)
    return frames.index_select(0, index)


def iter_frames(
    reader, indices: Sequence[int], max_bytes: int | None = CHUNK_BYTES
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """The distinct frames of ``indices`` as ``(frame indices, uint8 (m, H, W, 3))`` chunks, each
    of at most ``max_bytes`` (at least one frame; ``None``: one chunk), handed over as decoded.

    Every distinct index comes in some chunk, in increasing order within a chunk. An index may
    come again in a later chunk (a decoder that starts over: PyAV's pass from the first frame
    after a seek that missed frames, decord's fall back to PyAV); the later frames are the ones
    :meth:`get_frames` returns, so a caller keeps the last it got for each index. Readers without
    an ``iter_frames`` method (torchcodec, NVDEC) give one chunk of ``get_frames``.
    """
    chunks = getattr(reader, "iter_frames", None)
    if chunks is not None:
        yield from chunks(indices, max_bytes)
        return
    uniq = sorted({int(i) for i in indices})
    yield uniq, reader.get_frames(uniq)


def gather_frames(chunks: Iterator[tuple[list[int], torch.Tensor]], uniq: list[int]):
    """The frames of :func:`iter_frames` chunks as one ``(len(uniq), H, W, 3)`` tensor in
    ``uniq`` order, the last chunk's frame where an index came twice."""
    latest: dict[int, torch.Tensor] = {}
    only = None
    for idx, frames in chunks:
        only = (idx, frames) if not latest else None
        for row, i in enumerate(idx):
            latest[i] = frames[row]
    if only is not None and only[0] == uniq:
        return only[1]
    return torch.stack([latest[i] for i in uniq])


def _per_chunk(max_bytes: int | None, frame_bytes: int) -> int | None:
    """Frames per chunk of ``max_bytes`` (``None``: all), at least one."""
    return None if max_bytes is None else max(1, max_bytes // max(1, frame_bytes))


def _unique(indices: Sequence[int], num_frames: int, path: str) -> tuple[list[int], list[int]]:
    """Distinct sorted indices and, for every requested index, its position among them."""
    idx = [int(i) for i in indices]
    if not idx:
        raise ValueError("get_frames needs at least one index")
    if min(idx) < 0 or max(idx) >= num_frames:
        raise VideoDecodeError(path, f"frame index out of range [0, {num_frames}): {idx}")
    uniq = sorted(set(idx))
    pos = {v: k for k, v in enumerate(uniq)}
    return uniq, [pos[i] for i in idx]


# --------------------------------------------------------------------------- display matrix
class Orientation(NamedTuple):
    """How players turn the stored picture into the one they show: swap rows and columns
    (``transpose``), then reverse the rows (``flip_rows``), then the columns (``flip_cols``)."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False


UPRIGHT = Orientation()


def display_orientation(matrix: Sequence[int] | None) -> Orientation:
    """The :class:`Orientation` of a display matrix (FFmpeg's 9 ints, row-major, as the frames'
    ``DISPLAYMATRIX`` side data and the mp4 ``tkhd`` box hold it; ``None``: none).

    Its 2x2 part ``[[a, b], [c, d]]`` is one of the 8 right-angle turns of the picture: the 4
    rotations and, with a negative determinant, the 4 mirrored ones (front cameras, editing
    apps' flips), each shown as ffplay and ffmpeg's autorotate show it. A matrix that turns by
    another angle leaves the frames as stored.
    """
    if matrix is None:
        return UPRIGHT
    a, b, _, c, d = (float(v) for v in matrix[:5])
    tol = 0.02 * max(abs(a), abs(b), abs(c), abs(d))  # ffplay: within ~1 degree
    if tol > 0 and abs(b) <= tol and abs(c) <= tol:
        return Orientation(False, d < 0, a < 0)
    if tol > 0 and abs(a) <= tol and abs(d) <= tol:
        return Orientation(True, b < 0, c < 0)
    return UPRIGHT


def apply_orientation(frames, orientation: Orientation):
    """``(m, H, W, C)`` frames as shown: a numpy array, or a tensor on any device (NVDEC's);
    a contiguous copy unless upright."""
    if orientation == UPRIGHT:
        return frames
    if isinstance(frames, torch.Tensor):
        if orientation.transpose:
            frames = frames.transpose(1, 2)
        dims = [d for d, flip in ((1, orientation.flip_rows), (2, orientation.flip_cols)) if flip]
        return frames.flip(dims) if dims else frames.contiguous()
    import numpy as np

    if orientation.transpose:
        frames = frames.transpose(0, 2, 1, 3)
    if orientation.flip_rows:
        frames = frames[:, ::-1]
    if orientation.flip_cols:
        frames = frames[:, :, ::-1]
    return np.ascontiguousarray(frames)


# FFmpeg's display rotation (degrees counter-clockwise) as the turn that shows the picture
_TURNS = {
    90: Orientation(True, True, False),
    180: Orientation(False, True, True),
    270: Orientation(True, False, True),
}


def rotation_orientation(degrees: float) -> Orientation:
    """The :class:`Orientation` of a display matrix that only rotates, by FFmpeg's rotation
    angle (PyAV's ``frame.rotation``); an angle that is no right angle leaves the frames as
    stored."""
    return _TURNS.get(round(degrees) % 360, UPRIGHT)


def video_orientation(path: str | os.PathLike, frame) -> Orientation:
    """How players turn ``path``'s frames (``frame``: one of them, decoded by PyAV): the display
    matrix of an MP4/MOV or Matroska/WebM header (:func:`display_matrix`, read as FFmpeg reads
    it: mirrors too), else the frame's display rotation (other containers: right-angle turns).

    Not from ``frame.side_data``: PyAV's side-data container and the frame refer to each other,
    so each frame read that way (and its decoder's buffer) lived until a garbage collection,
    and DataLoader workers forked beside the NVDEC threads hung (tests/test_data_mixed.py).
    """
    matrix = display_matrix(path)
    if matrix is not None:
        return display_orientation(matrix)
    return rotation_orientation(getattr(frame, "rotation", 0) or 0)


def display_matrix(path: str | os.PathLike) -> tuple[int, ...] | None:
    """The display matrix FFmpeg's demuxer gives a file's first video track, read from its header:
    MP4/MOV (the ``tkhd`` matrix times the ``mvhd`` one) or Matroska/WebM (the track's
    ``Projection`` pose), told apart by the file's first bytes, not its name; ``None`` for other
    containers, a header without one, or unreadable headers. Reads element headers only
    (microseconds), so a decoder without display-matrix support can tell which files it would
    show turned."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if f.read(4) == _EBML_MAGIC:
                return _mkv_matrix(f, size)
            return _mp4_matrix(f, size)
    except (OSError, ValueError, struct.error):
        return None


def _mp4_matrix(f, size: int) -> tuple[int, ...] | None:
    """The MP4/MOV display matrix of :func:`display_matrix`, as mov.c reads it."""
    moov = _box(f, 0, size, b"moov")
    if moov is None:
        return None
    movie = _matrix(f, _box(f, *moov, b"mvhd"), (36, 48))
    for kind, start, end in _boxes(f, *moov):
        mdia = _box(f, start, end, b"mdia") if kind == b"trak" else None
        hdlr = _box(f, *mdia, b"hdlr") if mdia else None
        if hdlr is None:
            continue
        f.seek(hdlr[0] + 8)
        if f.read(4) == b"vide":
            track = _matrix(f, _box(f, start, end, b"tkhd"), (40, 52))
            return _combine(track, movie) if track and movie else track
    return None


def _boxes(f, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """``(type, body start, end)`` of the ISO-BMFF boxes between ``start`` and ``end``."""
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        size, kind = struct.unpack(">I4s", f.read(8))
        body = pos + 8
        if size == 1:  # 64-bit size
            size, body = struct.unpack(">Q", f.read(8))[0], body + 8
        elif size == 0:  # to the end
            size = end - pos
        if size < body - pos:
            return  # corrupt header: no more boxes
        yield kind, body, min(pos + size, end)
        pos += size


def _box(f, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    """``(body start, end)`` of the first box of type ``kind`` between ``start`` and ``end``."""
    return next(((b, e) for k, b, e in _boxes(f, start, end) if k == kind), None)


def _matrix(f, box: tuple[int, int] | None, offsets: tuple[int, int]) -> list[int] | None:
    """The 9 matrix ints of an ``mvhd``/``tkhd`` box, at ``offsets[version]`` in its body."""
    if box is None:
        return None
    f.seek(box[0])
    version = f.read(1)  # b"" where the file ends there: the unpack below says it is cut
    f.seek(box[0] + offsets[version == b"\x01"])
    return list(struct.unpack(">9i", f.read(36)))


def _combine(track: list[int], movie: list[int]) -> tuple[int, ...]:
    """``track x movie`` in FFmpeg's fixed point (16.16, the last column 2.30), as mov.c does."""
    shift = (16, 16, 30)
    return tuple(
        sum((track[3 * i + e] * movie[3 * e + j]) >> shift[e] for e in range(3))
        for i in range(3)
        for j in range(3)
    )


# Matroska/WebM element IDs (EBML, RFC 9559) on the way to a video track's Projection pose
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_EBML, _SEGMENT, _TRACKS, _CLUSTER = 0x1A45DFA3, 0x18538067, 0x1654AE6B, 0x1F43B675
_SEEKHEAD, _SEEK, _SEEK_ID, _SEEK_POSITION = 0x114D9B74, 0x4DBB, 0x53AB, 0x53AC
_TRACK_ENTRY, _TRACK_TYPE, _VIDEO, _PROJECTION = 0xAE, 0x83, 0xE0, 0x7670
_PROJECTION_TYPE, _PROJECTION_PRIVATE = 0x7671, 0x7672
_YAW, _PITCH, _ROLL = 0x7673, 0x7674, 0x7675
_MKV_LEVEL1_MAX = 64  # Segment children looked at (SeekHead, Info, Tags...; FFmpeg keeps 64)
_MKV_ELEMENT_MAX = 1 << 20  # the largest Tracks or SeekHead read (a few hundred bytes is usual)
_MKV_SEEKHEADS_MAX = 4  # SeekHeads read (RFC 9559: a second one, listed in the first, at most)


def _mkv_matrix(f, size: int) -> tuple[int, ...] | None:
    """The Matroska/WebM display matrix of :func:`display_matrix`: the first video track's
    ``Projection``, as matroskadec.c maps it. Walks the Segment's children from its start to
    the Tracks element and reads that one alone; where the first Cluster (or the end) comes
    first, follows the SeekHeads met on the way to the Tracks they point at, as FFmpeg does
    (Tracks written after the media). Reads element headers, and whole only a Tracks element
    and up to :data:`_MKV_SEEKHEADS_MAX` SeekHeads of at most :data:`_MKV_ELEMENT_MAX` bytes."""
    eid, body, length = _ebml_head(f, 0)
    if eid != _EBML or length is None:
        return None
    eid, pos, length = _ebml_head(f, body + length)
    if eid != _SEGMENT:
        return None
    segment = pos  # SeekPositions count from here
    end = size if length is None else min(size, pos + length)  # live WebM: size unknown
    heads: dict[int, tuple[int, int]] = {}  # the SeekHeads met: offset -> (body, size)
    for _ in range(_MKV_LEVEL1_MAX):
        if pos >= end:
            break
        eid, body, length = _ebml_head(f, pos)
        if eid == _TRACKS:
            return _mkv_tracks(f, body, length)
        if eid == _CLUSTER or length is None:
            break
        if eid == _SEEKHEAD and len(heads) < _MKV_SEEKHEADS_MAX:
            heads[pos] = (body, length)  # read only where no Tracks come before a Cluster
        pos = body + length
    seen = set(heads)  # the SeekHeads read, by offset
    seeks = [seek for head in heads.values() for seek in _mkv_seeks(f, *head, segment)]
    for eid, pos in seeks:  # in order; the entries of a SeekHead listed in one join the end
        if eid == _TRACKS:  # the first one listed, as FFmpeg reads it
            kind, body, length = _ebml_head(f, pos)
            return _mkv_tracks(f, body, length) if kind == _TRACKS else None
        if eid == _SEEKHEAD and pos not in seen and len(seen) < _MKV_SEEKHEADS_MAX:
            seen.add(pos)
            kind, body, length = _ebml_head(f, pos)
            if kind == _SEEKHEAD:
                seeks += _mkv_seeks(f, body, length, segment)
    return None


def _mkv_element(f, body: int, length: int | None) -> bytes | None:
    """An element's body (``None``: unknown size, larger than :data:`_MKV_ELEMENT_MAX`, or cut
    off by the file's end)."""
    if length is None or length > _MKV_ELEMENT_MAX:
        return None
    f.seek(body)
    data = f.read(length)
    return data if len(data) == length else None


def _mkv_tracks(f, body: int, length: int | None) -> tuple[int, ...] | None:
    """The display matrix of the Tracks element whose body starts at ``body``."""
    data = _mkv_element(f, body, length)
    return None if data is None else _tracks_matrix(data)


def _mkv_seeks(f, body: int, length: int | None, segment: int) -> list[tuple[int, int]]:
    """``(element ID, file offset)`` of a SeekHead's Seek entries (``segment``: the Segment's
    body start, which their SeekPosition counts from)."""
    data = _mkv_element(f, body, length)
    seeks: list[tuple[int, int]] = []
    if data is None:
        return seeks
    try:
        for eid, start, stop in _ebml_children(data, 0, len(data)):
            fields = _ebml_fields(data, start, stop) if eid == _SEEK else {}
            if _SEEK_ID in fields and _SEEK_POSITION in fields:
                target = _ebml_uint(data, fields[_SEEK_ID], 0)
                seeks.append((target, segment + _ebml_uint(data, fields[_SEEK_POSITION], 0)))
    except ValueError:  # a corrupt entry: those before it, and the walk to the Tracks, stand
        pass
    return seeks


def _tracks_matrix(data: bytes) -> tuple[int, ...] | None:
    """The display matrix of the first video ``TrackEntry`` in a Tracks element's body."""
    for eid, start, end in _ebml_children(data, 0, len(data)):
        entry = _ebml_fields(data, start, end) if eid == _TRACK_ENTRY else {}
        if _ebml_uint(data, entry.get(_TRACK_TYPE), 0) != 1:  # 1: video
            continue
        video = entry.get(_VIDEO)
        projection = _ebml_fields(data, *video).get(_PROJECTION) if video else None
        if projection is None:
            return None
        fields = _ebml_fields(data, *projection)
        private = fields.get(_PROJECTION_PRIVATE)
        if _ebml_uint(data, fields.get(_PROJECTION_TYPE), 0) != 0 or (
            private and private[1] > private[0] and data[private[0]] != 0
        ):
            return None  # a spherical projection (360-degree video), or an unknown one
        pose = (_ebml_float(data, fields.get(k)) for k in (_YAW, _PITCH, _ROLL))
        return _pose_matrix(*pose)
    return None


def _pose_matrix(yaw: float, pitch: float, roll: float) -> tuple[int, ...] | None:
    """matroskadec.c's display matrix of a rectangular Projection's pose, in degrees: a yaw of
    180 mirrors left-right, then the roll turns counter-clockwise; any pitch (RFC 9559's upside
    down flip among them) or another yaw gives none, so FFmpeg's players show it as stored."""
    if (yaw, pitch, roll) == (0, 0, 0) or pitch != 0 or yaw not in (0, 180, -180):
        return None
    if not math.isfinite(roll):
        return None
    hflip = yaw != 0
    radians = -(roll * (2 * hflip - 1)) * math.pi / 180.0  # av_display_rotation_set's
    c, s = (int(v * 65536) for v in (math.cos(radians), math.sin(radians)))
    sign = -1 if hflip else 1  # av_display_matrix_flip's, on the first column
    return (sign * c, -s, 0, sign * s, c, 0, 0, 0, 1 << 30)


def _ebml_head(f, pos: int) -> tuple[int, int, int | None]:
    """``(id, body start, body size)`` of the EBML element at file offset ``pos`` (size
    ``None``: unknown)."""
    f.seek(pos)
    eid, at, length = _ebml_element(f.read(12), 0)
    return eid, pos + at, length


def _ebml_element(data: bytes, pos: int) -> tuple[int, int, int | None]:
    """``(id, body start, body size)`` of the EBML element at ``data[pos]`` (size ``None``:
    unknown, all its bits set); a ``ValueError`` where the header is cut off or not EBML."""
    eid, pos = _ebml_vint(data, pos, 4)
    size, end = _ebml_vint(data, pos, 8)
    ones = (1 << 7 * (end - pos)) - 1  # the value bits, without the length marker
    return eid, end, None if size & ones == ones else size & ones


def _ebml_vint(data: bytes, pos: int, max_len: int) -> tuple[int, int]:
    """The EBML variable-length number at ``data[pos]`` with its length marker (at most
    ``max_len`` bytes: as many as the leading zero bits of the first + 1), and the position
    after it."""
    n = 9 - data[pos].bit_length() if pos < len(data) else 9
    if n > max_len or pos + n > len(data):
        raise ValueError("not an EBML element")
    return int.from_bytes(data[pos : pos + n], "big"), pos + n


def _ebml_children(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """``(id, body start, body end)`` of the elements between ``start`` and ``end``."""
    pos = start
    while pos < end:
        eid, body, length = _ebml_element(data, pos)
        if length is None or body + length > end:
            raise ValueError("EBML element of unknown size or past its parent's end")
        pos = body + length
        yield eid, body, pos


def _ebml_fields(data: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    """``{id: (body start, body end)}`` of a master element's children (the last of an id)."""
    return {eid: (body, stop) for eid, body, stop in _ebml_children(data, start, end)}


def _ebml_uint(data: bytes, span: tuple[int, int] | None, default: int) -> int:
    """An unsigned integer element's value (``default`` where absent)."""
    if span is None:
        return default
    if span[1] - span[0] > 8:
        raise ValueError("EBML integer longer than 8 bytes")
    return int.from_bytes(data[span[0] : span[1]], "big")


def _ebml_float(data: bytes, span: tuple[int, int] | None) -> float:
    """A float element's value (0 where absent or empty, as the Projection pose defaults)."""
    if span is None or span[0] == span[1]:
        return 0.0
    fmt = {4: ">f", 8: ">d"}.get(span[1] - span[0])
    if fmt is None:
        raise ValueError("EBML float of neither 4 nor 8 bytes")
    return struct.unpack(fmt, data[span[0] : span[1]])[0]


# --------------------------------------------------------------------------- decord
def import_decord():
    """``import decord``, without the CUDA libraries decord2's import loads for nothing.

    decord2's import dlopens every library of the ``nvidia`` pip packages (torch's cuDNN, cuBLAS,
    NCCL, ...) for its CUDA wheels' sake; a CPU wheel needs none of them, yet each DataLoader
    worker that decoded with decord held ~250 MB of their private memory (~420 MB RSS), sample
    after sample. The ``nvidia`` package is hidden while decord loads (``sys.modules[name] =
    None`` stops its search); a CUDA wheel that cannot load without those libraries is imported
    again as decord2 ships it.
    """
    if "decord" in sys.modules:
        return sys.modules["decord"]
    saved = sys.modules.get("nvidia")
    sys.modules["nvidia"] = None  # type: ignore[assignment]
    try:
        import decord

        return decord
    except OSError:  # a CUDA wheel: libdecord.so needs the CUDA runtime of the nvidia packages
        for name in [n for n in sys.modules if n == "decord" or n.startswith("decord.")]:
            del sys.modules[name]
    finally:
        if saved is None:
            del sys.modules["nvidia"]
        else:
            sys.modules["nvidia"] = saved
    import decord

    return decord


class DecordReader:
    """decord reader; files decord mis-decodes fall back to PyAV.

    decord 0.6 fails on some valid files (rotated phone videos, some frame widths: it
    returns 4-channel frames and raises on copy), decord counts the frames an mp4 edit list
    hides (a stream-copy cut), and decord2 turns a picture by its display matrix's rotation
    angle alone (a mirrored picture comes out rotated or as stored; 90 and 270 degrees fail).
    Those files are decoded with PyAV instead (an mp4, mkv or webm whose display matrix turns
    or mirrors the picture from the start, read from its header); files neither can decode
    raise :class:`VideoDecodeError`.
    """

    def __init__(self, path: str, num_threads: int = 1) -> None:
        decord = import_decord()
        self.path = path
        self._fallback: PyAVReader | None = None
        self._shape: tuple[int, int] | None = None
        _check_file(path)
        if display_orientation(display_matrix(path)) != UPRIGHT:
            self._to_pyav()
            return
        try:
            self._vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=num_threads)
            self.num_frames = len(self._vr)
            self.fps = float(self._vr.get_avg_fps() or 0.0)
        except Exception as err:  # decord raises DECORDError / RuntimeError / IndexError
            raise VideoDecodeError(path, f"decord cannot open: {_short(err)}") from None
        if self.num_frames <= 0:
            raise VideoDecodeError(path, "no decodable video frames")
        if self._hides_frames():
            self._to_pyav()

    def _to_pyav(self) -> None:
        """Decode with PyAV from now on (its frame count and rate)."""
        self._fallback = PyAVReader(self.path)
        self.num_frames, self.fps = self._fallback.num_frames, self._fallback.fps
        self._vr = None

    def _hides_frames(self) -> bool:
        """Whether the video starts with frames before its presentation start (negative
        timestamps: an mp4 edit list hides them, as a stream-copy cut leaves). decord counts and
        returns those, and repeats its last frame for the ones past the end; PyAV, as players,
        leaves them out."""
        try:
            return float(self._vr.get_frame_timestamp(0)[0]) < 0.0
        except Exception:  # no timestamps: nothing to tell
            return False

    def _frame_shape(self) -> tuple[int, int]:
        if self._shape is None:  # decoded on demand: decord has no size property
            frame = self.get_frames([0])
            self._shape = (int(frame.shape[1]), int(frame.shape[2]))
        return self._shape

    @property
    def height(self) -> int:
        return self._frame_shape()[0]

    @property
    def width(self) -> int:
        return self._frame_shape()[1]

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        uniq, pos = _unique(indices, self.num_frames, self.path)
        if self._fallback is not None:
            return self._fallback.get_frames(indices)
        try:
            frames = self._batch(uniq)
        except Exception as err:
            try:  # a file decord cannot handle but PyAV can is still a good video
                self._fallback = PyAVReader(self.path)
            except VideoDecodeError:
                raise VideoDecodeError(self.path, f"cannot decode: {_short(err)}") from None
            return self._fallback.get_frames(indices)
        return select_frames(frames, pos)

    def _batch(self, indices: list[int]) -> torch.Tensor:
        """decord's frames at ``indices``, uint8 ``(m, H, W, 3)``, on the array decord decoded
        them into (DLPack): ``asnumpy()`` copied them once more, through a buffer of its own,
        ~0.4 GB more at the peak for 8 frames of 4K (benchmarks/RESULTS.md)."""
        frames = torch.from_dlpack(self._vr.get_batch(indices).to_dlpack())
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise RuntimeError(f"decord returned frames of shape {tuple(frames.shape)}")
        return frames

    def iter_frames(
        self, indices: Sequence[int], max_bytes: int | None = CHUNK_BYTES
    ) -> Iterator[tuple[list[int], torch.Tensor]]:
        """:func:`iter_frames`: one ``get_batch`` per chunk (the first of one frame, where the
        frame size is not known yet); a chunk decord cannot decode sends the whole list to PyAV,
        as :meth:`get_frames` does."""
        uniq, _ = _unique(indices, self.num_frames, self.path)
        if self._fallback is not None:
            yield from self._fallback.iter_frames(uniq, max_bytes)
            return
        start = 0
        while start < len(uniq):
            if max_bytes is None:
                step = len(uniq)
            elif self._shape is None:
                step = 1
            else:
                step = _per_chunk(max_bytes, self._shape[0] * self._shape[1] * 3)
            chunk = uniq[start : start + step]
            try:
                frames = self._batch(chunk)
            except Exception as err:
                try:  # as get_frames: every frame from PyAV (those yielded are replaced)
                    self._fallback = PyAVReader(self.path)
                except VideoDecodeError:
                    raise VideoDecodeError(self.path, f"cannot decode: {_short(err)}") from None
                yield from self._fallback.iter_frames(uniq, max_bytes)
                return
            if self._shape is None:
                self._shape = (int(frames.shape[1]), int(frames.shape[2]))
            yield chunk, frames
            start += len(chunk)

    def close(self) -> None:
        self._vr = None
        if self._fallback is not None:
            self._fallback.close()
            self._fallback = None


class DecordDecoder:
    name = "decord"

    def __init__(self, num_threads: int = 1) -> None:
        self.num_threads = num_threads

    def open(self, path: str | os.PathLike) -> DecordReader | PyAVReader:
        try:
            return DecordReader(str(path), self.num_threads)
        except VideoDecodeError as err:
            if err.reason.startswith(("file not found", "empty file")):
                raise
            return PyAVReader(str(path))  # raises its own, more precise, VideoDecodeError


# --------------------------------------------------------------------------- PyAV
class PyAVReader:
    """PyAV reader that indexes packets once, then seeks and decodes forward only.

    On open it demuxes (without decoding) the video packets to get every frame's
    presentation time: frame ``i`` is the ``i``-th smallest timestamp, as decord counts it.
    This makes ``num_frames`` exact even when the container's ``frames`` field is 0
    (webm, some avi) and indices stable on variable-frame-rate videos. ``get_frames``
    seeks to the keyframe before the first needed frame and decodes only up to the last.
    """

    def __init__(self, path: str, threads: int = 1) -> None:
        import av

        self.path = path
        _check_file(path)
        self._container = None
        try:
            container = av.open(path, metadata_errors="ignore")
        except Exception as err:
            raise VideoDecodeError(path, f"not a readable video container: {_short(err)}") from None
        self._container = container
        try:
            if not container.streams.video:
                raise VideoDecodeError(path, "no video stream (audio-only or data file)")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO" if threads > 1 else "SLICE"
            stream.codec_context.thread_count = threads
            self._stream = stream
            self._tb = float(stream.time_base)
            pts = []
            for packet in container.demux(stream):
                ts = packet.pts if packet.pts is not None else packet.dts
                # an mp4 edit list's hidden frames (a stream-copy cut: `ffmpeg -ss -c copy`)
                # are decoded as references but never shown: not frames of the video
                if ts is not None and packet.size > 0 and not packet.is_discard:
                    pts.append(ts)
            if not pts:
                pts = self._pts_by_decoding()
            self._pts = sorted(set(pts))
            self._index_of = {p: i for i, p in enumerate(self._pts)}
            self.num_frames = len(self._pts)
            rate = stream.average_rate or stream.guessed_rate
            self.fps = float(rate) if rate else 0.0
            self.height = int(stream.codec_context.height)
            self.width = int(stream.codec_context.width)
            # how players show the frames (display matrix): read once, at the first frame decoded
            self.orientation: Orientation | None = None
        except VideoDecodeError:
            self.close()
            raise
        except Exception as err:
            self.close()
            raise VideoDecodeError(path, f"cannot index video: {_short(err)}") from None
        if self.num_frames == 0 or self.width <= 0:
            self.close()
            raise VideoDecodeError(path, "no decodable video frames")

    def _pts_by_decoding(self) -> list[int]:
        self._container.seek(0)
        return [f.pts for f in self._container.decode(self._stream) if f.pts is not None]

    def decoded(self) -> Iterator:
        """The video's frames from the container's position on, in display order.

        A packet the demuxer marks corrupt (the frame an interrupted download cut in two) is
        left out: sent to the decoder it raised an FFmpeg error that ended the decoding, so the
        frames before it were lost too and the reason named ``avcodec_send_packet()``, not the
        cut; left out, its frame is one that is not decodable.
        """
        for packet in self._container.demux(self._stream):
            if packet.is_corrupt and packet.size:
                continue
            yield from packet.decode()

    def _decode_range(self, wanted: set[int], first: int, last: int, seek: bool) -> Iterator:
        """``(pts, rgb24 array)`` of the ``wanted`` frames from ``first`` to ``last``, as
        decoded; nothing where the seek overshot ``first`` (the caller decodes from the start
        instead)."""
        if seek:
            self._container.seek(first, stream=self._stream, backward=True, any_frame=False)
        else:
            self._container.seek(0, stream=self._stream, backward=True)
        started = False
        for frame in self.decoded():
            if frame.pts is None:
                continue
            if not started:
                started = True
                if self.orientation is None:
                    self.orientation = video_orientation(self.path, frame)
                if frame.pts > first and seek:
                    return  # the seek overshot
            if frame.pts in wanted:
                yield frame.pts, frame.to_ndarray(format="rgb24")
            if frame.pts >= last:
                break

    def _stack(self, arrays: list) -> torch.Tensor:
        """Decoded frames as one ``(m, H, W, 3)`` tensor, as players show them (the display
        matrix's rotation and mirror applied: phone videos, front cameras)."""
        import numpy as np

        frames = arrays[0][None] if len(arrays) == 1 else np.stack(arrays)
        return torch.from_numpy(apply_orientation(frames, self.orientation))

    def iter_frames(
        self, indices: Sequence[int], max_bytes: int | None = CHUNK_BYTES
    ) -> Iterator[tuple[list[int], torch.Tensor]]:
        """:func:`iter_frames`: the frames in chunks as one forward pass decodes them.

        The pass starts at the keyframe before the first frame; one that misses frames (a seek
        that overshot, a frame not decodable after it) is followed by a pass from the first
        frame of the video, whose frames are all handed over again (they replace the first
        pass's, as :meth:`get_frames` returned them).
        """
        uniq, _ = _unique(indices, self.num_frames, self.path)
        index = {self._pts[i]: i for i in uniq}
        first, last = self._pts[uniq[0]], self._pts[uniq[-1]]
        got: set = set()
        for seek in (True, False) if uniq[0] > 0 else (False,):
            got, pending, per = set(), [], None
            try:
                for pts, array in self._decode_range(set(index), first, last, seek):
                    got.add(pts)
                    pending.append((index[pts], array))
                    per = per or _per_chunk(max_bytes, array.nbytes)
                    if per is not None and len(pending) >= per:
                        yield [i for i, _ in pending], self._stack([a for _, a in pending])
                        pending = []
            except Exception as err:
                raise VideoDecodeError(self.path, f"decoding failed: {_short(err)}") from None
            if len(got) == len(index):
                if pending:
                    yield [i for i, _ in pending], self._stack([a for _, a in pending])
                return
        have = sorted(self._index_of[p] for p in got)
        missing = [i for i in uniq if self._pts[i] not in got]
        raise VideoDecodeError(
            self.path,
            f"truncated or corrupt: frames {missing[:5]} of {self.num_frames} not decodable"
            + (f" (decoded up to {have[-1]})" if have else ""),
        )

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        uniq, pos = _unique(indices, self.num_frames, self.path)
        return select_frames(gather_frames(self.iter_frames(uniq, None), uniq), pos)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


class PyAVDecoder:
    name = "pyav"

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads

    def open(self, path: str | os.PathLike) -> PyAVReader:
        return PyAVReader(str(path), self.threads)


# --------------------------------------------------------------------------- torchcodec
class TorchCodecReader:
    def __init__(self, path: str) -> None:
        from torchcodec.decoders import VideoDecoder

        self.path = path
        _check_file(path)
        try:
            self._dec = VideoDecoder(path, dimension_order="NHWC", num_ffmpeg_threads=1)
            meta = self._dec.metadata
            self.num_frames = int(meta.num_frames or len(self._dec))
            self.fps = float(meta.average_fps or 0.0)
            self.height, self.width = int(meta.height), int(meta.width)
        except Exception as err:
            raise VideoDecodeError(path, f"torchcodec cannot open: {_short(err)}") from None
        if self.num_frames <= 0:
            raise VideoDecodeError(path, "no decodable video frames")

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        uniq, pos = _unique(indices, self.num_frames, self.path)
        try:
            frames = self._dec.get_frames_at(indices=uniq).data
        except Exception as err:
            raise VideoDecodeError(self.path, f"torchcodec cannot decode: {_short(err)}") from None
        return select_frames(frames, pos)

    def close(self) -> None:
        self._dec = None


class TorchCodecDecoder:
    name = "torchcodec"

    def open(self, path: str | os.PathLike) -> TorchCodecReader:
        return TorchCodecReader(str(path))


# --------------------------------------------------------------------------- NVDEC
def nvdec_frames_to_uint8(frames: Sequence, path: str = "") -> torch.Tensor:
    """PyNvVideoCodec RGB frames (DLPack, interleaved ``(H, W, 3)`` uint8) -> ``(T, H, W, 3)``.

    Zero-copy per frame (``torch.from_dlpack``), one stack on the frames' device. A frame
    handed over flat as ``(H, W * 3)`` is viewed as ``(H, W, 3)``.
    """
    out = []
    for frame in frames:
        x = torch.from_dlpack(frame)
        if x.ndim == 2 and x.shape[1] % 3 == 0:
            x = x.view(x.shape[0], x.shape[1] // 3, 3)
        if x.ndim != 3 or x.shape[-1] != 3 or x.dtype != torch.uint8:
            raise VideoDecodeError(path, f"NVDEC returned a frame of {x.dtype} {tuple(x.shape)}")
        out.append(x)
    return torch.stack(out)


class NvdecReader:
    """NVDEC reader (PyNvVideoCodec ``SimpleDecoder``): frames decoded on the GPU, returned there.

    The decoder object is reused across files (``reconfigure_decoder``), so opening a file
    costs no new decoding session. Frame ``i`` is the ``i``-th frame in display order, as for
    the other readers.
    """

    def __init__(self, path: str, owner: NvdecDecoder) -> None:
        self.path = path
        _check_file(path)
        try:
            self._dec = owner.simple_decoder(path)
            meta = self._dec.get_stream_metadata()
            self.num_frames = len(self._dec)
            self.fps = float(getattr(meta, "average_fps", 0.0) or 0.0)
            self.height, self.width = int(meta.height), int(meta.width)
        except VideoDecodeError:
            raise
        except Exception as err:
            raise VideoDecodeError(path, f"NVDEC cannot open: {_short(err)}") from None
        if self.num_frames <= 0:
            raise VideoDecodeError(path, "no decodable video frames")
        # NVDEC hands over the frames as coded: the header's display matrix is applied here
        self.orientation = display_orientation(display_matrix(path))

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        uniq, pos = _unique(indices, self.num_frames, self.path)
        try:
            frames = self._dec.get_batch_frames_by_index(uniq)
        except Exception as err:
            raise VideoDecodeError(self.path, f"NVDEC cannot decode: {_short(err)}") from None
        if len(frames) != len(uniq):
            raise VideoDecodeError(
                self.path, f"truncated or corrupt: NVDEC returned {len(frames)} of {len(uniq)}"
            )
        tensor = apply_orientation(nvdec_frames_to_uint8(frames, self.path), self.orientation)
        return select_frames(tensor, pos)

    def close(self) -> None:
        self._dec = None  # the session stays with the decoder object for the next file


class NvdecDecoder:
    """NVDEC through PyNvVideoCodec on GPU ``gpu_id`` (default: the current CUDA device).

    Use in the main process (``num_workers: 0``): CUDA does not survive a fork into
    DataLoader workers. Frames come back as uint8 on that GPU.
    """

    name = "nvdec"

    def __init__(self, gpu_id: int | None = None) -> None:
        nvc = _import_pynvvideocodec()
        self.gpu_id = torch.cuda.current_device() if gpu_id is None else gpu_id
        self._nvc = nvc
        self._simple = None

    def simple_decoder(self, path: str):
        """The cached ``SimpleDecoder``, pointed at ``path``."""
        if self._simple is None:
            self._simple = self._nvc.SimpleDecoder(
                path,
                gpu_id=self.gpu_id,
                use_device_memory=True,
                output_color_type=self._nvc.OutputColorType.RGB,
            )
        else:
            self._simple.reconfigure_decoder(path)
        return self._simple

    def open(self, path: str | os.PathLike) -> NvdecReader:
        return NvdecReader(str(path), self)

    def __getstate__(self) -> dict:  # the native decoder does not pickle; remade on use
        state = self.__dict__.copy()
        state["_simple"], state["_nvc"] = None, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._nvc = _import_pynvvideocodec()


def _import_pynvvideocodec():
    """PyNvVideoCodec, or a one-line :class:`DecoderUnavailableError` saying what is missing
    (package, GPU, driver) and how to get it; :func:`check_decoder` adds the CPU alternative."""
    if importlib.util.find_spec("PyNvVideoCodec") is None:
        raise DecoderUnavailableError(
            "decoder='nvdec' needs PyNvVideoCodec: pip install 'a2video[nvdec]'"
        )
    if not torch.cuda.is_available():
        raise DecoderUnavailableError(
            "decoder='nvdec' needs an NVIDIA GPU and its driver, and torch finds none here "
            "(torch.cuda.is_available() is False): run on a machine with an NVIDIA GPU"
        )
    try:
        import PyNvVideoCodec as nvc
    except Exception as err:  # e.g. libcuda / libnvcuvid missing from the driver install
        raise DecoderUnavailableError(
            f"decoder='nvdec': PyNvVideoCodec does not load ({_short(err)}): "
            "check the NVIDIA driver (libnvcuvid)"
        ) from None
    return nvc


# --------------------------------------------------------------------------- factory
def available_decoders() -> list[str]:
    names = []
    for name, module in (("decord", "decord"), ("pyav", "av"), ("torchcodec", "torchcodec")):
        if importlib.util.find_spec(module) is not None:
            names.append(name)
    if importlib.util.find_spec("PyNvVideoCodec") is not None and torch.cuda.is_available():
        names.append("nvdec")
    return names


_OPTIONAL = ("decord", "torchcodec")  # decoders that are a pip package of the same name


def check_decoder(
    name: str, option: str = "decoder", choices: tuple[str, ...] | None = None
) -> str:
    """The decoder ``name`` stands for (``"auto"``: decord where installed, else PyAV), after
    checking it can run here: an unknown name is a ``ValueError``, a missing package (or, for
    ``nvdec``, no GPU or driver) a :class:`DecoderUnavailableError`, each one line naming the
    value and the fix.

    Args:
        name: the decoder setting.
        option: how the caller's user sets it, named in the message and the fix: a flag
            (``--data.decoder``, the DataModules'; ``--decoder``, ``a2video predict``'s) or a
            keyword (``decoder``, from Python).
        choices: the values that setting accepts, listed in the messages (default: ``auto``
            and every decoder).
    """
    accepted = tuple(choices) if choices is not None else ("auto", *DECODERS)
    listed = ", ".join(accepted)
    if name == "auto":
        return "decord" if importlib.util.find_spec("decord") is not None else "pyav"
    if name == "av":
        return "pyav"
    if name not in DECODERS or name not in accepted:
        raise ValueError(f"unknown decoder {name!r}; choose from {listed}")
    if name in _OPTIONAL and importlib.util.find_spec(name) is None:
        raise DecoderUnavailableError(
            f"{_setting(option, name)} but {name} is not installed: pip install {name}, "
            f"or use {_setting(option, 'auto')} (choices: {listed})"
        )
    if name == "nvdec":
        try:
            _import_pynvvideocodec()  # the package, a GPU and its driver
        except DecoderUnavailableError as err:
            raise DecoderUnavailableError(
                f"{err}, or decode on the CPU with {_cpu_decoder(option)}"
            ) from None
    return name


def _setting(option: str, value: str) -> str:
    """``option`` set to ``value`` as its user writes it: ``--data.decoder decord`` for a flag,
    ``decoder='decord'`` for a keyword."""
    return f"{option} {value}" if option.startswith("-") else f"{option}={value!r}"


def _cpu_decoder(option: str) -> str:
    """The CPU decoder ``auto`` stands for, set as ``option`` spells it (``--data.decoder
    decord``, or ``decoder='decord'`` for a keyword)."""
    return _setting(option, check_decoder("auto"))


def get_decoder(name: str = "auto", threads: int = 1):
    """A decoder by name (see :func:`check_decoder`).

    Args:
        name: "auto", "decord", "pyav", "torchcodec" or "nvdec" (GPU; frames on the GPU).
        threads: decoding threads per reader (keep 1 when DataLoader workers give parallelism).
    """
    name = check_decoder(name)
    if name == "decord":
        return DecordDecoder(threads)
    if name == "pyav":
        return PyAVDecoder(threads)
    if name == "torchcodec":
        return TorchCodecDecoder()
    return NvdecDecoder()


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    text = text[-1] if text else type(err).__name__
    return f"{type(err).__name__}: {text[:200]}"
