"""Tiny videos made the way users' datasets hold them (phones, downloads, other encoders).

Every file is generated with PyAV (no ffmpeg CLI, nothing committed): :func:`make` writes the
case named ``kind`` and returns its path and the RGB frames it shows, upright and in display
order (``None`` for files with no picture). Frames carry a per-frame brightness ramp and an
asymmetric corner mark, so a wrong frame index or a wrong orientation shows in the pixels.

How each case is made:

- ``vfr``: timestamps 20/40/80 ms apart in a 1/1000 time base (phone videos).
- ``rotate90`` / ``rotate270`` / ``rotate180``: stored landscape, a display matrix turning it
  (``stream.set_display_rotation``, counter-clockwise degrees, as a portrait phone video).
- ``hflip`` / ``vflip`` / ``rotate90-hflip`` / ``rotate90-vflip``: a display matrix with a mirror
  (negative determinant), as front cameras and editing apps' flips write it: turned
  counter-clockwise, then mirrored left-right (``hflip``) or upside down (``vflip``), as ffplay
  shows it (``set_display_rotation(degrees, hflip=, vflip=)`` writes the mp4 ``tkhd`` matrix).
- ``odd444``: 33x25 (odd width and height) in yuv444p, as odd crops are stored.
- ``yuvj420p``, ``yuv444p``, ``yuv420p10le``, ``gray``: the pixel formats of cameras, screen
  recorders and 10-bit encoders.
- ``audio-only``: an mp4 with an AAC track and no video.
- ``late-start``: the first frame at pts 5 s (a clip cut out of a longer video without
  resetting timestamps), with B-frames (negative dts in the mp4).
- ``bframes``: H.264 with 3 B-frames and a 2 s GOP (negative first dts in mp4).
- ``truncated-tail``: a faststart mp4 whose last few frames' bytes are cut off (an interrupted
  download: the header lists more frames than can be decoded).
- ``cut``: a stream-copy cut (``ffmpeg -ss 1.2 -c copy``) of a 60-frame video with keyframes
  every 50 frames: the frames from the keyframe before the cut are kept, shifted to negative
  timestamps, and the mp4 edit list hides them (players show frames 30..59).
- ``frames1`` / ``frames2`` / ``frames3``: 1-3-frame videos (shorter than a clip).
- ``long``: ten minutes (at 2 fps, 1200 frames; a keyframe every 250 frames).
- ``4k``: 3840x2160, 3 frames.
- ``vp9`` (webm), ``mkv`` (H.264 in Matroska), ``av1`` (mp4, where libsvtav1 is built in).
- ``rotate90.mkv`` ... ``rotate90-vflip.webm``: each turned or mirrored case again in Matroska
  (H.264) and WebM (VP9), whose display matrix is the track's ``Projection`` pose (FFmpeg's muxer
  writes a yaw of 180 for a mirror and a roll for the turn; its demuxer reads them back).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

# the cases whose display matrix turns or mirrors the picture
ORIENTED = (
    "rotate90",
    "rotate270",
    "rotate180",
    "hflip",
    "vflip",
    "rotate90-hflip",
    "rotate90-vflip",
)
KINDS = (
    "vfr",
    *ORIENTED,
    "odd444",
    "yuvj420p",
    "yuv444p",
    "yuv420p10le",
    "gray",
    "audio-only",
    "late-start",
    "bframes",
    "truncated-tail",
    "cut",
    "frames1",
    "frames2",
    "frames3",
    "long",
    "4k",
    "vp9",
    "mkv",
    "av1",
    *(f"{kind}.{container}" for container in ("mkv", "webm") for kind in ORIENTED),
)
VP9 = {"codec": "libvpx-vp9", "options": {"deadline": "realtime", "cpu-used": "8"}}


def pattern(num_frames: int, width: int, height: int) -> np.ndarray:
    """uint8 (T, H, W, 3): a flat colour that brightens frame by frame, a white square in the
    top-left corner and a black bar along the top (asymmetric: rotations and flips show)."""
    t = np.arange(num_frames, dtype=np.float32)[:, None, None, None]
    base = np.array([20.0, 30.0, 40.0], dtype=np.float32)
    frames = np.broadcast_to(base + (t * 3.0) % 180.0, (num_frames, height, width, 3)).copy()
    s = max(2, min(width, height) // 4)
    frames[:, :s, :s] = 235.0
    frames[:, : max(1, s // 2), s:] = 0.0
    return frames.astype(np.uint8)


def _encode(
    path: Path,
    frames: np.ndarray,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    fps: float = 25.0,
    pts: list[int] | None = None,
    rotate: int = 0,
    mirror: str = "",
    options: dict | None = None,
    gop: int = 25,
    container_options: dict | None = None,
) -> None:
    import av

    with av.open(str(path), "w", options=container_options or {}) as container:
        opts = {"preset": "ultrafast", "threads": "1"} if codec == "libx264" else {}
        opts.update(options or {})
        stream = container.add_stream(
            codec, rate=Fraction(fps).limit_denominator(1001), options=opts
        )
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        stream.codec_context.gop_size = gop
        if pts is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotate or mirror:
            stream.set_display_rotation(rotate, hflip=mirror == "h", vflip=mirror == "v")
        for k, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame = frame.reformat(format=pix_fmt)
            if pts is not None:
                frame.pts, frame.time_base = pts[k], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _stream_copy_cut(source: Path, path: Path, first: int) -> None:
    """Copy ``source``'s packets into ``path`` with frame ``first`` at time 0, as ``ffmpeg -ss
    -c copy`` does: the packets before it (from the keyframe on) get negative timestamps, which
    the mp4 muxer turns into an edit list that hides them."""
    import av

    with av.open(str(source)) as inp, av.open(str(path), "w") as out:
        src = inp.streams.video[0]
        dst = out.add_stream_from_template(src)
        shift = round(first / (src.average_rate * src.time_base))
        for packet in inp.demux(src):
            if packet.dts is None:
                continue
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = dst
            out.mux(packet)


def make(kind: str, folder: str | Path) -> tuple[str, np.ndarray | None]:
    """Write the case ``kind`` (one of :data:`KINDS`) into ``folder``; returns its path and the
    frames it shows upright in display order (``None`` where it has no picture; for
    ``truncated-tail``, all the frames encoded, of which the last few are cut off)."""
    from a2video.data.synthetic import write_audio_only

    if kind not in KINDS:
        raise ValueError(f"unknown case {kind!r}; choose from {', '.join(KINDS)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kind, _, container = kind.partition(".")  # rotate90.mkv: the rotate90 case in Matroska
    ext = {"vp9": ".webm", "mkv": ".mkv"}.get(kind, f".{container or 'mp4'}")
    path = folder / f"{kind}{ext}"
    w, h, n = 64, 48, 30
    if kind == "vfr":
        frames = pattern(n, w, h)
        steps = np.random.default_rng(0).choice([20, 40, 80], size=n)
        pts = np.concatenate([[0], np.cumsum(steps[:-1])]).astype(int).tolist()
        _encode(path, frames, pts=pts)
    elif kind.startswith("rotate") or kind in ("hflip", "vflip"):
        turn, _, flip = kind.partition("-") if kind.startswith("rotate") else ("rotate0", "", kind)
        degrees, mirror = int(turn.removeprefix("rotate")), flip.removesuffix("flip")  # h, v, ""
        frames = pattern(n, w, h)
        _encode(path, frames, rotate=degrees, mirror=mirror, **(VP9 if ext == ".webm" else {}))
        frames = np.rot90(frames, k=degrees // 90, axes=(1, 2))  # counter-clockwise, then
        frames = frames[:, ::-1] if mirror == "v" else frames[:, :, ::-1] if mirror else frames
        frames = np.ascontiguousarray(frames)
    elif kind == "odd444":
        frames = pattern(n, 33, 25)
        _encode(path, frames, pix_fmt="yuv444p")
    elif kind in ("yuvj420p", "yuv444p", "yuv420p10le", "gray"):
        frames = pattern(n, w, h)
        if kind == "gray":
            frames = frames.mean(-1, keepdims=True).astype(np.uint8).repeat(3, -1)
        _encode(path, frames, pix_fmt=kind)
    elif kind == "audio-only":
        write_audio_only(path)
        return str(path), None
    elif kind == "late-start":
        frames = pattern(n, w, h)
        _encode(path, frames, pts=[5000 + 40 * k for k in range(n)], options={"bframes": "3"})
    elif kind == "bframes":
        frames = pattern(60, w, h)
        _encode(path, frames, options={"preset": "medium", "bframes": "3"}, gop=50)
    elif kind == "truncated-tail":
        frames = pattern(60, w, h)
        noise = np.random.default_rng(1).integers(0, 40, size=frames.shape, dtype=np.uint8)
        frames = frames + noise  # incompressible enough that each frame has its own bytes
        _encode(path, frames, container_options={"movflags": "+faststart"})
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * 0.93)])
    elif kind == "cut":
        source = folder / "cut-source.mp4"
        frames = pattern(60, w, h)
        _encode(source, frames, gop=50)
        _stream_copy_cut(source, path, first=30)
        source.unlink()
        frames = frames[30:]
    elif kind in ("frames1", "frames2", "frames3"):
        frames = pattern(int(kind[-1]), w, h)
        _encode(path, frames)
    elif kind == "long":
        frames = pattern(1200, w, h)
        _encode(path, frames, fps=2.0, gop=250)
    elif kind == "4k":
        frames = pattern(3, 3840, 2160)
        _encode(path, frames)
    elif kind == "vp9":
        frames = pattern(n, w, h)
        _encode(path, frames, **VP9)
    elif kind == "mkv":
        frames = pattern(n, w, h)
        _encode(path, frames)
    elif kind == "av1":
        frames = pattern(n, w, h)
        _encode(path, frames, codec="libsvtav1", options={"preset": "12"})
    return str(path), frames


# Matroska element IDs the rewrite below moves (RFC 9559)
_SEGMENT, _SEEKHEAD, _SEEK, _SEEK_ID, _SEEK_POSITION = (
    0x18538067, 0x114D9B74, 0x4DBB, 0x53AB, 0x53AC
)  # fmt: skip
_INFO, _TAGS, _TRACKS, _CLUSTER = 0x1549A966, 0x1254C367, 0x1654AE6B, 0x1F43B675


def tracks_after_clusters(path: str, out: str | Path, *, second_seekhead: bool = False) -> str:
    """A copy of the Matroska/WebM file ``path`` (as PyAV writes it) whose Tracks come after
    its Clusters, found only through the SeekHead, as muxers that write the track headers last
    leave them. The Segment is rewritten as: a SeekHead listing Info, Tags and the Tracks (with
    ``second_seekhead``: a second SeekHead at the end that lists the Tracks), Info, Tags, the
    Clusters, the Tracks. The Cues (cluster offsets, which move) and Void are left out: players
    read the Clusters in order. Every size is written in 8 bytes. Returns the path written."""
    data = Path(path).read_bytes()

    def element(pos: int) -> tuple[int, int, int]:  # (id, body start, body end)
        n = 9 - data[pos].bit_length()
        eid, pos = int.from_bytes(data[pos : pos + n], "big"), pos + n
        n = 9 - data[pos].bit_length()
        size = int.from_bytes(data[pos : pos + n], "big") & ((1 << 7 * n) - 1)
        return eid, pos + n, pos + n + size

    def encode(eid: int, body: bytes) -> bytes:
        size = (1 << 56 | len(body)).to_bytes(8, "big")  # an 8-byte EBML size
        return eid.to_bytes((eid.bit_length() + 7) // 8, "big") + size + body

    def seekhead(entries: list[tuple[int, int]]) -> bytes:
        return encode(_SEEKHEAD, b"".join(
            encode(_SEEK, encode(_SEEK_ID, eid.to_bytes(4, "big"))
                   + encode(_SEEK_POSITION, at.to_bytes(8, "big")))
            for eid, at in entries
        ))  # fmt: skip

    _, _, header_end = element(0)
    eid, pos, end = element(header_end)
    assert eid == _SEGMENT
    children: dict[int, list[bytes]] = {}
    while pos < end:
        eid, body, stop = element(pos)
        children.setdefault(eid, []).append(encode(eid, data[body:stop]))
        pos = stop
    info, tags, tracks = (b"".join(children.get(k, [])) for k in (_INFO, _TAGS, _TRACKS))
    clusters = b"".join(children[_CLUSTER])
    first = len(seekhead([(0, 0)] * 3))  # its size does not depend on the positions
    at_tracks = first + len(info) + len(tags) + len(clusters)
    last = b""
    if second_seekhead:
        last = seekhead([(_TRACKS, at_tracks)])
        listed = (_SEEKHEAD, at_tracks + len(tracks))
    else:
        listed = (_TRACKS, at_tracks)
    head = seekhead([(_INFO, first), (_TAGS, first + len(info)), listed])
    segment = encode(_SEGMENT, head + info + tags + clusters + tracks + last)
    Path(out).write_bytes(data[:header_end] + segment)
    return str(out)
