"""Annotation files of both layouts: label mapping, folds, layouts, missing videos, bad files."""

from __future__ import annotations

import csv
import logging
import os
import shutil
from pathlib import Path

import pytest

from a2video.data import annotations as ann
from a2video.data.synthetic import UCF_TEST_GROUPS


def _csv_rows(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- Kinetics
def test_kinetics_labels_match_the_csv(kinetics_root):
    rows = _csv_rows(Path(kinetics_root) / "annotations" / "train.csv")
    classes = ann.read_kinetics_classes(Path(kinetics_root) / "annotations" / "train.csv")
    assert classes == sorted({r["label"] for r in rows})
    split = ann.read_kinetics_csv(
        Path(kinetics_root) / "annotations" / "train.csv", Path(kinetics_root) / "train", classes
    )
    label_of_stem = {
        ann.kinetics_video_stem(r["youtube_id"], r["time_start"], r["time_end"]): r["label"]
        for r in rows
    }
    assert split.records
    for record in split.records:
        stem = Path(record.path).stem
        assert classes[record.label] == label_of_stem[stem]
        # per-class folders, where used, agree with the CSV
        parent = Path(record.path).parent.name
        assert parent in ("train", label_of_stem[stem])


def test_kinetics_missing_videos_skipped_and_counted_in_one_line(kinetics_root, caplog):
    csv_path = Path(kinetics_root) / "annotations" / "train.csv"
    rows = _csv_rows(csv_path)
    classes = ann.read_kinetics_classes(csv_path)
    with caplog.at_level(logging.WARNING, logger="a2video.data.annotations"):
        split = ann.read_kinetics_csv(csv_path, Path(kinetics_root) / "train", classes)
    assert len(split.missing) >= 1
    assert len(split.records) + len(split.missing) == len(rows)
    lines = [r.getMessage() for r in caplog.records if "missing" in r.getMessage()]
    assert len(lines) == 1
    assert f"{len(split.missing)} of {len(rows)}" in lines[0]
    assert "fix: " in lines[0] and "check-data" in lines[0]  # what to do about it


def test_a_class_without_any_video_is_named(kinetics_root, tmp_path, caplog):
    """A train CSV listing two videos of a class that has none on disk (a class folder named
    otherwise): one warning names the class. Before, only the count of missing videos was
    said, and the class trained on nothing."""
    csv_path = tmp_path / "train.csv"
    rows = _csv_rows(Path(kinetics_root) / "annotations" / "train.csv")
    extra = [{**rows[0], "label": "juggling", "youtube_id": f"gone{i:07d}"} for i in range(2)]
    _write_rows(csv_path, rows + extra)
    classes = ann.read_kinetics_classes(csv_path)
    with caplog.at_level(logging.WARNING, logger="a2video.data.annotations"):
        ann.read_kinetics_csv(csv_path, Path(kinetics_root) / "train", classes)
    said = [r.getMessage() for r in caplog.records if "no video of" in r.getMessage()]
    assert len(said) == 1, said
    assert f"no video of 1 of its {len(classes)} classes" in said[0], said[0]
    assert "'juggling' (2 listed)" in said[0] and "check-data" in said[0], said[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="a2video.data.annotations"):
        ann.read_kinetics_csv(
            Path(kinetics_root) / "annotations" / "train.csv",
            Path(kinetics_root) / "train",
            classes,
        )
    assert not [r for r in caplog.records if "no video of" in r.getMessage()]


@pytest.mark.parametrize("structure", ["flat", "per-class"])
def test_kinetics_flat_and_per_class_layouts_give_the_same_videos(
    kinetics_root, tmp_path, structure
):
    """The same CSV resolves the same videos whether files are flat or in class folders."""
    src = Path(kinetics_root)
    csv_path = src / "annotations" / "train.csv"
    classes = ann.read_kinetics_classes(csv_path)
    reference = ann.read_kinetics_csv(csv_path, src / "train", classes)
    label_of = {Path(r.path).stem: r.label for r in reference.records}
    dst = tmp_path / "k400"
    shutil.copytree(src / "annotations", dst / "annotations")
    for record in reference.records:
        name = Path(record.path).name
        folder = dst / "train" if structure == "flat" else dst / "train" / classes[record.label]
        folder.mkdir(parents=True, exist_ok=True)
        os.symlink(record.path, folder / name)
    split = ann.read_kinetics_csv(dst / "annotations" / "train.csv", dst / "train", classes)
    assert {Path(r.path).stem: r.label for r in split.records} == label_of
    assert len(split.missing) == len(reference.missing)


def test_path_label_list(kinetics_root, tmp_path):
    split = ann.read_kinetics_csv(
        Path(kinetics_root) / "annotations" / "val.csv",
        Path(kinetics_root) / "val",
        ann.read_kinetics_classes(Path(kinetics_root) / "annotations" / "train.csv"),
    )
    lst = tmp_path / "val_list.txt"
    lst.write_text(
        "".join(f"{os.path.relpath(r.path, kinetics_root)} {r.label}\n" for r in split.records)
    )
    got = ann.read_path_label_list(lst, kinetics_root, split.class_names)
    assert [(r.path, r.label) for r in got.records] == [
        (os.path.join(kinetics_root, os.path.relpath(r.path, kinetics_root)), r.label)
        for r in split.records
    ]


# --------------------------------------------------------------------------- UCF-101
def test_ucf_labels_are_one_based_classind_indices(ucf_root):
    split_dir = Path(ucf_root) / "ucfTrainTestlist"
    classes = ann.read_ucf_classes(split_dir)
    ind = [line.split() for line in (split_dir / "classInd.txt").read_text().splitlines()]
    assert classes == [name for _, name in sorted(ind, key=lambda x: int(x[0]))]
    video_dir = ann.find_ucf_video_dir(ucf_root)
    train = ann.read_ucf_split(split_dir / "trainlist01.txt", video_dir, classes)
    lines = (split_dir / "trainlist01.txt").read_text().splitlines()
    for record, line in zip(train.records, lines, strict=True):
        rel, label = line.split()
        assert record.label == int(label) - 1
        assert classes[record.label] == rel.split("/")[0] == Path(record.path).parent.name
    test = ann.read_ucf_split(split_dir / "testlist01.txt", video_dir, classes)
    for record in test.records:  # test lists carry no label: it comes from the folder
        assert classes[record.label] == Path(record.path).parent.name


def test_ucf_handstand_pushups_folder_and_file_spellings_differ(ucf_root, tmp_path):
    """Real UCF-101: folder and classInd say ``HandstandPushups``, its files (and the split
    files' paths) ``v_HandStandPushups_gXX_cYY.avi``: on a case-sensitive file system every one
    of them is found and labelled as the class, in train and test lists (CRLF line ends)."""
    from a2video.data import UCF101DataModule

    src, root = Path(ucf_root), tmp_path / "ucf"
    (root / "ucfTrainTestlist").mkdir(parents=True)
    for f in (src / "ucfTrainTestlist").iterdir():
        text = f.read_bytes().decode().replace("BalloonInflate", "HandstandPushups")
        text = text.replace("v_HandstandPushups_", "v_HandStandPushups_")
        (root / "ucfTrainTestlist" / f.name).write_bytes(text.encode())
    assert b"\r\n" in (root / "ucfTrainTestlist" / "testlist01.txt").read_bytes()
    for folder in (src / "UCF-101").iterdir():
        name = folder.name.replace("BalloonInflate", "HandstandPushups")
        (root / "UCF-101" / name).mkdir(parents=True)
        for video in folder.iterdir():
            new = video.name.replace("v_BalloonInflate_", "v_HandStandPushups_")
            os.symlink(video, root / "UCF-101" / name / new)
    before = UCF101DataModule(ucf_root, num_workers=0)
    dm = UCF101DataModule(str(root), num_workers=0)
    assert dm.class_names[2] == "HandstandPushups"
    for stage in ("train", "test"):
        old, got = before._read_split(stage), dm._read_split(stage)
        assert [r.label for r in got.records] == [r.label for r in old.records]
        assert not got.missing
        hsp = [r for r in got.records if r.label == 2]
        assert hsp and all("/HandstandPushups/v_HandStandPushups_g" in r.path for r in hsp)


@pytest.mark.parametrize("fold", [1, 2, 3])
def test_ucf_fold_selection_follows_groups(ucf_root, fold):
    split_dir = Path(ucf_root) / "ucfTrainTestlist"
    classes = ann.read_ucf_classes(split_dir)
    video_dir = ann.find_ucf_video_dir(ucf_root)
    train = ann.read_ucf_split(ann.ucf_split_file(split_dir, "train", fold), video_dir, classes)
    test = ann.read_ucf_split(ann.ucf_split_file(split_dir, "test", fold), video_dir, classes)
    test_groups = {ann.ucf_group(r.path) for r in test.records}
    train_groups = {ann.ucf_group(r.path) for r in train.records}
    assert test_groups and test_groups <= set(UCF_TEST_GROUPS[fold])
    assert not train_groups & set(UCF_TEST_GROUPS[fold])
    all_videos = {str(p) for p in Path(video_dir).rglob("*.avi")}
    assert {r.path for r in train.records} | {r.path for r in test.records} == all_videos
    assert {r.label for r in test.records} == set(range(len(classes)))


# --------------------------------------------------------------------------- bad annotations
def _kinetics_copy(kinetics_root, tmp_path) -> Path:
    dst = tmp_path / "k"
    shutil.copytree(Path(kinetics_root) / "annotations", dst / "annotations")
    for split in ("train", "val", "test"):
        os.symlink(Path(kinetics_root) / split, dst / split)
    return dst


def _dm(root, **kw):
    from a2video.data import KineticsDataModule

    return KineticsDataModule(str(root), num_workers=0, **kw)


def test_missing_csv_is_one_clear_error(tmp_path):
    with pytest.raises(ann.AnnotationError, match=r"train\.csv[^\n]*; fix: "):
        _dm(tmp_path)


# The annotation files of the Kinetics-600/700 downloads, as named there (split -> its name):
# CVDF's Kinetics-600 (its complete train/val lists are CSVs named .txt), DeepMind's tarballs
# extracted into annotations/ (kinetics700_2020.tar.gz), the version-named CSVs.
KINETICS_600_700_LAYOUTS = {
    "cvdf_k600": {"train": "train.txt", "val": "val.txt", "test": "test.csv"},
    "deepmind_k700_2020": {
        "train": "kinetics700_2020/train.csv",
        "val": "kinetics700_2020/validate.csv",
        "test": "kinetics700_2020/test.csv",
    },
    "deepmind_k600": {"train": "kinetics600/train.csv", "val": "kinetics600/validate.csv"},
    "named_k600": {"train": "kinetics_600_train.csv", "val": "kinetics_600_val.csv"},
    "crawler_k600": {"train": "kinetics-600_train.csv", "val": "kinetics-600_val.csv"},
    "named_k700_2020": {"train": "kinetics_700_2020_train.csv", "val": "kinetics_700_2020_val.csv"},
}


@pytest.mark.parametrize("layout", sorted(KINETICS_600_700_LAYOUTS))
def test_kinetics_600_700_annotation_names_are_found(layout, kinetics_root, tmp_path):
    """The Kinetics-600/700 downloads' annotation files were not found under the data root (only
    Kinetics-400's names were looked for): the DataModule stopped with "no annotation file"."""
    root = _kinetics_copy(kinetics_root, tmp_path)
    adir = root / "annotations"
    names = KINETICS_600_700_LAYOUTS[layout]
    for split in ("train", "val", "test"):
        if split not in names:  # a split this layout has no file for
            (adir / f"{split}.csv").unlink()
            continue
        (adir / names[split]).parent.mkdir(parents=True, exist_ok=True)
        (adir / f"{split}.csv").rename(adir / names[split])
    dm = _dm(root)
    assert dm.class_names == ["falling", "growing", "rising", "shrinking"]
    dm.setup("fit")
    for split, name in names.items():
        assert ann.find_kinetics_csv(adir, split) == adir / name
    k400 = _dm(kinetics_root)  # the same CSVs under Kinetics-400's names
    k400.setup("fit")
    for stage in ("train", "val"):  # the same videos (by name), labels and CSV lines
        got, want = dm.datasets[stage].records, k400.datasets[stage].records
        assert [(Path(r.path).name, r.label, r.line) for r in got] == [
            (Path(r.path).name, r.label, r.line) for r in want
        ]


def test_kinetics_600_csv_beside_its_txt_is_one_line_naming_both(kinetics_root, tmp_path):
    """CVDF's Kinetics-600 train.csv is an incomplete list, its train.txt the complete one: with
    both there, neither is taken without a word."""
    root = _kinetics_copy(kinetics_root, tmp_path)
    adir = root / "annotations"
    shutil.copy(adir / "train.csv", adir / "train.txt")
    with pytest.raises(ann.AnnotationError) as err:
        _dm(root)
    text = str(err.value)
    assert text.startswith(f"{adir / 'train.csv'}: train.txt beside it") and "\n" not in text
    assert f"pass --data.train_split {adir / 'train.txt'}" in text


def test_two_kinetics_tarball_folders_are_one_line_naming_them(kinetics_root, tmp_path):
    root = _kinetics_copy(kinetics_root, tmp_path)
    adir = root / "annotations"
    for name in ("kinetics600", "kinetics700_2020"):
        (adir / name).mkdir()
        shutil.copy(adir / "train.csv", adir / name / "train.csv")
    (adir / "train.csv").unlink()
    with pytest.raises(ann.AnnotationError) as err:
        _dm(root)
    text = str(err.value)
    assert str(adir / "kinetics600" / "train.csv") in text and "kinetics700_2020" in text, text
    assert f"--data.annotation_dir {adir / 'kinetics600'}" in text


def test_no_kinetics_csv_names_what_was_looked_for_and_the_option(tmp_path):
    (tmp_path / "annotations").mkdir()
    with pytest.raises(ann.AnnotationError) as err:
        _dm(tmp_path)
    text = str(err.value)
    for name in ("train.csv", "train.txt", "kinetics_600_train.csv", "kinetics700_2020/train.csv"):
        assert name in text, text
    assert "--data.annotation_dir DIR" in text and "--data.train_split FILE" in text


def test_a_split_file_that_is_not_there_is_named_as_a_file(kinetics_root, tmp_path, monkeypatch):
    """``--data.val_split my_val.csv`` (a file, relative to another folder) was looked for as
    the split name "my_val.csv" in the annotation folder: "looked for my_val.csv.csv", and a
    fix that said to give a path, which the user had. It now names the file and the folder
    a relative path is read from."""
    monkeypatch.chdir(tmp_path)
    for name in ("my_val.csv", "lists/my_val.txt"):
        with pytest.raises(ann.AnnotationError) as err:
            ann.find_kinetics_csv(Path(kinetics_root) / "annotations", name)
        text = str(err.value)
        assert text.startswith(f"{name}: no such file") and str(tmp_path) in text, text
        assert ".csv.csv" not in text and ".txt.csv" not in text


def test_wrong_columns(kinetics_root, tmp_path):
    root = _kinetics_copy(kinetics_root, tmp_path)
    path = root / "annotations" / "train.csv"
    text = path.read_text().replace("youtube_id", "video", 1)
    path.write_text(text)
    with pytest.raises(ann.AnnotationError, match=r"train\.csv:1: .*youtube_id") as err:
        _dm(root)
    assert err.value.line == 1 and err.value.fix


def test_unknown_label_in_val_names_file_and_line(kinetics_root, tmp_path):
    root = _kinetics_copy(kinetics_root, tmp_path)
    path = root / "annotations" / "val.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = "juggling fire," + lines[2].split(",", 1)[1]
    path.write_text("".join(lines))
    dm = _dm(root)  # the class list comes from train.csv: building works
    with pytest.raises(ann.AnnotationError, match=r"val\.csv:3: label 'juggling fire'"):
        dm.setup("fit")


def test_duplicated_rows(kinetics_root, tmp_path):
    root = _kinetics_copy(kinetics_root, tmp_path)
    path = root / "annotations" / "train.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join([*lines, lines[3]]))
    with pytest.raises(ann.AnnotationError, match=rf"train\.csv:{len(lines) + 1}: duplicated"):
        _dm(root)


def test_empty_dataset(kinetics_root, tmp_path):
    root = _kinetics_copy(kinetics_root, tmp_path)
    (root / "val").unlink()
    (root / "val").mkdir()
    dm = _dm(root)
    with pytest.raises(ann.AnnotationError, match="no usable videos"):
        dm.setup("validate")


def test_ucf_split_naming_absent_videos(ucf_root, tmp_path):
    from a2video.data import UCF101DataModule

    split_dir = tmp_path / "lists"
    shutil.copytree(Path(ucf_root) / "ucfTrainTestlist", split_dir)
    with open(split_dir / "trainlist01.txt", "a") as fh:
        fh.write("BalloonRise/v_BalloonRise_g24_c09.avi 1\r\n")
    dm = UCF101DataModule(ucf_root, annotation_dir=str(split_dir), num_workers=0)
    with pytest.raises(ann.AnnotationError, match=r"trainlist01\.txt:\d+: 1 of .* absent"):
        dm.setup("fit")


def test_ucf_train_label_disagreeing_with_folder(ucf_root, tmp_path):
    split_dir = tmp_path / "lists"
    shutil.copytree(Path(ucf_root) / "ucfTrainTestlist", split_dir)
    path = split_dir / "trainlist01.txt"
    lines = path.read_text().splitlines()
    rel, _ = lines[0].split()
    lines[0] = f"{rel} 4"
    path.write_text("\r\n".join(lines) + "\r\n")
    classes = ann.read_ucf_classes(split_dir)
    with pytest.raises(ann.AnnotationError, match=r"trainlist01\.txt:1: label 4 disagrees"):
        ann.read_ucf_split(path, ann.find_ucf_video_dir(ucf_root), classes)


# --------------------------------------------------------------------------- labels
def _blank_label(path: Path, row: int) -> None:
    """Empty the label of data row ``row`` (file line ``row + 1``)."""
    lines = path.read_text().splitlines(keepends=True)
    lines[row] = "," + lines[row].split(",", 1)[1]
    path.write_text("".join(lines))


@pytest.mark.parametrize("split", ["train", "val"])
def test_blank_label_in_train_or_val_is_refused_naming_file_and_line(
    kinetics_root, tmp_path, split
):
    root = _kinetics_copy(kinetics_root, tmp_path)
    _blank_label(root / "annotations" / f"{split}.csv", 2)
    dm = _dm(root)  # the classes come from the labelled rows: building works
    with pytest.raises(ann.AnnotationError, match=rf"{split}\.csv:3: this row has no label") as e:
        dm.setup("fit")
    assert "is not one of the" not in str(e.value) and "only a test/predict split" in e.value.fix


def _unlabelled_csv(kinetics_root, tmp_path, split: str = "test") -> Path:
    """The ``split`` CSV without its label column."""
    rows = _csv_rows(Path(kinetics_root) / "annotations" / f"{split}.csv")
    path = tmp_path / f"{split}_unlabelled.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["youtube_id", "time_start", "time_end", "split"])
        writer.writerows(
            [r["youtube_id"], r["time_start"], r["time_end"], r["split"]] for r in rows
        )
    return path


def test_test_and_predict_splits_may_be_unlabelled_csvs(kinetics_root, tmp_path, small_clip):
    from a2video.data import KineticsDataModule

    path = _unlabelled_csv(kinetics_root, tmp_path)
    (blank := tmp_path / "test_blank.csv").write_text(
        (Path(kinetics_root) / "annotations" / "test.csv").read_text()
    )
    _blank_label(blank, 1)  # one row of a labelled test CSV without its label
    dm = KineticsDataModule(kinetics_root, test_split=str(path), **small_clip)
    for stage in ("test", "predict"):
        batch = next(iter(getattr(dm, f"{stage}_dataloader")()))
        assert batch["valid"].all() and (batch["label"] == -1).all()
    assert len(dm.datasets["test"]) == len(_csv_rows(path))
    dm = KineticsDataModule(kinetics_root, test_split=str(blank), **small_clip)
    dm.setup("test")
    assert [r.label for r in dm.datasets["test"].records].count(-1) == 1


def test_unlabelled_csv_as_train_split_is_one_clear_error(kinetics_root, tmp_path):
    path = _unlabelled_csv(kinetics_root, tmp_path, "train")
    with pytest.raises(ann.AnnotationError, match=r"_unlabelled\.csv:1: no 'label' column") as e:
        _dm(kinetics_root, train_split=str(path))
    assert "test/predict" in e.value.fix


# --------------------------------------------------------------------------- split folders
def _write_rows(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_csv_with_any_name_finds_the_videos_of_its_split_folder(kinetics_root, tmp_path):
    """``train_subset.csv``: its ``split`` column names train/ (flat and per-class files); a CSV
    mixing splits is searched for under the whole data_root, at any depth."""
    root = _kinetics_copy(kinetics_root, tmp_path)
    reference = _dm(root)._read_split("train")
    assert any(Path(r.path).parent.name != "train" for r in reference.records)  # per-class
    rows = _csv_rows(root / "annotations" / "train.csv")
    subset = _write_rows(root / "annotations" / "train_subset.csv", rows)
    split = _dm(root, train_split=str(subset))._read_split("train")
    assert [(r.path, r.label) for r in split.records] == [
        (r.path, r.label) for r in reference.records
    ]
    assert len(split.missing) == len(reference.missing)
    mixed = rows + _csv_rows(root / "annotations" / "val.csv")
    mixed_csv = _write_rows(tmp_path / "mixed.csv", mixed)
    split = _dm(root, test_split=str(mixed_csv))._read_split("test")
    assert len(split.records) == len(reference.records) + 4  # + the 4 val videos
    assert len(split.missing) == len(reference.missing)


def test_cvdf_replacements_take_the_place_of_corrupted_videos(kinetics_root, tmp_path):
    """CVDF's Kinetics-400 holds fixed copies of ~1400 corrupted train videos under the same
    names in ROOT/replacement/replacement_for_corrupted_k400/: the DataModule and check-data
    read those, not the corrupted download (and one missing from train/ is found there)."""
    from a2video.data.check import load_split

    reference = _dm(kinetics_root)._read_split("train")
    root = tmp_path / "k400"
    shutil.copytree(Path(kinetics_root) / "annotations", root / "annotations")
    fixed = root / "replacement" / "replacement_for_corrupted_k400"
    fixed.mkdir(parents=True)
    (root / "train").mkdir()
    for record in reference.records:
        os.symlink(record.path, root / "train" / Path(record.path).name)
    corrupted = Path(reference.records[0].path).name
    os.unlink(root / "train" / corrupted)
    (root / "train" / corrupted).write_bytes(b"moov atom not found")
    os.symlink(reference.records[0].path, fixed / corrupted)
    missing_stem = reference.missing[0][1]
    os.symlink(reference.records[1].path, fixed / f"{missing_stem}.mp4")

    label_of = {
        ann.kinetics_video_stem(r["youtube_id"], r["time_start"], r["time_end"]): r["label"]
        for r in _csv_rows(root / "annotations" / "train.csv")
    }
    for split in (_dm(root)._read_split("train"), load_split("kinetics", str(root), "train")):
        paths = {Path(r.path).name: r.path for r in split.records}
        assert paths[corrupted] == str(fixed / corrupted)
        assert paths[f"{missing_stem}.mp4"] == str(fixed / f"{missing_stem}.mp4")
        assert len(split.records) == len(reference.records) + 1
        assert len(split.missing) == len(reference.missing) - 1
        assert all(split.class_names[r.label] == label_of[Path(r.path).stem] for r in split.records)


def test_recursive_search_follows_links_once_and_survives_cycles(tmp_path):
    (tmp_path / "data" / "a" / "deep").mkdir(parents=True)
    (tmp_path / "data" / "a" / "deep" / "x.mp4").write_bytes(b"0")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "y.mp4").write_bytes(b"0")
    os.symlink(tmp_path / "other", tmp_path / "data" / "linked")
    os.symlink(tmp_path / "data", tmp_path / "data" / "a" / "loop")  # a cycle
    index = ann.index_videos(tmp_path / "data", recursive=True)
    assert index == {
        "x": str(tmp_path / "data" / "a" / "deep" / "x.mp4"),
        "y": str(tmp_path / "data" / "linked" / "y.mp4"),
    }


# --------------------------------------------------------------------------- lists
def test_path_label_list_with_class_names_holding_spaces(kinetics_root, tmp_path):
    split = _dm(kinetics_root)._read_split("val")
    names = {0: "playing guitar", 1: "riding a bike", 2: "tai chi", 3: "yoga"}
    lst = tmp_path / "val_list.txt"
    lst.write_text(
        "".join(
            f"{os.path.relpath(r.path, kinetics_root)} {names[r.label]}\n" for r in split.records
        )
    )
    got = ann.read_path_label_list(lst, kinetics_root)
    assert got.class_names == sorted(names.values()) and not got.missing
    assert [(r.path, got.class_names[r.label]) for r in got.records] == [
        (r.path, names[r.label]) for r in split.records
    ]
    assert ann.split_path_label("a b/x.avi 3") == ["a b/x.avi", "3"]
    assert ann.split_path_label("x.mp4,playing guitar") == ["x.mp4", "playing guitar"]
    assert ann.split_path_label("videos/x 12") == ["videos/x", "12"]


def test_a_split_file_is_told_by_its_first_line_not_its_extension(kinetics_root, tmp_path):
    """PySlowFast's Kinetics ``train.csv`` is a ``path label`` list (absolute paths, no header):
    the DataModule reads it as one and check-data's cleaned copy keeps its first line; a
    Kinetics CSV saved as ``.txt`` is read as a CSV."""
    from a2video.data.check import check_split, write_clean

    reference = _dm(kinetics_root)._read_split("train")
    slowfast = tmp_path / "slowfast" / "train.csv"
    slowfast.parent.mkdir()
    slowfast.write_text("".join(f"{r.path} {r.label}\n" for r in reference.records))
    dm = _dm(kinetics_root, train_split=str(slowfast), val_split=str(slowfast))
    got = dm._read_split("train")
    assert [(r.path, r.label) for r in got.records] == [
        (r.path, r.label) for r in reference.records
    ]
    checks, split_ann = check_split(
        "kinetics", kinetics_root, str(slowfast), workers=1, progress=False
    )
    cleaned = write_clean("kinetics", split_ann, checks, str(tmp_path / "clean"))
    assert cleaned.read_text() == slowfast.read_text()  # every video usable, none dropped

    as_txt = tmp_path / "train_copy.txt"
    shutil.copy(Path(kinetics_root) / "annotations" / "train.csv", as_txt)
    split = _dm(kinetics_root, train_split=str(as_txt))._read_split("train")
    assert [(r.path, r.label) for r in split.records] == [
        (r.path, r.label) for r in reference.records
    ]


@pytest.mark.parametrize(
    "text", ["falling\ngrowing\nrising\nshrinking", "falling\ngrowing\n\nrising\nshrinking\n\n"]
)
def test_class_names_file_next_to_a_list_is_read_line_by_line(kinetics_root, tmp_path, text):
    split = _dm(kinetics_root)._read_split("train")
    lst = tmp_path / "train_list.txt"
    lst.write_text(
        "".join(f"{os.path.relpath(r.path, kinetics_root)} {r.label}\n" for r in split.records)
    )
    (tmp_path / "class_names.txt").write_text(text)
    dm = _dm(kinetics_root, train_split=str(lst), val_split=str(lst))
    assert dm.class_names == ["falling", "growing", "rising", "shrinking"]
    (tmp_path / "class_names.txt").write_text("falling\ngrowing\nfalling\n")
    with pytest.raises(ann.AnnotationError, match=r"class_names\.txt:3: duplicated class name"):
        _dm(kinetics_root, train_split=str(lst))


def test_ucf_line_without_folder_or_ucf_name_names_file_and_line(ucf_root, tmp_path):
    split_dir = tmp_path / "lists"
    shutil.copytree(Path(ucf_root) / "ucfTrainTestlist", split_dir)
    path = split_dir / "testlist01.txt"
    count = len(path.read_text().splitlines())
    with open(path, "a") as fh:
        fh.write("BalloonRise_g01_c01.avi\n")
    classes = ann.read_ucf_classes(split_dir)
    with pytest.raises(
        ann.AnnotationError, match=rf"testlist01\.txt:{count + 1}: 'BalloonRise_g01_c01.avi'"
    ):
        ann.read_ucf_split(path, ann.find_ucf_video_dir(ucf_root), classes)


def test_a_byte_order_mark_is_read_as_nothing(kinetics_root, ucf_root, tmp_path):
    """Excel's "CSV UTF-8" starts the file with a BOM: the train CSV's header read as
    '\\ufeffyoutube_id…' ("no 'label' column"), an unlabelled test CSV's labels all -1, and
    classInd.txt's first line failed. Read with utf-8-sig, they are the same files."""
    csv_path = Path(kinetics_root) / "annotations" / "train.csv"
    bom = tmp_path / "train.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    classes = ann.read_kinetics_classes(csv_path)
    assert ann.read_kinetics_classes(bom) == classes
    video_dir = Path(kinetics_root) / "train"
    plain = ann.read_kinetics_csv(csv_path, video_dir, classes)
    assert ann.read_kinetics_csv(bom, video_dir, classes).records == plain.records
    test_csv = Path(kinetics_root) / "annotations" / "test.csv"
    (tmp_path / "test.csv").write_bytes(b"\xef\xbb\xbf" + test_csv.read_bytes())

    def test_labels(path: Path) -> list[int]:  # a test split may be unlabelled: no error
        split = ann.read_kinetics_csv(path, Path(kinetics_root) / "test", classes, False)
        return [r.label for r in split.records]

    labels = test_labels(test_csv)
    assert labels and min(labels) >= 0
    assert test_labels(tmp_path / "test.csv") == labels  # it read as unlabelled: all -1
    ucf = tmp_path / "ucfTrainTestlist"
    shutil.copytree(Path(ucf_root) / "ucfTrainTestlist", ucf)
    (ucf / "classInd.txt").write_bytes(b"\xef\xbb\xbf" + (ucf / "classInd.txt").read_bytes())
    assert ann.read_ucf_classes(ucf) == ann.read_ucf_classes(Path(ucf_root) / "ucfTrainTestlist")


def test_an_annotation_file_not_in_utf8_is_one_error_naming_its_line(tmp_path):
    """A CSV saved as Latin-1 (a spreadsheet's default export on Windows) or a UTF-16 list:
    an AnnotationError naming the file, the line and the fix (it was a UnicodeDecodeError
    traceback from the codec), for the Kinetics CSV, a path label list and UCF's classInd."""
    csv_file = tmp_path / "train.csv"
    csv_file.write_bytes("label,youtube_id,time_start,time_end,split\r\n"
                         "caf\u00e9,abc,1,11,train\r\n".encode("latin-1"))  # fmt: skip
    with pytest.raises(ann.AnnotationError, match=r"train\.csv:2: not UTF-8 text") as err:
        ann.read_kinetics_classes(csv_file)
    assert "fix: save the file as UTF-8" in str(err.value)
    listed = tmp_path / "list.txt"
    listed.write_text("a.mp4 0\n", encoding="utf-16")
    with pytest.raises(ann.AnnotationError, match=r"list\.txt:1: not UTF-8 text \(byte 0xff\)"):
        ann.read_path_label_list(listed, tmp_path)
    (tmp_path / "classInd.txt").write_bytes(b"1 Caf\xe9\n")
    with pytest.raises(ann.AnnotationError, match=r"classInd\.txt:1: not UTF-8"):
        ann.read_ucf_classes(tmp_path)


def test_listed_videos_are_found_by_listing_each_folder_once(tmp_path, monkeypatch):
    """A ``path label`` list or a UCF-101 split found its videos with one ``os.stat`` per
    line, on every rank (240k per rank for Kinetics, each a round trip on a network file
    system). Now each folder is listed once; a name it does not hold as a plain entry (a link,
    a broken one, another case, an absent file) is still looked up, so the records are the
    same: those ``os.path.exists`` finds."""
    videos = tmp_path / "videos" / "a"
    videos.mkdir(parents=True)
    names = [f"v{i:02d}.mp4" for i in range(40)]
    for name in names:
        (videos / name).write_bytes(b"")
    (videos / "folder.mp4").mkdir()
    (videos / "link.mp4").symlink_to(videos / "v00.mp4")
    (videos / "broken.mp4").symlink_to(tmp_path / "gone.mp4")
    listed = [f"a/{n}" for n in names] + ["a/folder.mp4", "a/link.mp4", "a/broken.mp4"]
    listed += ["a/V01.MP4", "a/absent.mp4", "b/v00.mp4", str(videos / "v01.mp4"), "/v00.mp4"]
    (tmp_path / "list.txt").write_text("".join(f"{rel} 0\n" for rel in listed))
    stats = []
    stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: stats.append(str(p)) or stat(p, *a, **k))
    split = ann.read_path_label_list(tmp_path / "list.txt", tmp_path / "videos")
    monkeypatch.undo()
    found = [os.path.join(tmp_path / "videos", rel) for rel in listed]
    assert [r.path for r in split.records] == [p for p in found if os.path.exists(p)]
    assert [rel for _, rel in split.missing] == [
        "a/broken.mp4", "a/V01.MP4", "a/absent.mp4", "b/v00.mp4", "/v00.mp4"
    ]  # fmt: skip
    assert not any(os.path.basename(p).startswith("v") for p in stats if "/a/" in p), stats


def test_a_ucf_split_finds_its_videos_without_a_stat_each(ucf_root, monkeypatch):
    split_dir = Path(ucf_root) / "ucfTrainTestlist"
    classes = ann.read_ucf_classes(split_dir)
    video_dir = ann.find_ucf_video_dir(ucf_root)
    stats = []
    stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: stats.append(str(p)) or stat(p, *a, **k))
    split = ann.read_ucf_split(split_dir / "trainlist01.txt", video_dir, classes)
    monkeypatch.undo()
    assert len(split.records) == 8 and all(os.path.exists(r.path) for r in split.records)
    assert not [p for p in stats if p.endswith(".avi")], stats
