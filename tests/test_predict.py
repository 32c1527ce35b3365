"""Inference: view parsing and subsets, the accuracy analyses, and predicting files and test sets
with a tiny checkpoint trained in the session."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from a2video_cli import run_cli

from a2video.explore.predict import (
    DatasetPredictions,
    accuracy_by_views,
    confusion_matrix,
    most_confused_pairs,
    parse_views,
    per_class_accuracy,
    view_subset,
)

# ---------------------------------------------------------------- views


def test_parse_views_reads_clips_by_crops():
    assert parse_views("10x3") == (10, 3)
    assert parse_views("1") == (1, 1)
    assert parse_views("3×1") == (3, 1)
    for bad in ("0x3", "10x2", "ax3", "10x3x1", ""):
        with pytest.raises(ValueError, match="CLIPSxCROPS"):
            parse_views(bad)


def test_view_subset_picks_the_decoded_clips_nearest_to_a_smaller_decode():
    # 10x3 decode, clip-major (view c*3 + s), crops left/centre/right.
    assert view_subset(10, 3, 1, 1) == [16]  # centre clip 5, centre crop 1
    assert view_subset(10, 3, 1, 3) == [15, 16, 17]
    assert view_subset(10, 3, 3, 1) == [1, 16, 28]  # clips 0, 5, 9: first, centre, last
    assert view_subset(10, 3, 10, 3) == list(range(30))
    assert view_subset(4, 1, 2, 1) == [0, 3]
    with pytest.raises(ValueError):
        view_subset(3, 1, 10, 1)
    with pytest.raises(ValueError):
        view_subset(10, 3, 1, 2)


def test_accuracy_by_views_averages_the_softmax_of_each_subset():
    # Two videos, 3 clips x 1 crop, 2 classes. Video 0: only its centre clip is right;
    # video 1: only its last clip is right, and strongly.
    scores = torch.tensor(
        [
            [[0.4, 0.6], [0.9, 0.1], [0.4, 0.6]],  # label 0
            [[0.6, 0.4], [0.6, 0.4], [0.0, 1.0]],  # label 1
        ]
    )
    table = accuracy_by_views(scores, torch.tensor([0, 1]), 3, 1, clips=(1, 3, 10), crops=(1, 3))
    assert table == {(1, 1): 0.5, (3, 1): 1.0}  # 10 clips and 3 crops exceed the decode


# ---------------------------------------------------------------- confusion


def test_confusion_matrix_per_class_accuracy_and_most_confused_pairs():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 2, 2, 2, 0, 2])
    cm = confusion_matrix(labels, preds, 4)
    assert cm.tolist() == [[1, 2, 0, 0], [0, 1, 1, 0], [1, 0, 3, 0], [0, 0, 0, 0]]
    acc = per_class_accuracy(cm)
    torch.testing.assert_close(acc[:3], torch.tensor([1 / 3, 0.5, 0.75], dtype=torch.float64))
    assert torch.isnan(acc[3])  # no video of class 3
    names = ["a", "b", "c", "d"]
    pairs = most_confused_pairs(cm, names, k=2)
    assert pairs[0] == {"true": "a", "predicted": "b", "count": 2, "fraction": 2 / 3}
    # Ties in count break on the larger fraction: b->c is half of b, c->a a quarter of c.
    assert (pairs[1]["true"], pairs[1]["predicted"]) == ("b", "c")
    assert len(most_confused_pairs(cm, names, k=10)) == 3


def test_dataset_predictions_score_valid_videos_only():
    scores = torch.tensor([[[0.9, 0.1]], [[0.2, 0.8]], [[0.5, 0.5]]])
    preds = DatasetPredictions(
        view_scores=scores,
        labels=torch.tensor([0, 0, 1]),
        index=torch.arange(3),
        valid=torch.tensor([True, True, False]),
        clips=1,
        crops=1,
    )
    assert preds.accuracy() == 0.5
    assert len(preds.only_valid().labels) == 2


# ---------------------------------------------------------------- with a trained checkpoint


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, kinetics_root) -> dict[str, str]:
    from tiny_checkpoint import train_tiny_run

    return train_tiny_run(tmp_path_factory.getbasetemp(), kinetics_root)


def test_load_predictor_restores_the_network_classes_clip_and_datamodule(tiny_run):
    from a2video.explore.predict import load_predictor

    predictor = load_predictor(tiny_run["ckpt"])
    assert predictor.meta["arch"] == "a2net_tiny"
    assert predictor.class_names == ["falling", "growing", "rising", "shrinking"]
    assert predictor.clip_shape == (3, 4, 32, 32)
    assert not predictor.model.training
    dm = predictor.datamodule(num_clips=1, num_crops=1)
    assert dm.class_names == predictor.class_names
    assert dm.data_root == tiny_run["data"]
    assert (dm.spec.frames, dm.spec.crop_size, dm.spec.num_views) == (4, 32, 1)


def test_a_relative_data_root_is_the_folder_the_run_read_from_any_working_directory(
    tiny_run, tmp_path, monkeypatch
):
    """A run started in its project folder with ``--data.data_root data`` keeps ``data`` as the
    DataModule's argument: the attention notebook, which moves to the repository root, rebuilt
    the DataModule on the root's ``data`` (no such folder: a traceback in the kernel). The
    run's saved config holds the absolute path; a checkpoint without one keeps the relative."""
    from tiny_checkpoint import relative_data_checkpoint

    from a2video.explore.predict import load_predictor

    project = tmp_path / "project"
    ckpt = relative_data_checkpoint(tiny_run["ckpt"], project, saved_config=True)
    monkeypatch.chdir(tmp_path)  # no data/ here
    predictor = load_predictor(ckpt)
    dm = predictor.datamodule(num_clips=1, num_crops=1, num_workers=0)
    assert dm.data_root == str(project / "data")
    dm.setup("test")
    assert dm.class_names == predictor.class_names and len(dm.datasets["test"]) == 4
    assert predictor.datamodule(tiny_run["data"]).data_root == tiny_run["data"]  # as given
    older = relative_data_checkpoint(tiny_run["ckpt"], tmp_path / "older", saved_config=False)
    assert load_predictor(older).recorded_data_root() == "data"


def test_predict_names_the_right_class_of_the_videos_the_model_learned(tiny_run, capsys):
    from a2video.explore.predict import load_predictor

    dm = load_predictor(tiny_run["ckpt"]).datamodule()
    dm.setup("fit")
    records = dm.datasets["train"].records
    code, out, err = run_cli(
        ["predict", "--ckpt", tiny_run["ckpt"], "--views", "3x3", "--json"]
        + [r.path for r in records],
        capsys,
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["views"] == "3x3" and len(doc["videos"]) == len(records)
    right = 0
    for video, record in zip(doc["videos"], records, strict=True):
        assert video["ok"] and video["views"] == 9 and len(video["topk"]) == 4
        scores = [t["score"] for t in video["topk"]]
        assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1, abs=1e-4)
        right += video["label"] == dm.class_names[record.label]
    # The tiny model memorised most of its 11 training videos (chance: 1 in 4).
    assert right / len(records) >= 0.7, f"{right} of {len(records)}"


def test_predict_gives_the_scores_of_the_training_test_run(tiny_run, capsys):
    """Same views, same scores: `a2video predict` reproduces training's predictions.csv."""
    import pandas as pd

    table = pd.read_csv(f"{tiny_run['run']}/predictions.csv")
    args = ["predict", "--ckpt", tiny_run["ckpt"], "--views", "3x3", "--topk", "2", "--json"]
    code, out, _ = run_cli([*args, *table["video"]], capsys)
    assert code == 0
    for video, (_, row) in zip(json.loads(out)["videos"], table.iterrows(), strict=True):
        assert video["label"] == row["top1"]
        assert video["topk"][0]["score"] == pytest.approx(row["score1"], abs=1e-4)
        assert video["topk"][1]["label"] == row["top2"]


def test_predict_reports_a_file_it_cannot_decode_and_still_labels_the_others(
    tiny_run, tmp_path, capsys
):
    import pandas as pd

    good = pd.read_csv(f"{tiny_run['run']}/predictions.csv")["video"][0]
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    missing = tmp_path / "missing.mp4"
    code, out, err = run_cli(
        ["predict", "--ckpt", tiny_run["ckpt"], "--views", "1x1", str(text), good, str(missing)],
        capsys,
    )
    assert code == 1
    assert out.count("\n") == 1 and out.startswith(f"{good}: ")  # the good one is labelled
    assert f"{text}: cannot decode" in err and f"{missing}: cannot decode" in err
    assert "file not found" in err


def test_predict_rejects_bad_views_and_non_checkpoints_in_one_line(tiny_run, tmp_path, capsys):
    argv = ["predict", "--ckpt", tiny_run["ckpt"], "--views", "10x2", "x.mp4"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "CLIPSxCROPS" in err
    bogus = tmp_path / "model.ckpt"
    bogus.write_text("hello")
    code, _, err = run_cli(["predict", "--ckpt", str(bogus), "x.mp4"], capsys)
    assert code == 2 and "not a PyTorch checkpoint" in err and err.count("\n") == 1


def test_predict_attention_writes_the_gather_maps_of_every_block_over_each_video(
    tiny_run, tmp_path, capsys
):
    import pandas as pd
    from PIL import Image

    videos = list(pd.read_csv(f"{tiny_run['run']}/predictions.csv")["video"][:2])
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video\n")
    out = tmp_path / "maps"
    args = ["predict", "--ckpt", tiny_run["ckpt"], "--views", "1x1", "--attention", str(out)]
    code, stdout, err = run_cli([*args, *videos, str(broken)], capsys)
    assert code == 1 and f"{broken}: cannot decode" in err  # the others still get their maps
    assert stdout.count("\n") == 2
    blocks = ["layer2.0.attn", "layer3.0.attn"]  # a2net_tiny's A2-blocks
    for video in videos:
        folder = out / Path(video).stem
        assert sorted(p.name for p in folder.iterdir()) == [f"{b}.png" for b in blocks]
        with Image.open(folder / f"{blocks[0]}.png") as png:
            width, height = png.size
        assert 400 < width <= 2000 and 300 < height <= 2000  # 4 descriptors × 4 frames, readable
    assert "attention maps: 4 PNGs in" in err and not (out / "broken").exists()


def test_predict_attention_of_a_net_without_a2_blocks_stops_before_predicting(
    tiny_run, tmp_path, monkeypatch, capsys
):
    """An i3d_tiny checkpoint with --attention: every video was decoded and labelled first, then
    the run ended in "has no A2-block" (exit 2) with the labels already printed."""
    import pandas as pd

    from a2video.explore import predict

    ckpt = torch.load(tiny_run["ckpt"], map_location="cpu", weights_only=True)
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if ".attn." not in k}
    ckpt["a2video"]["arch"] = ckpt["hyper_parameters"]["arch"] = "i3d_tiny"
    path = tmp_path / "i3d_tiny.ckpt"
    torch.save(ckpt, path)
    assert predict.load_predictor(path).meta["arch"] == "i3d_tiny"  # a valid checkpoint
    decoded = []
    real = predict.predict_videos
    monkeypatch.setattr(
        predict, "predict_videos", lambda *a, **k: decoded.append(a) or real(*a, **k)
    )
    videos = list(pd.read_csv(f"{tiny_run['run']}/predictions.csv")["video"][:2])
    args = ["predict", "--ckpt", str(path), "--views", "1x1", "--attention", str(tmp_path / "maps")]
    code, out, err = run_cli([*args, *videos], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1, (out, err)
    assert err.startswith("a2video predict: error: --attention: i3d_tiny has no A2-block"), err
    assert "drop --attention" in err
    assert decoded == [] and not (tmp_path / "maps").exists()


def test_predict_attention_into_a_file_stops_before_predicting(tiny_run, tmp_path, capsys):
    """``--attention`` naming an existing file: every video was decoded and labelled first,
    then the run ended in "[Errno 20] Not a directory" naming a folder under the file."""
    import pandas as pd

    target = tmp_path / "maps.png"
    target.write_bytes(b"a figure the user made")
    videos = list(pd.read_csv(f"{tiny_run['run']}/predictions.csv")["video"][:1])
    args = ["predict", "--ckpt", tiny_run["ckpt"], "--views", "1x1", "--attention", str(target)]
    code, out, err = run_cli([*args, *videos], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1, (out, err)
    assert err.startswith(f"a2video predict: error: {target}: a file, not a folder; --attention")
    assert target.read_bytes() == b"a figure the user made"


def test_predict_refuses_a_negative_batch_size_in_one_line(tiny_run, capsys):
    """It forwarded no view and ended in "torch.cat(): expected a non-empty list of Tensors"."""
    import pandas as pd

    videos = list(pd.read_csv(f"{tiny_run['run']}/predictions.csv")["video"][:1])
    args = ["predict", "--ckpt", tiny_run["ckpt"], "--views", "1x1", "--batch-size", "-1"]
    code, out, err = run_cli([*args, *videos], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1, (out, err)
    assert err.startswith("a2video predict: error: --batch-size -1: it must be at least 0"), err


def test_predict_attention_gives_videos_with_the_same_stem_their_own_folders(
    tiny_run, tmp_path, capsys
):
    """a/clip.mp4, b/clip.mp4 and clip.avi wrote into one folder: the first's maps were
    overwritten, and the count printed was not the number of files."""
    import shutil

    import pandas as pd

    first, second = list(pd.read_csv(f"{tiny_run['run']}/predictions.csv")["video"][:2])
    videos = [tmp_path / "a" / "clip.mp4", tmp_path / "b" / "clip.mp4", tmp_path / "clip.avi"]
    for source, target in zip((first, second, first), videos, strict=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    out = tmp_path / "maps"
    args = ["predict", "--ckpt", tiny_run["ckpt"], "--views", "1x1", "--attention", str(out)]
    code, _, err = run_cli([*args, *map(str, videos), str(videos[0])], capsys)  # one given twice
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["clip", "clip-2", "clip-3"]
    pngs = sorted(out.rglob("*.png"))
    assert len(pngs) == 6 and f"attention maps: {len(pngs)} PNGs in {out}" in err
    # a video keeps its own stem where another's suffix would take it; case-insensitive too
    from a2video.explore.attention_maps import map_folders

    assert map_folders(["a/x.mp4", "b/x.mp4", "x-2.mp4", "X.avi", "a/x.mp4"]) == {
        "a/x.mp4": "x",
        "b/x.mp4": "x-3",
        "x-2.mp4": "x-2",
        "X.avi": "X-4",
    }


def test_predict_reads_a_video_of_a_prepared_copy_with_its_frame_step(
    tiny_run, tmp_path, monkeypatch, capsys
):
    """A video under a root with ``a2video_prepared.json`` (frame_step 2): predict decodes the
    frames the test DataModule decodes (stride 2 original frames = 1 frame of the copy)."""
    from a2video.data import sampling
    from a2video.data.prepare import MARKER
    from a2video.explore.predict import load_predictor

    root = tmp_path / "prepared"
    root.mkdir()
    for name in ("annotations", "train", "val", "test"):
        (root / name).symlink_to(Path(tiny_run["data"]) / name)
    (root / MARKER).write_text(json.dumps({"frame_step": 2}))
    calls = []
    real = sampling.multi_clip
    monkeypatch.setattr(sampling, "multi_clip", lambda *a: calls.append(a) or real(*a))
    predictor = load_predictor(tiny_run["ckpt"])
    dm = predictor.datamodule(data_root=root, num_clips=3, num_crops=3)
    dm.setup("test")
    record = dm.datasets["test"].records[0]
    views = dm.datasets["test"][(0, 0)]["video"]
    assert len(calls) == 1 and calls[0][2] == 1  # (num_frames, frames, stride 2 / 2, clips)
    expected = predictor.view_scores(views).mean(0).max().item()
    code, out, err = run_cli(
        ["predict", "--ckpt", tiny_run["ckpt"], "--views", "3x3", "--json", record.path], capsys
    )
    assert code == 0, err
    assert calls[1:] == calls[:1]  # the same frame indices
    video = json.loads(out)["videos"][0]
    assert video["frame_step"] == 2
    assert video["topk"][0]["score"] == pytest.approx(expected, abs=1e-4)
    assert f"videos under {root} read with its a2video_prepared.json frame_step 2" in err


def test_predict_refuses_a_device_this_machine_lacks_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ckpt = str(tmp_path / "model.ckpt")  # the device is checked before the checkpoint is read
    for device, message in (
        ("gpu0", "device 'gpu0' is not a torch device name; this machine has: cpu"),
        ("cuda", "device 'cuda' is not available here; this machine has: cpu"),
    ):
        code, _, err = run_cli(["predict", "--ckpt", ckpt, "--device", device, "x.mp4"], capsys)
        assert code == 2 and message in err and err.count("\n") == 1, err


def test_predict_with_an_uninstalled_decoder_is_one_line(tiny_run, monkeypatch, capsys):
    from a2video.data import video

    real = video.importlib.util.find_spec
    monkeypatch.setattr(
        video.importlib.util, "find_spec", lambda n, *a: None if n == "torchcodec" else real(n, *a)
    )
    args = ["predict", "--ckpt", tiny_run["ckpt"], "--decoder", "torchcodec", "x.mp4"]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and err.count("\n") == 1, err
    # predict's own option and only its choices (it said `use decoder='auto'` and offered nvdec)
    assert err.startswith(
        "a2video predict: error: --decoder torchcodec but torchcodec is not installed: "
        "pip install torchcodec, or use --decoder auto (choices: auto, decord, pyav, torchcodec)\n"
    ), err


def test_checkpoint_naming_an_unregistered_arch_is_one_line(tiny_run, tmp_path, capsys):
    ckpt = torch.load(tiny_run["ckpt"], map_location="cpu", weights_only=True)
    ckpt["a2video"]["arch"] = "a2net_huge"
    path = tmp_path / "renamed.ckpt"
    torch.save(ckpt, path)
    code, _, err = run_cli(["predict", "--ckpt", str(path), "x.mp4"], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "error: unknown arch 'a2net_huge'; choose from [" in err and "a2net_tiny" in err


def test_predict_labels_the_videos_of_a_folder_and_names_wrong_files(tiny_run, tmp_path, capsys):
    """``a2video predict DIR`` failed with "cannot decode … IsADirectoryError"; a folder now
    gives its video files (subfolders too, other files left out), one with none is one line.
    A scores.npz given as --ckpt was "truncated or corrupt: re-copy it"; --views and --topk
    errors lacked the 'error:' of every other one-line error."""
    import shutil

    import pandas as pd

    good = pd.read_csv(f"{tiny_run['run']}/predictions.csv")["video"][:2].tolist()
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(good[0], folder / "a clip.mp4")
    shutil.copy(good[1], folder / "sub" / "b.MP4")
    (folder / "readme.txt").write_text("notes")
    code, out, err = run_cli(["predict", "--ckpt", tiny_run["ckpt"], "--views", "1x1", str(folder)],
                             capsys)  # fmt: skip
    assert code == 0, err
    labelled = [line.split(": ")[0] for line in out.splitlines()]
    assert labelled == [str(folder / "a clip.mp4"), str(folder / "sub" / "b.MP4")], out
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["predict", "--ckpt", tiny_run["ckpt"], str(tmp_path / "empty")], capsys)
    assert code == 2 and "a folder with no video files in it" in err and err.count("\n") == 1
    scores = next(Path(tiny_run["run"]).rglob("scores.npz"))
    code, _, err = run_cli(["predict", "--ckpt", str(scores), good[0]], capsys)
    assert code == 2 and "not a PyTorch checkpoint (a NumPy .npz" in err, err
    for bad in (["--views", "10x2"], ["--topk", "0"]):
        code, _, err = run_cli(["predict", "--ckpt", tiny_run["ckpt"], *bad, good[0]], capsys)
        assert code == 2 and err.startswith("a2video predict: error: "), err


def test_predict_draws_a_progress_bar_on_a_terminal_only(tiny_run, capsys, monkeypatch):
    """``a2video predict`` of a folder at 10x3 ran for minutes with nothing on the screen: on a
    terminal it draws a bar over the files on stderr (not with --no-progress, nor into a pipe or
    a log, where stderr stays the unreadable files' lines)."""
    import io

    import pandas as pd

    good = pd.read_csv(f"{tiny_run['run']}/predictions.csv")["video"][:2].tolist()
    argv = ["predict", "--ckpt", tiny_run["ckpt"], "--views", "1x1", *good]

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for extra, drawn in (([], True), (["--no-progress"], False)):
        screen = Terminal()
        monkeypatch.setattr(sys, "stderr", screen)
        code, out, _ = run_cli([*argv, *extra], capsys)
        monkeypatch.undo()
        assert code == 0 and len(out.splitlines()) == 2, out
        assert ("predict: 100%" in screen.getvalue() and "2/2" in screen.getvalue()) == drawn
    code, _, err = run_cli(argv, capsys)  # stderr not a terminal
    assert code == 0 and err == "", err
