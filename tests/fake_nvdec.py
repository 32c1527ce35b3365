"""A stand-in for PyNvVideoCodec, so the NVDEC code paths run on a machine without a GPU.

Only the native library is replaced: :func:`install` makes
``a2video.data.video._import_pynvvideocodec`` return a module-like object whose
``SimpleDecoder`` has the documented surface (``len``, ``get_stream_metadata``,
``get_batch_frames_by_index`` returning DLPack RGB frames, ``reconfigure_decoder``) and decodes
with PyAV on the CPU. Everything of a2video's (``NvdecDecoder``, ``NvdecReader``, the
DataModules' NVDEC paths, the mixed loader's threads) runs as it would on a GPU, except the
CUDA stream handling, which needs a device (``torch.cuda.is_available()`` stays False).
"""

from __future__ import annotations

import threading
import types
from typing import ClassVar

import numpy as np
import torch

from a2video.data import video as video_mod
from a2video.data.video import PyAVReader


class _CodedFrames(PyAVReader):
    """PyAV frames as coded, the display matrix not applied: NVDEC (and PyNvVideoCodec 2.2,
    which has no display-matrix handling) hands them over so."""

    def _stack(self, arrays: list) -> torch.Tensor:
        return torch.from_numpy(np.stack(arrays))


class FakeSimpleDecoder:
    """PyNvVideoCodec.SimpleDecoder's documented surface, decoding with PyAV on the CPU.

    ``opened`` lists every file opened, with the name of the thread that opened it.
    """

    opened: ClassVar[list[tuple[str, str]]] = []

    def __init__(self, path, gpu_id=0, use_device_memory=True, output_color_type=None):
        assert output_color_type == "RGB" and use_device_memory
        self.reconfigure_decoder(path)

    def reconfigure_decoder(self, path):
        FakeSimpleDecoder.opened.append((str(path), threading.current_thread().name))
        self._reader = _CodedFrames(path)  # raises VideoDecodeError on a bad file, as NVDEC fails

    def __len__(self):
        return self._reader.num_frames

    def get_stream_metadata(self):
        r = self._reader
        return types.SimpleNamespace(
            width=r.width, height=r.height, average_fps=r.fps, num_frames=r.num_frames
        )

    def get_batch_frames_by_index(self, indices):
        assert indices == sorted(set(indices))  # the reader asks for distinct sorted frames
        frames = self._reader.get_frames(indices)
        # half the frames handed over flat (H, W*3), as a planar-less RGB buffer may be
        return [f if k % 2 else f.reshape(f.shape[0], -1) for k, f in enumerate(frames)]


def install(monkeypatch) -> types.SimpleNamespace:
    """Make ``decoder="nvdec"`` use :class:`FakeSimpleDecoder` for the rest of the test."""
    fake = types.SimpleNamespace(
        SimpleDecoder=FakeSimpleDecoder, OutputColorType=types.SimpleNamespace(RGB="RGB")
    )
    monkeypatch.setattr(video_mod, "_import_pynvvideocodec", lambda: fake)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    FakeSimpleDecoder.opened = []
    return fake
