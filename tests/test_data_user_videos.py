"""Videos as users' datasets hold them (tests/user_videos.py makes each with PyAV): each one
decodes to the frames it shows, upright and in display order, with decord and PyAV alike, or is
an unusable video counted with a one-line reason, on every path a user takes: a training clip
(``repeat_clips`` 2), the multi-view test sample (``a2video predict`` decodes the same), and
``a2video check-data``."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import user_videos
from decoders import DECODERS

from a2video.data.annotations import VideoRecord
from a2video.data.check import decode_all
from a2video.data.datasets import ClipSpec, VideoClipDataset
from a2video.data.video import (
    PyAVReader,
    VideoDecodeError,
    display_matrix,
    display_orientation,
    get_decoder,
    rotation_orientation,
)

UNUSABLE = {"audio-only": "no video stream", "truncated-tail": "truncated"}
SPEC = ClipSpec(frames=4, stride=2, train_scale=(40, 40), crop_size=32, test_scale=40,
                num_clips=3, num_crops=3, flip=False)  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("user_videos")


def _case(kind: str, folder) -> tuple[str, np.ndarray | None]:
    if kind == "av1" and "libsvtav1" not in av.codecs_available:
        pytest.skip("PyAV has no AV1 encoder here")
    return user_videos.make(kind, folder)


def _indices(n: int) -> list[int]:
    return sorted({0, n // 3, n // 2, n - 2 if n > 1 else 0, n - 1})


@pytest.mark.parametrize("kind", user_videos.KINDS)
def test_decoders_show_the_frames_players_show(kind, folder):
    path, shown = _case(kind, folder)
    for name in DECODERS:
        if kind in UNUSABLE:
            with pytest.raises(VideoDecodeError, match=UNUSABLE[kind]) as err:
                reader = get_decoder(name).open(path)
                reader.get_frames(_indices(reader.num_frames))
            assert err.value.path == path and "\n" not in err.value.reason
            continue
        reader = get_decoder(name).open(path)
        assert reader.num_frames == len(shown), name
        idx = _indices(reader.num_frames)
        frames = reader.get_frames(idx)
        reader.close()
        want = torch.from_numpy(shown[idx])
        assert frames.shape == want.shape, name  # upright: rotated phone videos too
        assert (frames.float() - want.float()).abs().mean() < 8, name  # codec noise only


@pytest.mark.parametrize("kind", [k for k in user_videos.KINDS if k not in UNUSABLE])
def test_the_header_turns_the_picture_as_ffmpeg_does(kind, folder):
    """The display matrix read from an mp4's or a Matroska/WebM file's header (decord's files
    that PyAV decodes instead) turns the picture as the one FFmpeg gives the decoded frames;
    Matroska's is FFmpeg's to the bit (its Projection pose mapped as matroskadec does)."""
    path, _ = _case(kind, folder)
    matrix = _ffmpeg_matrix(path)
    assert display_orientation(display_matrix(path)) == display_orientation(matrix)
    if path.endswith((".mkv", ".webm")):
        assert display_matrix(path) == matrix
    if "flip" not in kind:  # FFmpeg's rotation angle (other containers) turns it the same way
        with av.open(path) as container:
            rotation = next(container.decode(video=0)).rotation
        assert rotation_orientation(rotation) == display_orientation(matrix)


def _ffmpeg_matrix(path: str) -> tuple[int, ...] | None:
    """The display matrix FFmpeg gives ``path``'s first decoded frame (``None``: none)."""
    with av.open(path) as container:
        data = next(container.decode(video=0)).side_data.get("DISPLAYMATRIX")
        return struct.unpack("=9i", bytes(data)) if data is not None else None


@pytest.mark.parametrize("kind", user_videos.KINDS)
def test_datasets_and_check_data_use_or_count_each_video(kind, folder):
    path, shown = _case(kind, folder)
    good, _ = user_videos.make("mkv", folder)
    records = [VideoRecord(path=path, label=0), VideoRecord(path=good, label=1)]
    for mode in ("train", "test"):
        ds = VideoClipDataset(records, mode, SPEC, repeat=2, uint8=True)
        for epoch in range(3):
            sample = ds[(0, epoch)]
            if kind in UNUSABLE and (mode == "test" or sample["failed"]):
                assert sample["failed"] and sample["failed_reason"], mode  # counted, with why
                assert "\n" not in sample["failed_reason"]
                continue
            assert sample["valid"] and not sample["failed"], (mode, sample["failed_reason"])
            assert sample["index"] == 0 and sample["video"].float().std() > 0  # no blank clip
    frames, reason = decode_all(path)
    if kind in UNUSABLE:
        assert UNUSABLE[kind] in reason and "\n" not in reason
    else:
        assert (frames, reason) == (len(shown), "")


def _decoded(path: str) -> dict[str, torch.Tensor]:
    """Every frame of ``path`` as each decoder gives it."""
    out = {}
    for name in DECODERS:
        reader = get_decoder(name).open(path)
        out[name] = reader.get_frames(range(reader.num_frames))
        reader.close()
    return out


def _close(frames: torch.Tensor, want: np.ndarray) -> bool:
    return (
        frames.shape == want.shape
        and (frames.float() - torch.from_numpy(want).float()).abs().mean() < 8
    )


def test_a_live_webm_of_unknown_size_is_turned_too(folder, tmp_path):
    """A live recording's Segment has an unknown size (all its size bits set): the Tracks are
    found all the same."""
    path, shown = user_videos.make("rotate90-hflip.webm", folder)
    data = bytearray(Path(path).read_bytes())
    at = data.index(b"\x18\x53\x80\x67\x01") + 5  # the Segment's 8-byte size
    data[at : at + 7] = b"\xff" * 7
    live = tmp_path / "live.webm"
    live.write_bytes(data)
    assert display_matrix(live) == display_matrix(path) == _ffmpeg_matrix(str(live))
    for name, frames in _decoded(str(live)).items():
        assert _close(frames, shown), name


@pytest.mark.parametrize("second", [False, True], ids=["seekhead", "second-seekhead"])
@pytest.mark.parametrize("kind", ["rotate90-hflip.mkv", "hflip.webm"])
def test_tracks_after_the_clusters_are_found_through_the_seekhead(kind, second, folder, tmp_path):
    """Tracks written after the media are listed only in the SeekHead (with ``second``: in a
    second SeekHead the first lists); FFmpeg's demuxer follows it. The header reader stopped at
    the first Cluster: no display matrix, so decord's frames were shown as stored and PyAV's
    turned by the rotation alone (no mirror). Cut anywhere in the Tracks it reads as none."""
    path, shown = user_videos.make(kind, folder)
    late = user_videos.tracks_after_clusters(
        path, tmp_path / f"late{Path(path).suffix}", second_seekhead=second
    )
    data = Path(late).read_bytes()
    tracks = data.index(b"\x16\x54\xae\x6b\x01")  # the Tracks element, size in 8 bytes
    assert tracks > data.index(b"\x1f\x43\xb6\x75")  # after the first Cluster
    assert display_matrix(late) == _ffmpeg_matrix(late) == display_matrix(path) is not None
    for name, frames in _decoded(late).items():
        assert _close(frames, shown), name
    cut = tmp_path / f"cut{Path(path).suffix}"
    for n in range(tracks, len(data)):
        cut.write_bytes(data[:n])
        assert display_matrix(cut) is None, n


def test_a_pitched_matroska_pose_is_shown_as_stored_as_ffmpeg_shows_it(folder, tmp_path):
    """RFC 9559 flips upside down with a pitch of 180 degrees; FFmpeg maps no pitch to a display
    matrix (ffplay shows such a file as stored), and neither do the decoders here."""
    path, shown = user_videos.make("hflip.mkv", folder)
    data = Path(path).read_bytes()
    assert data.count(b"\x76\x73\x88") == 1  # ProjectionPoseYaw (180), an 8-byte float
    pitched = tmp_path / "pitch.mkv"
    pitched.write_bytes(data.replace(b"\x76\x73\x88", b"\x76\x74\x88"))
    assert display_matrix(pitched) is None and _ffmpeg_matrix(str(pitched)) is None
    stored = np.ascontiguousarray(shown[:, :, ::-1])  # the hflip case's frames, unmirrored
    for name, frames in _decoded(str(pitched)).items():
        assert _close(frames, stored), name


@pytest.mark.parametrize("kind", ["rotate90-vflip.mkv", "hflip.webm", "rotate90-hflip"])
def test_a_file_cut_anywhere_reads_as_no_matrix(kind, folder, tmp_path):
    """Every prefix of a file (a download cut short, a file still being written) reads as no
    display matrix or the whole one, never as an error: an mp4 cut just after its ``mvhd`` box
    header raised IndexError, which decord's reader passed on as a crash, not as a video it
    cannot decode."""
    path, _ = user_videos.make(kind, folder)
    data = Path(path).read_bytes()
    whole = display_matrix(path)
    assert whole is not None
    cut = tmp_path / f"cut{Path(path).suffix}"
    if path.endswith(".mp4"):  # the header is the moov box at the end
        header = range(data.index(b"moov") - 4, len(data))
    else:  # the elements before the first Cluster
        header = range(data.index(b"\x1f\x43\xb6\x75") + 12)
    for n in header:
        cut.write_bytes(data[:n])
        assert display_matrix(cut) in (None, whole), n
    if path.endswith(".mp4"):  # the index is at the end: cut after the mvhd box header
        cut.write_bytes(data[: data.index(b"mvhd") + 4])
        for name in DECODERS:
            with pytest.raises(VideoDecodeError):
                get_decoder(name).open(str(cut))


def test_stream_copy_cut_counts_the_frames_its_edit_list_shows(folder):
    """A cut with ``ffmpeg -ss -c copy`` keeps the frames from the keyframe before the cut, with
    negative timestamps, and its edit list hides them. decord counted them (and repeated its
    last frame for the indices past the end); PyAV listed them and then failed to find them."""
    path, shown = user_videos.make("cut", folder)
    for name in DECODERS:
        reader = get_decoder(name).open(path)
        assert reader.num_frames == len(shown) == 30, name
        first_last = reader.get_frames([0, 29])
        reader.close()
        diff = (first_last.float() - torch.from_numpy(shown[[0, 29]]).float()).abs().mean()
        assert diff < 8, name
    assert decode_all(path) == (30, "")


def test_a_download_cut_inside_its_last_frame_fails_there_naming_it(folder):
    """The frames before the cut decode even when the clip reaches it, and the reason names
    the frame cut off (the cut packet raised an FFmpeg error that lost the clip's frames)."""
    path, _ = user_videos.make("truncated-tail", folder)
    reader = PyAVReader(path)
    n = reader.num_frames
    assert reader.get_frames([n - 3, n - 2]).shape[0] == 2
    with pytest.raises(VideoDecodeError, match=rf"truncated or corrupt: frames \[{n - 1}\] of {n}"):
        reader.get_frames([n - 2, n - 1])
    reader.close()
    assert decode_all(path) == (n - 1, f"truncated: {n - 1} of {n} indexed frames decodable")


def test_a_clip_of_a_ten_minute_video_decodes_from_its_keyframe(folder):
    path, _ = user_videos.make("long", folder)
    reader = PyAVReader(path)
    decoded = 0
    frames = reader.decoded

    def counting():
        nonlocal decoded
        for frame in frames():
            decoded += 1
            yield frame

    reader.decoded = counting
    clip = reader.get_frames([1190, 1192, 1194, 1196])
    reader.close()
    assert clip.shape[0] == 4 and decoded <= 260  # from keyframe 1000, not 1197 frames
