"""A split's records in flat buffers (:class:`~a2video.data.annotations.RecordArray`).

The datasets keep their records so, and not as a list of small Python objects, which forked
DataLoader workers would copy page by page as reference counts touch them (the measurement is
in benchmarks/RESULTS.md, "Split records at Kinetics scale"). What is tested: the same records
as the reader's list, the same samples byte for byte from forked and spawned workers, and no
Python object per record.
"""

from __future__ import annotations

import gc
import os
import pickle

import pytest
import torch
from torch.utils.data import DataLoader

from a2video.data import KineticsDataModule
from a2video.data import annotations as ann
from a2video.data.annotations import RecordArray, VideoRecord
from a2video.data.datasets import VideoClipDataset, collate_clips


def _split(kinetics_root: str) -> ann.SplitAnnotations:
    csv_path = os.path.join(kinetics_root, "annotations", "train.csv")
    classes = ann.read_kinetics_classes(csv_path)
    return ann.read_kinetics_csv(csv_path, os.path.join(kinetics_root, "train"), classes)


def test_the_same_records_as_the_list(kinetics_root):
    records = _split(kinetics_root).records
    array = RecordArray(records)
    assert len(array) == len(records) and array == records and list(array) == records
    for i, record in enumerate(records):
        assert array[i] == record and array[i - len(records)] == record
        assert type(array[i].path) is str and type(array[i].label) is int
        assert array[torch.tensor(i)] == record  # a batch's index tensor element
    assert array[1:3] == records[1:3] and array[::-1] == records[::-1]
    assert list(array.paths) == [r.path for r in records] and array.paths[-1] == records[-1].path
    assert array.labels.tolist() == [r.label for r in records]
    assert records[2] in array and array.index(records[2]) == 2
    with pytest.raises(IndexError):
        array[len(records)]
    assert RecordArray() == [] and len(RecordArray()) == 0
    assert not array.labels.flags.writeable


def test_any_path_comes_back_unchanged():
    odd = [
        VideoRecord("/data/k700/train/playing guitar/é_000001_000011.mp4", 3, 2),
        VideoRecord(os.fsdecode(b"/data/latin1/caf\xe9.mp4"), 0, 3),  # not UTF-8 on disk
        VideoRecord("", -1, 4),
        VideoRecord("relative/x.webm", 699, 5),
    ]
    array = RecordArray(odd)
    assert list(array) == odd
    assert os.fsencode(array[1].path) == b"/data/latin1/caf\xe9.mp4"
    again = pickle.loads(pickle.dumps(array))
    assert again == array and list(again) == odd


def test_no_python_object_per_record():
    """What forked workers would copy: the objects reachable from the records, as many for
    10 videos as for 10 000."""

    def reachable(obj) -> int:
        seen, todo = set(), [obj]
        while todo:
            o = todo.pop()
            if id(o) not in seen:
                seen.add(id(o))
                todo.extend(gc.get_referents(o))
        return len(seen)

    def records(n):
        return RecordArray(VideoRecord(f"/k/c{i % 7}/v{i:06d}.mp4", i % 7, i) for i in range(n))

    assert reachable(records(10)) == reachable(records(10_000))
    big = [VideoRecord(f"/k/v{i}.mp4", 0, i) for i in range(3000)]
    assert reachable(big) > 3000  # the list it replaces


def _batches(dataset: VideoClipDataset, **loader) -> list[dict]:
    out = DataLoader(dataset, batch_size=3, collate_fn=collate_clips, **loader)
    return [dict(b) for b in out]


def test_the_same_samples_from_forked_and_spawned_workers(kinetics_root, small_clip):
    dm = KineticsDataModule(kinetics_root, **small_clip)
    dm.setup("fit")
    dataset = dm.datasets["train"]
    assert isinstance(dataset.records, RecordArray)
    assert dataset.records == _split(kinetics_root).records
    assert list(dm.monitor.paths["train"]) == [r.path for r in dataset.records]
    keys = [(i, 0) for i in range(len(dataset))]
    alone = _batches(dataset, sampler=keys)
    forked = _batches(dataset, sampler=keys, num_workers=2, multiprocessing_context="fork")
    spawned = _batches(
        pickle.loads(pickle.dumps(dataset)),
        sampler=keys,
        num_workers=1,
        multiprocessing_context="spawn",
    )
    assert len(alone) == len(forked) == len(spawned) > 1
    for a, b, c in zip(alone, forked, spawned, strict=True):
        for key in ("label", "index", "valid", "failed"):
            assert torch.equal(a[key], b[key]) and torch.equal(a[key], c[key])
        assert a["video"].dtype == torch.uint8
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["video"], c["video"])
