"""What a DataModule does before the first batch, at Kinetics scale, is done once: the train CSV
(parsed by ``__init__`` for the class list) is not parsed again by ``setup`` (timings in
benchmarks/RESULTS.md, "Split records at Kinetics scale")."""

from __future__ import annotations

import os
import pickle
from collections import Counter
from pathlib import Path

from a2video.data import KineticsDataModule
from a2video.data import annotations as ann


def _count_parses(monkeypatch) -> Counter:
    parsed: Counter = Counter()
    read = ann._read_kinetics_rows

    def counting(csv_path):
        parsed[Path(csv_path).name] += 1
        return read(csv_path)

    monkeypatch.setattr(ann, "_read_kinetics_rows", counting)
    return parsed


def test_the_train_csv_is_parsed_once(kinetics_root, small_clip, monkeypatch):
    parsed = _count_parses(monkeypatch)
    dm = KineticsDataModule(kinetics_root, **small_clip)
    dm.setup("fit")
    assert parsed == {"train.csv": 1, "val.csv": 1}
    assert dm._csv_rows is None  # not kept for the run
    csv_path = os.path.join(kinetics_root, "annotations", "train.csv")
    split = ann.read_kinetics_csv(csv_path, os.path.join(kinetics_root, "train"), dm.class_names)
    assert dm.datasets["train"].records == split.records
    again = pickle.loads(pickle.dumps(KineticsDataModule(kinetics_root, **small_clip)))
    assert again._csv_rows is None and again.class_names == dm.class_names


def test_a_csv_changed_after_init_is_read_again(kinetics_root, small_clip, tmp_path, monkeypatch):
    csv_path = Path(kinetics_root, "annotations", "train.csv")
    lines = [line for line in csv_path.read_text().splitlines(keepends=True) if line.strip()]
    mine = tmp_path / "train.csv"
    mine.write_text("".join(lines))
    dm = KineticsDataModule(kinetics_root, train_split=str(mine), **small_clip)
    full = len(lines) - 1
    mine.write_text("".join(lines[:-1]))  # one row fewer, between __init__ and setup
    os.utime(mine, ns=(1, 1))
    parsed = _count_parses(monkeypatch)
    dm.setup("fit")
    assert parsed["train.csv"] == 1
    split = ann.read_kinetics_csv(mine, os.path.join(kinetics_root, "train"), dm.class_names)
    assert dm.datasets["train"].records == split.records
    assert len(split.records) + len(split.missing) == full - 1
