"""`a2video synth` and `a2video check-data` end to end."""

from __future__ import annotations

import json
from pathlib import Path

from files import tree_digest

from a2video.cli import main


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
    clean = tmp_path / "clean"
    rc = main(
        [
            "check-data",
            "--layout",
            "kinetics",
            broken_kinetics_root,
            "--workers",
            "2",
            "--write-clean",
            str(clean),
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 1
    special = json.loads((Path(broken_kinetics_root) / "synth_manifest.json").read_text())
    for rel, kind in special["special"].items():
        if kind in ("zero-byte", "text", "truncated", "truncated-moov", "audio-only"):
            assert "undecodable  line" in out and rel in out, (rel, kind)
        elif kind in ("short", "single-frame"):
            assert rel in out  # too short for --min-frames 8
    rc = main(
        [
            "check-data",
            "--layout",
            "kinetics",
            broken_kinetics_root,
            "--annotation-dir",
            str(clean),
            "--workers",
            "2",
            "--no-progress",
        ]
    )
    assert rc == 0, capsys.readouterr().out


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
