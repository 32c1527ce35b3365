"""Decoders: decord and PyAV agree, decode only what is asked, and fail with one error type."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from decoders import DECORD_DECLARED

from a2video.data import video
from a2video.data.synthetic import write_special
from a2video.data.video import PyAVReader, VideoDecodeError, get_decoder

needs_decord = pytest.mark.skipif(
    not DECORD_DECLARED, reason="decord2 has no wheel for this platform (pyproject marker)"
)


def _videos(root: str, pattern: str) -> list[str]:
    return sorted(str(p) for p in Path(root).rglob(pattern))


@needs_decord
@pytest.mark.parametrize("layout", ["kinetics", "ucf"])
def test_decord_and_pyav_give_the_same_frames(kinetics_root, ucf_root, layout):
    paths = _videos(kinetics_root, "*.mp4") if layout == "kinetics" else _videos(ucf_root, "*.avi")
    assert paths
    for path in paths[:6]:
        a, b = get_decoder("decord").open(path), get_decoder("pyav").open(path)
        assert a.num_frames == b.num_frames
        n = a.num_frames
        indices = [n - 1, 0, n // 2, n // 3, n // 2, 1]  # unsorted, repeated, across keyframes
        fa, fb = a.get_frames(indices), b.get_frames(indices)
        a.close(), b.close()
        assert fa.shape == fb.shape == (len(indices), a.height, a.width, 3)
        assert fa.dtype == fb.dtype == torch.uint8
        diff = (fa.int() - fb.int()).abs()
        assert diff.float().mean() < 1.0 and diff.max() <= 8  # codec/colour-conversion tolerance


def test_get_frames_gathers_requested_order(ucf_root):
    path = _videos(ucf_root, "*.avi")[0]
    reader = get_decoder("pyav").open(path)
    all_frames = reader.get_frames(list(range(reader.num_frames)))
    picked = reader.get_frames([5, 2, 5, 0])
    reader.close()
    assert torch.equal(picked, all_frames[[5, 2, 5, 0]])


def test_select_frames_is_advanced_indexing_without_the_byte_copy():
    frames = torch.randint(0, 256, (6, 5, 7, 3), dtype=torch.uint8)
    for positions in ([0, 2, 4], [5, 0, 0, 3], [1], list(range(6))):
        assert torch.equal(video.select_frames(frames, positions), frames[positions])
    assert video.select_frames(frames, range(6)) is frames  # nothing to gather: no copy


def test_select_frames_on_a_device_makes_no_index_from_host_numbers():
    """Off the CPU (NVDEC's frames) the gather makes no tensor from host numbers, which on a
    GPU is a blocking copy per clip; the frames are those of advanced indexing."""
    from host_data import HostData

    frames = torch.randint(0, 256, (6, 4, 5, 3), dtype=torch.uint8)
    on_device = frames.to("meta")  # a device tensor without a device: shapes and ops only
    with HostData() as watch:
        got = video.select_frames(on_device, [4, 0, 0, 5])
    assert watch.made == 0 and got.shape == (4, 4, 5, 3) and got.device.type == "meta"
    with HostData() as watch:
        video.select_frames(frames, [4, 0, 0, 5])
    assert watch.made == 1  # the CPU path's index (index_select: fastest there)


def test_auto_prefers_decord_and_falls_back_to_pyav(monkeypatch):
    if DECORD_DECLARED:
        assert get_decoder("auto").name == "decord"
    real = importlib.util.find_spec
    monkeypatch.setattr(
        video.importlib.util, "find_spec", lambda n, *a: None if n == "decord" else real(n, *a)
    )
    assert get_decoder("auto").name == "pyav"
    with pytest.raises(ImportError, match="decord"):
        get_decoder("decord")
    with pytest.raises(ValueError, match="unknown decoder"):
        get_decoder("opencv")


class _CountingContainer:
    """Wraps a PyAV container to count decoded frames."""

    def __init__(self, container):
        self._c, self.decoded = container, 0

    def __getattr__(self, name):
        return getattr(self._c, name)

    def decode(self, *args, **kwargs):
        for frame in self._c.decode(*args, **kwargs):
            self.decoded += 1
            yield frame


def test_pyav_decodes_only_from_the_keyframe_before_the_clip(tmp_path):
    """A late clip decodes from its keyframe, not from the start of the video."""
    from a2video.data.synthetic import MOTIONS, render_video, write_video

    path = tmp_path / "long.mp4"
    frames = render_video(MOTIONS[0], np.random.default_rng(0), 64, 48, 150, 25.0)
    write_video(path, frames, 25.0, gop=25)
    reader = PyAVReader(str(path))
    counter = _CountingContainer(reader._container)
    reader._container = counter
    clip = reader.get_frames([120, 122, 124, 126])
    reader._container = counter._c
    reader.close()
    assert clip.shape == (4, 48, 64, 3)
    assert counter.decoded <= 30  # from keyframe 100 (+ B-frame lookahead), not 127 frames


@pytest.mark.parametrize("kind", ["zero-byte", "text", "truncated-moov", "audio-only", "missing"])
@pytest.mark.parametrize("name", ["pyav", "auto"])
def test_unusable_files_raise_video_decode_error(tmp_path, kind, name):
    path = tmp_path / f"{kind}.mp4"
    if kind != "missing":
        write_special(path, kind, np.random.default_rng(0))
    with pytest.raises(VideoDecodeError) as err:
        reader = get_decoder(name).open(path)
        reader.get_frames([0, reader.num_frames - 1])
    assert err.value.path == str(path) and err.value.reason


def test_truncated_file_fails_past_the_cut(tmp_path):
    path = tmp_path / "cut.mp4"
    write_special(path, "truncated", np.random.default_rng(0), num_frames=60)
    reader = get_decoder("pyav").open(path)
    assert reader.get_frames([0, 1]).shape[0] == 2  # the intact head decodes
    with pytest.raises(VideoDecodeError, match=r"truncated|decoding failed"):
        reader.get_frames([reader.num_frames - 1])
    reader.close()


@pytest.mark.parametrize(
    "kind", ["short", "single-frame", "odd-size", "grayscale", "vp9", "rotated", "vfr"]
)
def test_unusual_but_valid_files_decode(tmp_path, kind):
    path = write_special(tmp_path / f"{kind}.mp4", kind, np.random.default_rng(0))
    for name in ("auto", "pyav"):
        reader = get_decoder(name).open(path)
        n = reader.num_frames
        frames = reader.get_frames([0, n // 2, n - 1])
        reader.close()
        assert frames.dtype == torch.uint8 and frames.shape[0] == 3 and frames.shape[-1] == 3
        if kind == "odd-size":
            assert frames.shape[1:3] == (61, 97)
        if kind == "single-frame":
            assert n == 1
        if kind == "rotated" and name == "pyav":  # 64x48 stored, shown rotated by 90 degrees
            assert frames.shape[1:3] == (64, 48)
        if kind == "vfr":
            assert n == 30


def test_broken_manifest_kinds_are_as_described(broken_kinetics_root):
    manifest = json.loads((Path(broken_kinetics_root) / "synth_manifest.json").read_text())
    decoder = get_decoder("auto")
    for rel, kind in manifest["special"].items():
        path = str(Path(broken_kinetics_root) / rel)
        if kind in ("zero-byte", "text", "truncated-moov", "audio-only"):
            with pytest.raises(VideoDecodeError):
                decoder.open(path).get_frames([0])
        elif kind != "truncated":
            reader = decoder.open(path)
            assert reader.get_frames([reader.num_frames - 1]).shape[-1] == 3
            reader.close()
