"""The multi-view test sample's frames are resized chunk by chunk as they are decoded, never all
held at full size (benchmarks/RESULTS.md: a 10x3 test sample of a 4K video held ~80 full
frames), and the sample is byte for byte what resizing the stack of all its decoded frames gave,
float and uint8, with decord and PyAV, on landscape, portrait (rotated), odd-size, B-frame, cut
and 2-frame videos, one frame per chunk, a few and all at once. (Train and val clips are decoded
whole: chunked, decord's were slower.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import user_videos
from decoders import DECODERS

from a2video.data import video
from a2video.data.annotations import VideoRecord
from a2video.data.datasets import ClipSpec, VideoClipDataset

KINDS = ("plain", "rotate90", "odd444", "bframes", "cut", "frames2")
SPECS = {
    # short sides resized (up for the 33x25 video), crops resized
    "resized": ClipSpec(
        frames=4,
        stride=3,
        train_scale=(40, 52),
        crop_size=32,
        test_scale=40,
        num_clips=3,
        num_crops=3,
    ),
    # short side 48 = the 64x48 frames': no test resize, train crops cut out without a resize
    "as-decoded": ClipSpec(
        frames=3,
        stride=5,
        train_scale=(48, 48),
        crop_size=32,
        test_scale=48,
        num_clips=2,
        num_crops=3,
    ),
}
MODES = (("test", 1),)  # the one sample decoded in chunks


class _Whole:
    """A reader without ``iter_frames``: the dataset decodes all frames, then transforms them
    (what it did for every decoder before, and still does for torchcodec and NVDEC)."""

    def __init__(self, reader) -> None:
        self._reader = reader
        self.num_frames = reader.num_frames

    def get_frames(self, indices):
        return self._reader.get_frames(indices)

    def close(self) -> None:
        self._reader.close()


class _WholeDecoder:
    def __init__(self, decoder) -> None:
        self._decoder = decoder

    def open(self, path):
        return _Whole(self._decoder.open(path))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("chunked")
    out = {}
    for kind in KINDS:
        if kind == "plain":  # 40 frames of 64x48, a keyframe every 12
            path = folder / "plain.mp4"
            user_videos._encode(path, user_videos.pattern(40, 64, 48), gop=12)
            out[kind] = str(path)
        else:
            out[kind] = user_videos.make(kind, folder)[0]
    return out


def _samples(path: str, spec: ClipSpec, decoder: str, chunk_bytes, whole: bool) -> list:
    out = []
    for mode, repeat in MODES:
        for uint8 in (False, True):
            ds = VideoClipDataset([VideoRecord(path, 0)], mode, spec, decoder, seed=3,
                                  repeat=repeat, uint8=uint8)  # fmt: skip
            ds.chunk_bytes = chunk_bytes
            if whole:
                ds._decoder = _WholeDecoder(ds.decoder)
            for epoch in range(2 if mode == "train" else 1):
                sample = ds[(0, epoch)]
                assert sample["valid"] and not sample["failed"], sample["failed_reason"]
                out.append(((mode, repeat, uint8, epoch), sample["video"]))
    return out


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("spec", list(SPECS))
def test_chunk_by_chunk_samples_are_the_bytes_of_the_whole_decode(videos, decoder, spec):
    for kind, path in videos.items():
        ref = _samples(path, SPECS[spec], decoder, None, whole=True)
        frame = 3 * int(np.prod(video.get_decoder(decoder).open(path).get_frames([0]).shape))
        for chunk_bytes in (1, 3 * frame, None):  # one frame per chunk, three, all
            got = _samples(path, SPECS[spec], decoder, chunk_bytes, whole=False)
            for (case, a), (_, b) in zip(ref, got, strict=True):
                where = f"{kind} {case} chunk_bytes={chunk_bytes}"
                assert a.dtype == b.dtype and a.shape == b.shape, where
                assert torch.equal(a, b), where
                assert a.stride() == b.stride(), where


@pytest.mark.parametrize("decoder", DECODERS)
def test_iter_frames_hands_over_each_frame_in_chunks_within_the_budget(videos, decoder):
    reader = video.get_decoder(decoder).open(videos["plain"])
    wanted = [0, 5, 6, 7, 20, 21, 39]
    full = reader.get_frames(wanted)
    frame = int(full[0].numel())
    chunks = list(video.iter_frames(reader, [7, 0, 5, 6, 21, 20, 39, 5], 2 * frame))
    seen = [i for idx, _ in chunks for i in idx]
    assert seen == wanted
    assert all(f.shape[0] <= 2 for _, f in chunks)
    assert torch.equal(torch.cat([f for _, f in chunks]), full)
    assert torch.equal(video.gather_frames(iter(chunks), wanted), full)
    reader.close()


def test_a_pyav_pass_that_misses_frames_is_replaced_by_one_from_the_start(videos, monkeypatch):
    """The seek pass hands over what it decoded; the pass from frame 0 hands every frame over
    again, and those are the frames get_frames returns (as before: the later pass's)."""
    reader = video.PyAVReader(videos["plain"])
    real = video.PyAVReader._decode_range

    def drop_last(self, wanted, first, last, seek):
        for pts, array in real(self, wanted, first, last, seek):
            if seek and pts == last:
                return  # the seek pass misses the last frame
            yield pts, array

    monkeypatch.setattr(video.PyAVReader, "_decode_range", drop_last)
    wanted = [13, 14, 30]
    chunks = list(reader.iter_frames(wanted, 1))
    assert [idx for idx, _ in chunks] == [[13], [14], [13], [14], [30]]
    assert torch.equal(video.gather_frames(iter(chunks), wanted), reader.get_frames(wanted))
    reader.close()
