"""`a2video synth` and `a2video check-data` end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from a2video_cli import run_cli
from files import tree_digest

from a2video.cli import main
from a2video.data.check import decode_all


def test_synth_is_deterministic_for_a_seed(tmp_path):
    for layout in ("kinetics", "ucf101"):
        args = [
            "synth",
            "--layout",
            layout,
            "--classes",
            "2",
            "--videos-per-class",
            "2",
            "--duration",
            "0.5",
            "0.8",
            "--max-side",
            "48",
            "--no-progress",
        ]
        assert main([*args, str(tmp_path / f"{layout}_a")]) == 0
        assert main([*args, str(tmp_path / f"{layout}_b")]) == 0
        assert main([*args, "--seed", "1", str(tmp_path / f"{layout}_c")]) == 0
        a, b = tree_digest(tmp_path / f"{layout}_a"), tree_digest(tmp_path / f"{layout}_b")
        assert a == b and len(a) > 3  # same files, same bytes
        assert a != tree_digest(tmp_path / f"{layout}_c")
    assert (tmp_path / "ucf101_a" / "ucfTrainTestlist" / "testlist03.txt").is_file()
    assert list((tmp_path / "ucf101_a" / "UCF-101").glob("*/v_*_g??_c??.avi"))


def test_check_data_lists_bad_files_and_writes_a_clean_split(
    broken_kinetics_root, tmp_path, capsys
):
    """Unusable files are listed and dropped by --write-clean; short and single-frame videos,
    which the loaders use (docs/data.md, "Bad videos"), are neither, unless --min-frames asks
    (the default 8 listed them as too short, exit 1, and dropped them from the test CSV)."""
    clean = tmp_path / "clean"
    args = ["check-data", "--layout", "kinetics", broken_kinetics_root, "--workers", "2"]
    rc = main([*args, "--write-clean", str(clean), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1
    special = json.loads((Path(broken_kinetics_root) / "synth_manifest.json").read_text())
    kinds = set(special["special"].values())
    assert {"short", "single-frame"} <= kinds
    for rel, kind in special["special"].items():
        split, youtube_id = rel.split("/")[0], Path(rel).stem.rsplit("_", 2)[0]
        cleaned = (clean / f"{split}.csv").read_text()
        if kind in ("zero-byte", "text", "truncated", "truncated-moov", "audio-only"):
            assert "undecodable  line" in out and rel in out, (rel, kind)
            assert youtube_id not in cleaned, (rel, kind)
        else:  # short, single-frame and the other odd kinds are usable: kept
            assert rel not in out and youtube_id in cleaned, (rel, kind, out)
    assert "too-short" not in out and out.count(" 0 too short") == 3, out
    rc = main([*args, "--annotation-dir", str(clean), "--no-progress"])
    assert rc == 0, capsys.readouterr().out
    # --min-frames opts in to listing the short ones
    rc = main([*args, "--annotation-dir", str(clean), "--min-frames", "8", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1, out
    for rel, kind in special["special"].items():
        if kind in ("short", "single-frame"):
            assert f"{rel}  " in out and "< min_frames=8" in out, (rel, out)
    assert out.count("too-short ") == 2, out


def test_check_data_on_a_clean_ucf_fold(ucf_root, capsys):
    rc = main(
        [
            "check-data",
            "--layout",
            "ucf101",
            ucf_root,
            "--fold",
            "2",
            "--workers",
            "1",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "trainlist02.txt" in out and "testlist02.txt" in out


def _kinetics_without_class(kinetics_root, tmp_path, lost: str) -> Path:
    """A Kinetics copy (links) whose train videos of class ``lost`` are all absent."""
    import csv
    import shutil

    src, dst = Path(kinetics_root), tmp_path / "k"
    shutil.copytree(src / "annotations", dst / "annotations")
    for split in ("val", "test"):
        (dst / split).symlink_to(src / split)
    with open(src / "annotations" / "train.csv", newline="") as fh:
        gone = {f"{r['youtube_id']}_{int(r['time_start']):06d}" for r in csv.DictReader(fh)
                if r["label"] == lost}  # fmt: skip
    for video in (src / "train").rglob("*.mp4"):
        if video.stem.rsplit("_", 1)[0] not in gone:
            target = dst / video.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(video)
    return dst


def test_write_clean_refuses_a_train_csv_that_would_drop_a_class(kinetics_root, tmp_path, capsys):
    root = _kinetics_without_class(kinetics_root, tmp_path, "growing")
    clean = tmp_path / "clean"
    args = ["check-data", "--layout", "kinetics", str(root), "--workers", "1", "--no-progress"]
    code, out, err = run_cli([*args, "--split", "train", "--write-clean", str(clean)], capsys)
    assert code == 2 and "missing" in out
    assert "train.csv: --write-clean refused" in err and "'growing'" in err
    assert "shift the class indices" in err and err.count("\n") == 1
    assert not (clean / "train.csv").exists()
    # the other splits never define the classes: they are cleaned as before
    code, out, err = run_cli([*args, "--split", "val", "--write-clean", str(clean)], capsys)
    assert code == 0 and (clean / "val.csv").is_file(), err


def test_check_data_finds_the_videos_of_a_csv_with_any_name(kinetics_root, tmp_path, capsys):
    import shutil

    root = tmp_path / "k"
    shutil.copytree(Path(kinetics_root) / "annotations", root / "annotations")
    (root / "train").symlink_to(Path(kinetics_root) / "train")
    subset = root / "annotations" / "train_subset.csv"
    shutil.copy(root / "annotations" / "train.csv", subset)
    args = ["check-data", "--layout", "kinetics", str(root), "--workers", "1", "--no-progress"]
    _, reference, _ = run_cli([*args, "--split", "train"], capsys)
    code, out, err = run_cli([*args, "--split", str(subset)], capsys)
    summary = reference.strip().splitlines()[-2]  # "12 listed: 11 ok, 1 missing, ..."
    assert code == 1 and " 1 missing" in summary and summary in out, (out, err)


def test_check_data_names_its_own_annotation_flag(tmp_path, capsys):
    """A dataset root without its annotation file is said once (not once per split, counted as
    'unusable entries', exit 1), in one line whose fix leads with check-data's own
    --annotation-dir (it led with the training CLI's --data.annotation_dir)."""
    for layout, marker, missing in (
        ("kinetics", "annotations", "no annotation file for split 'train'"),
        ("ucf101", "ucfTrainTestlist", "classInd.txt not found"),
    ):
        root = tmp_path / layout
        (root / marker).mkdir(parents=True)
        args = ["check-data", "--layout", layout, str(root), "--no-progress"]
        code, out, err = run_cli(args, capsys)
        assert code == 2 and out == "", (out, err)
        assert err.count("\n") == 1 and err.count(missing) == 1, err
        assert str(root / marker) in err and "; fix: pass --annotation-dir DIR" in err, err
        assert "--data." not in err, err


def test_check_data_says_a_missing_root_or_another_layout_in_one_line(
    kinetics_root, ucf_root, tmp_path, capsys
):
    """A ROOT that is not there, or not a dataset of --layout, is one line naming it and the fix
    (--layout of the other layout when ROOT is one), exit 2: it was the train CSV's
    'no annotation file' said for each split, as 3 unusable entries, exit 1."""
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ("kinetics", tmp_path / "nonexist", "dataset root not found", "annotations/"),
        ("ucf101", tmp_path / "nonexist", "dataset root not found", "ucfTrainTestlist/"),
        ("kinetics", ucf_root, "no annotations/ folder", "fix: pass --layout ucf101"),
        ("ucf101", kinetics_root, "no ucfTrainTestlist/ folder", "fix: pass --layout kinetics"),
        ("kinetics", empty, "no annotations/ folder", "pass --annotation-dir DIR"),
        ("ucf101", empty, "no ucfTrainTestlist/ folder", "pick the right --layout"),
    ]
    for layout, root, what, fix in cases:
        args = ["check-data", "--layout", layout, str(root), "--no-progress"]
        code, out, err = run_cli(args, capsys)
        assert code == 2 and out == "", (layout, root, out, err)
        assert err.startswith(f"a2video check-data: error: {root}: {what}"), err
        assert err.count("\n") == 1 and fix in err, err
    # the annotation folder given apart: ROOT needs only the videos
    code, out, err = run_cli(
        ["check-data", "--layout", "ucf101", str(ucf_root), "--split", "test", "--workers", "1",
         "--no-progress", "--annotation-dir", str(Path(ucf_root) / "ucfTrainTestlist")],
        capsys,
    )  # fmt: skip
    assert code == 0, (out, err)


def test_write_clean_keeps_the_class_names_of_a_path_label_list(kinetics_root, tmp_path, capsys):
    """A ``path label`` list whose classes come from its ``class_names.txt`` is cleaned with
    that file beside it: the cleaned list read alone made its own, sorted class list (other
    indices for every label) without a word."""
    from a2video.data import KineticsDataModule

    videos = sorted(Path(kinetics_root, "val").glob("*.mp4"))[:2]
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "class_names.txt").write_text("zebra\nant\n")
    pairs = zip(videos, ("zebra", "ant"), strict=True)
    rows = [f"{v.relative_to(kinetics_root)} {name}" for v, name in pairs]
    (lists / "train.txt").write_text("\n".join([*rows, "val/gone.mp4 ant"]) + "\n")
    clean = tmp_path / "clean"
    args = ["check-data", "--layout", "kinetics", kinetics_root, "--workers", "1", "--no-progress"]
    code, out, err = run_cli([*args, "--split", str(lists / "train.txt"), "--write-clean",
                              str(clean)], capsys)  # fmt: skip
    assert code == 1 and "missing" in out, (out, err)
    dm = KineticsDataModule(kinetics_root, train_split=str(clean / "train.txt"), num_workers=0)
    assert dm.class_names == ["zebra", "ant"]
    # another class list already in DIR is not used (nor replaced) for this list
    (clean / "class_names.txt").write_text("ant\nzebra\n")
    code, out, err = run_cli([*args, "--split", str(lists / "train.txt"), "--write-clean",
                              str(clean)], capsys)  # fmt: skip
    assert code == 2 and "class_names.txt is not" in err and err.count("\n") == 1, err
    assert (clean / "class_names.txt").read_text() == "ant\nzebra\n"


def test_synth_refuses_a_root_of_other_files(tmp_path, capsys):
    """``a2video synth`` into a folder it did not fill (a real dataset, another layout's
    synthetic set) stops in one line; it overwrote the annotation files there without a word.
    Its own earlier root, interrupted or not, is written again."""
    args = ["--classes", "1", "--videos-per-class", "1", "--duration", "0.3", "0.3"]
    args += ["--max-side", "32", "--no-progress"]
    mine = tmp_path / "mine"
    (mine / "annotations").mkdir(parents=True)
    (mine / "annotations" / "train.csv").write_text("label,youtube_id,time_start,time_end\n")
    code, out, err = run_cli(["synth", str(mine), *args, "--missing", "0"], capsys)
    assert code == 2 and "holds files a2video synth did not write" in err, (out, err)
    assert err.count("\n") == 1
    assert (mine / "annotations" / "train.csv").read_text().count("\n") == 1
    ucf = tmp_path / "ucf"
    assert main(["synth", str(ucf), "--layout", "ucf101", *args]) == 0
    code, out, err = run_cli(["synth", str(ucf), "--layout", "kinetics", *args, "--missing", "0"],
                             capsys)  # fmt: skip
    assert code == 2 and "holds a ucf101 synthetic dataset" in err, (out, err)
    (ucf / "synth_manifest.json").write_text('{"layout": "ucf101", "incomplete": true}')
    assert main(["synth", str(ucf), "--layout", "ucf101", *args]) == 0


def test_check_data_without_a_test_csv_checks_train_and_val(kinetics_root, tmp_path, capsys):
    """Kinetics annotations with no test CSV (MMAction2's ``kinetics_{train,val}.csv``; the
    DataModules test on val): check-data with no --split checks train and val. It stopped
    before decoding anything: 'no annotation file for split test', exit 2."""
    import shutil

    root = tmp_path / "k"
    (root / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        shutil.copy(Path(kinetics_root, "annotations", f"{split}.csv"),
                    root / "annotations" / f"kinetics_{split}.csv")  # fmt: skip
        (root / split).symlink_to(Path(kinetics_root) / split)
    args = ["check-data", "--layout", "kinetics", str(root), "--workers", "1", "--no-progress"]
    code, out, err = run_cli(args, capsys)
    assert code in (0, 1) and "[train]" in out and "[val]" in out and "[test]" not in out, err


@pytest.mark.parametrize(
    ("option", "said"),
    [
        (["--videos-per-class", "0"], "--videos-per-class 0: it must be >= 1"),
        (["--broken", "2"], "--broken 2.0: a share of the videos, 0..1"),
        (["--size", "0", "10"], "--size 0 10: width and height must be even and >= 16"),
        (["--size", "7", "5"], "--size 7 5: width and height must be even and >= 16"),
    ],
)
def test_synth_refuses_values_it_cannot_honour_in_one_line(option, said, tmp_path, capsys):
    """They were an IndexError / ZeroDivisionError traceback, numpy's 'cannot reshape', or a
    dataset of no train video announced as '8 classes'; nothing is written."""
    root = tmp_path / "s"
    code, out, err = run_cli(["synth", str(root), "--no-progress", *option], capsys)
    assert code == 2 and err == f"a2video synth: error: {said}\n", (out, err)
    assert not root.exists()


@pytest.mark.parametrize(
    ("option", "named"),
    [
        (["--missing", "0.2"], "--missing"),
        (["--val-per-class", "2"], "--val-per-class"),
        (["--structure", "flat", "--missing", "0"], "--structure, --missing"),
    ],
)
def test_synth_ucf101_refuses_the_kinetics_only_options(option, named, tmp_path, capsys):
    """``--layout ucf101`` ignored ``--missing``, ``--val-per-class`` and ``--structure``: a
    dataset without the missing videos or val split asked for. Now one line names them and
    what the ucf101 layout takes; nothing is written."""
    root = tmp_path / "s"
    code, out, err = run_cli(["synth", str(root), "--layout", "ucf101", *option], capsys)
    assert code == 2 and err.count("\n") == 1, (out, err)
    assert err.startswith(f"a2video synth: error: {named}: Kinetics-layout only;"), err
    assert "it takes --classes, --videos-per-class" in err
    assert not root.exists()


def test_check_data_refuses_a_fold_with_the_kinetics_layout(kinetics_root, capsys):
    """``--fold 2 --layout kinetics`` checked every Kinetics split as if --fold were not
    typed; now one line says --fold is UCF-101's, before any video is decoded."""
    args = ["check-data", "--layout", "kinetics", kinetics_root, "--fold", "2", "--no-progress"]
    code, out, err = run_cli(args, capsys)
    assert code == 2 and out == "", (out, err)
    said = "--fold 2: UCF-101's fold (--layout ucf101); a kinetics split is chosen with --split"
    assert err == f"a2video check-data: error: {said}\n", err


def test_ctrl_c_ends_check_data_in_one_line(kinetics_root, monkeypatch, capsys):
    """Ctrl-C while check-data decodes: one line and exit status 130, as ``prepare`` (it was
    the KeyboardInterrupt traceback through concurrent.futures)."""
    from a2video.data import check

    def interrupted(path: str) -> tuple[int, str]:
        raise KeyboardInterrupt

    monkeypatch.setattr(check, "decode_all", interrupted)
    args = ["check-data", "--layout", "kinetics", kinetics_root, "--workers", "1", "--no-progress"]
    try:
        code = main(args)
    except KeyboardInterrupt:
        code = "traceback"
    assert code == 130
    assert capsys.readouterr().err.endswith("a2video check-data: interrupted\n")


def test_check_data_checks_its_outputs_before_decoding(kinetics_root, tmp_path, monkeypatch,
                                                       capsys):  # fmt: skip
    """``--write-clean`` naming the annotation folder itself, and a ``--report`` in a folder
    that is not there, were errors after every video was decoded (hours on Kinetics), the
    report lost. Now the first stops before any decoding; the report's folder is made."""
    from a2video.data import check

    decoded = []
    monkeypatch.setattr(check, "decode_all", lambda path: decoded.append(path) or (8, ""))
    args = ["check-data", "--layout", "kinetics", kinetics_root, "--workers", "1", "--no-progress"]
    own = str(Path(kinetics_root) / "annotations")
    code, out, err = run_cli([*args, "--write-clean", own], capsys)
    assert code == 2 and "--write-clean would overwrite" in err and decoded == [], (out, err)
    report = tmp_path / "reports" / "report.csv"
    code, out, err = run_cli([*args, "--split", "val", "--report", str(report)], capsys)
    assert code in (0, 1) and report.read_text().startswith("line,path,status"), (out, err)


def test_synth_max_side_scales_a_given_size_too(tmp_path):
    """``--size 96 64 --max-side 48``: the videos were 96x64, --max-side ignored."""
    from a2video.data.video import PyAVReader

    args = ["synth", str(tmp_path / "s"), "--layout", "ucf101", "--classes", "1", "--no-progress"]
    args += ["--videos-per-class", "1", "--duration", "0.3", "0.3", "--size", "96", "64"]
    assert main([*args, "--max-side", "48"]) == 0
    video = next((tmp_path / "s" / "UCF-101").rglob("*.avi"))
    reader = PyAVReader(str(video))
    assert (reader.width, reader.height) == (48, 32)
    reader.close()


_CRASH_ON: list[str] = []  # the video whose decoding kills its process (set before the fork)


def _decode_or_crash(path: str) -> tuple[int, str]:
    """check-data's decode_all, but a crash (the process dies) on ``_CRASH_ON``'s video; at
    module level, so the pool's forked workers find it."""
    import signal

    if path in _CRASH_ON:
        os.kill(os.getpid(), signal.SIGKILL)
    return decode_all(path)


def test_check_data_lists_a_video_that_crashes_the_decoder(kinetics_root, monkeypatch, capsys):
    """A video whose decoding kills the worker process (a crash in the decoding library):
    listed as undecodable, every other video checked. It was a BrokenProcessPool traceback
    and every result was lost."""
    from a2video.data import check

    culprit = sorted(str(p) for p in Path(kinetics_root, "val").glob("*.mp4"))[1]
    _CRASH_ON[:] = [culprit]
    monkeypatch.setattr(check, "decode_all", _decode_or_crash)
    args = ["check-data", "--layout", "kinetics", kinetics_root, "--split", "val"]
    try:
        code, out, err = run_cli([*args, "--workers", "2", "--no-progress"], capsys)
    finally:
        _CRASH_ON.clear()
    listed = [ln for ln in out.splitlines() if ln.startswith("undecodable")]
    assert code == 1 and len(listed) == 1, (out, err)
    assert culprit in listed[0] and check.CRASHED in listed[0]
    assert " ok, " in out and out.count("listed:") == 1


def test_check_data_a_mistyped_kinetics_split_names_the_splits_there(kinetics_root, capsys):
    """``--split trian``: the line names the splits whose CSVs are there and the one meant; it
    named ``--data.trian_split FILE``, an option of neither check-data nor train.py."""
    args = ["check-data", "--layout", "kinetics", kinetics_root, "--split", "trian"]
    code, out, err = run_cli([*args, "--no-progress"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "no annotation file for split 'trian'" in err and "(did you mean 'train'?)" in err, err
    assert "name a split whose annotation file is in" in err and "--data." not in err, err
