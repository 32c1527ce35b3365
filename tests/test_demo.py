"""The end-to-end demo (``make demo``): a quick version in the suite, the full one marked slow.

The quick version runs every stage on tiny data (one epoch each) through the same entry points
and checks the pipeline ran and reported, not the accuracy bars; the slow one runs the real demo
and checks the bars of docs/demo.md: UCF-layout video top-1 >= 0.9 after transfer, at least
10 points above the same budget from scratch.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from a2video.demo import FULL, QUICK, run_demo, synthesize_once

KEYS = {"kinetics_val_top1", "ucf101_video_top1", "ucf101_scratch_video_top1", "seconds"}


def test_quick_demo_runs_every_stage_and_writes_the_summary(tmp_path, capsys):
    out, data = tmp_path / "runs", tmp_path / "data"
    summary = run_demo(out, data, QUICK, progress=False)

    saved = json.loads((out / "summary.json").read_text())
    assert set(saved) >= KEYS
    for key in KEYS:
        assert isinstance(saved[key], float) and saved[key] >= 0, key
    assert set(saved["stage_seconds"]) == {"synth", "pretrain", "finetune", "scratch"}
    assert saved["arch"] == "a2net_tiny" and saved["views"] == "2x3"
    assert saved["datasets"]["ucf101"]["test_videos"] == 4  # one video per class in fold 1
    assert saved["datasets"]["kinetics"]["classes"] == 4
    assert len(saved["commands"]) == 5
    assert "train.py fit --config" in saved["commands"][2]
    assert "--ckpt" in saved["commands"][3] and "--ckpt" not in saved["commands"][4]
    # fine-tuning really started from the pretrained weights, A²-blocks included
    assert saved["stages"]["finetune"]["metrics"]["loaded_attention_tensors"] > 0
    for run in ("finetune", "scratch"):
        assert (out / run / "results.json").is_file()
        assert (out / run / "predictions.csv").is_file() or any(
            (out / run).rglob("predictions.csv")
        )
    assert (out / "pretrain" / "checkpoints" / "last.ckpt").is_file()
    assert (out / "table.md").read_text().startswith("| stage |")
    assert summary["ucf101_video_top1"] == saved["ucf101_video_top1"]
    assert "video top-1" in capsys.readouterr().out


def test_synthesis_is_skipped_when_the_data_exist_with_the_same_parameters(tmp_path):
    params = QUICK.synth_params("ucf101") | {"classes": 2, "videos_per_class": 1}
    assert synthesize_once(tmp_path / "ucf", params, progress=False) is True
    stamp = (tmp_path / "ucf" / "synth_manifest.json").stat().st_mtime_ns
    assert synthesize_once(tmp_path / "ucf", params, progress=False) is False
    assert (tmp_path / "ucf" / "synth_manifest.json").stat().st_mtime_ns == stamp
    assert synthesize_once(tmp_path / "ucf", params | {"seed": 1}, progress=False) is True
    # a video of the kept set gone: written anew, not trained on as it is
    video = next((tmp_path / "ucf").rglob("*.avi"))
    video.unlink()
    assert synthesize_once(tmp_path / "ucf", params | {"seed": 1}, progress=False) is True
    assert video.is_file()
    # interrupted while writing: still the demo's folder, written anew by the next run
    from unittest import mock

    interrupted = mock.patch("a2video.data.synthetic.synthesize", side_effect=KeyboardInterrupt)
    with interrupted, pytest.raises(KeyboardInterrupt):
        synthesize_once(tmp_path / "ucf", params, progress=False)
    assert synthesize_once(tmp_path / "ucf", params, progress=False) is True


def test_demo_never_deletes_a_folder_it_did_not_make(tmp_path, capsys):
    """``--data`` or ``--out`` pointing at the user's own folders: one line, exit 2, and
    nothing there is touched (the data folder used to be deleted without a word)."""
    from a2video.demo import main

    mine = tmp_path / "mine" / "kinetics"
    mine.mkdir(parents=True)
    (mine / "NOTES.txt").write_text("my notes")
    with pytest.raises(SystemExit) as stop:
        main(
            [
                "--quick",
                "--no-progress",
                "--data",
                str(tmp_path / "mine"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "demo_params.json" in err and str(mine) in err, err
    assert (mine / "NOTES.txt").read_text() == "my notes"

    run = tmp_path / "experiments" / "pretrain"
    run.mkdir(parents=True)
    (run / "weights.ckpt").write_text("trained")
    with pytest.raises(SystemExit) as stop:
        main(["--quick", "--no-progress", "--data", str(tmp_path / "d"), "--out", str(run.parent)])
    assert stop.value.code == 2
    assert str(run) in capsys.readouterr().err
    assert (run / "weights.ckpt").read_text() == "trained"


@pytest.mark.slow
def test_full_demo_meets_the_bars(tmp_path):
    summary = run_demo(tmp_path / "runs", tmp_path / "data", replace(FULL), progress=False)
    assert summary["ucf101_video_top1"] >= 0.9
    assert summary["ucf101_video_top1"] - summary["ucf101_scratch_video_top1"] >= 0.10
    assert summary["seconds"] < 15 * 60
