"""A finished test run read back from its scores.npz: what the test stage keeps per view is exact
(under DDP too), and every figure of the notebooks renders at Kinetics scale (400 classes)."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from ports import free_port
from view_ranks import (
    CLIPS,
    CROPS,
    N_CLASSES,
    N_VIDEOS,
    _evaluate,
    _view_probs,
    _worker,
)

from a2video.explore import predict, viz
from a2video.explore.results import (
    gallery_items,
    load_run,
    save_results,
    synthetic_class_names,
    synthetic_run,
)
from a2video.training.metrics import view_subsets

MAX_INCHES = 20.0


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_per_view_topk_and_view_subsets_are_exact():
    res = _evaluate(list(range(N_VIDEOS)))
    full = torch.stack([_view_probs(i) for i in range(N_VIDEOS)])  # (N, V, C)
    assert res.views == (CLIPS, CROPS)
    top = full.topk(5, dim=2)
    assert torch.equal(res.view_topk_classes, top.indices)
    assert torch.equal(res.view_topk_scores, top.values)
    # The subset top-1 kept per video gives predict.accuracy_by_views on the full scores.
    labels = torch.arange(N_VIDEOS) % N_CLASSES
    expected = predict.accuracy_by_views(full, labels, CLIPS, CROPS, clips=(1, 2, 3))
    for column, (clips, crops) in enumerate(view_subsets(CLIPS, CROPS)):
        if clips:
            got = float((res.subset_pred[:, column] == labels).float().mean())
            assert got == pytest.approx(expected[(clips, crops)])


@pytest.mark.timeout(120)
def test_per_view_rows_are_exact_over_two_padded_ranks(tmp_path):
    out = str(tmp_path / "res.pt")
    mp.spawn(_worker, args=(2, free_port(), out), nprocs=2, join=True)
    ranks = torch.load(out, weights_only=False)
    single = _evaluate(list(range(N_VIDEOS))).__dict__
    for key in ("index", "label", "valid", "view_topk_classes", "subset_pred"):
        assert torch.equal(ranks[key], single[key]), key
    assert torch.equal(ranks["view_topk_scores"], single["view_topk_scores"])
    assert ranks["views"] == single["views"]


def test_scores_npz_round_trip_is_compact_and_keeps_the_predictions(tmp_path):
    res = _evaluate(list(range(N_VIDEOS)))
    names = [f"c{i}" for i in range(N_CLASSES)]
    path = save_results(tmp_path / "scores.npz", res, names, [f"v{i}.mp4" for i in range(20)])
    run = load_run(tmp_path)
    assert run.source == path and len(run) == N_VIDEOS
    assert run.video_names[3] == "v3.mp4" and run.class_names == names
    assert torch.equal(run.preds(), res.probs.argmax(1))  # float16 keeps the ranking here
    assert run.valid.tolist() == [i != 4 for i in range(N_VIDEOS)]
    with np.load(path, allow_pickle=False) as z:  # plain arrays, no pickle
        assert z["probs"].dtype == np.float16 and z["view_topk_classes"].dtype == np.int16
    assert run.accuracy_by_views()[(CLIPS, CROPS)] == pytest.approx(run.accuracy())


def test_load_run_without_scores_says_how_to_make_them(tmp_path):
    # train.py's option is --ckpt_path: the hint said `--ckpt ...`, which train.py refuses
    fix = "`python train.py test --config CONFIG --ckpt_path CKPT` writes one in its run folder"
    with pytest.raises(FileNotFoundError, match=rf"no scores.npz; {re.escape(fix)}"):
        load_run(tmp_path)
    bad = tmp_path / "scores.npz"
    bad.write_text("not an archive")
    with pytest.raises(ValueError, match=r"scores.npz: not a scores.npz written by a2video"):
        load_run(bad)


def test_a_predictions_csv_or_a_checkpoint_given_as_scores_says_what_it_is(tmp_path):
    """The two files users pass instead of scores.npz were "not a scores.npz … (This file
    contains pickled (object) data …); re-run the test" and "… ('format_version'); re-run the
    test": now each is named for what it is, with the fix."""
    csv = tmp_path / "predictions.csv"
    csv.write_text("index,video,label\n")
    with pytest.raises(ValueError, match=r"a CSV \(a predictions.csv\?\), not a test's scores"):
        load_run(csv)
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, ckpt)
    with pytest.raises(ValueError, match="a checkpoint, not a test's scores: test it first") as err:
        load_run(ckpt)
    assert f"--ckpt_path {ckpt}" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------- 400 classes, 2,000 videos


@pytest.fixture(scope="module")
def kinetics_scale(tmp_path_factory, kinetics_root):
    from pathlib import Path

    files = sorted(str(p) for p in Path(kinetics_root).rglob("*.mp4"))[:6]
    folder = tmp_path_factory.mktemp("k400")
    synthetic_run(folder, num_classes=400, videos=2000, video_files=files)
    return load_run(folder)


def _inches(fig) -> float:
    return float(max(fig.get_size_inches()))


def test_a_kinetics_scale_run_has_realistic_structure(kinetics_scale):
    run = kinetics_scale
    assert len(run) == 2000 and run.num_classes == 400 and run.views == (10, 3)
    assert run.class_names == synthetic_class_names(400)
    clip, video = run.accuracy(clip=True), run.accuracy()
    assert 0.3 < clip < video < 0.95  # averaging views helps
    by_views = run.accuracy_by_views()
    assert by_views[(1, 1)] < by_views[(10, 3)] == pytest.approx(video)


def test_every_figure_stays_readable_at_400_classes(kinetics_scale):
    run = kinetics_scale
    cm, names = run.confusion(), run.class_names
    figures = {
        "per class": viz.plot_per_class_accuracy(run.per_class_accuracy(), names, overall=0.5),
        "confusion": viz.plot_confusion_matrix(cm, names).figure,
        "pairs": viz.plot_confused_pairs(cm, names),
        "views": viz.plot_view_summary(run.accuracy_by_views(), run.clip_vs_video()),
        "gallery": viz.plot_mistake_gallery(
            gallery_items(run, run.mistakes(6)), names, num_frames=5
        ),
        "class": viz.class_report(run, names[3]),
    }
    for what, fig in figures.items():
        fig.canvas.draw()
        assert _inches(fig) <= MAX_INCHES, what
    # Per-class accuracy: 15 worst + 15 best bars with their names, and all 400 in a histogram.
    worst, best, hist = figures["per class"].axes
    assert len(worst.patches) == len(best.patches) == 15
    assert sum(p.get_height() for p in hist.patches) == 400
    acc = run.per_class_accuracy().numpy()
    assert worst.get_yticklabels()[0].get_text() == names[int(np.nanargmin(acc))][:28]
    # The confusion matrix keeps only classes whose names it can print.
    image = figures["confusion"].axes[0].images[0].get_array()
    assert image.shape[0] <= 30
    assert all(t.get_text() for t in figures["confusion"].axes[0].get_yticklabels())


def test_the_gallery_shows_only_wrong_top1_with_large_frames(kinetics_scale):
    run = kinetics_scale
    rows = run.mistakes(6)
    assert rows and all(run.preds()[r] != run.labels[r] for r in rows)
    confidence = run.probs[rows].max(1).values
    assert torch.all(confidence[:-1] >= confidence[1:])  # the most confident mistakes first
    fig = viz.plot_mistake_gallery(gallery_items(run, rows), run.class_names, num_frames=5)
    fig.canvas.draw()
    frame_axes = [ax for ax in fig.axes if ax.images]
    assert len(frame_axes) == 6 * 5
    dpi = 72  # the inline backend's lowest; frames stay >= 112 px even there
    widths = [ax.get_window_extent().width / fig.dpi * dpi for ax in frame_axes]
    assert min(widths) >= 112
    # No text overlaps another: each row's title sits above its frames, names inside the bars.
    renderer = fig.canvas.get_renderer()
    titles = [s._suptitle.get_window_extent(renderer) for s in fig.subfigs]
    row_axes = [fig.axes[i * 6 : i * 6 + 5] for i in range(6)]  # 5 frames (+ bars) per row
    frames_top = [max(ax.get_window_extent().y1 for ax in axes) for axes in row_axes]
    assert all(t.y0 >= top - 1 for t, top in zip(titles, frames_top, strict=True))


def test_class_report_names_the_class_and_its_confusions(kinetics_scale):
    run = kinetics_scale
    c = int(run.labels[run.mistakes(1)[0]])
    fig = viz.class_report(run, run.class_names[c], videos=2, num_frames=4)
    text = fig.subfigs[0]._suptitle.get_text()
    assert text.startswith(f"{run.class_names[c]}: accuracy")
    with pytest.raises(KeyError, match="did you mean"):
        run.class_index(run.class_names[c] + "x")


def test_report_writes_every_figure_of_a_run_as_png(kinetics_scale, tmp_path, capsys):
    from PIL import Image

    from a2video.explore.report import main

    assert main([str(kinetics_scale.source), "--out", str(tmp_path), "--mistakes", "2"]) == 0
    files = sorted(p.name for p in tmp_path.glob("*.png"))
    worst = kinetics_scale.class_names[int(np.nanargmin(kinetics_scale.per_class_accuracy()))]
    expected = ["confused_pairs.png", "mistakes.png", "per_class.png", "views.png"]
    assert files == sorted([*expected, f"class_{worst.replace(' ', '_')}.png"])
    for name in files:
        with Image.open(tmp_path / name) as png:
            assert max(png.size) <= MAX_INCHES * 72, name
    assert main([str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2
    assert f"{tmp_path / 'nothing'}: no such file or folder;" in capsys.readouterr().err


def test_report_names_a_missing_folder_and_the_run_folder_above_checkpoints(tmp_path, capsys):
    """A folder that does not exist was "no scores.npz"; RUN/checkpoints (where the checkpoint
    is) got a hint with `--ckpt`, an option train.py does not have."""
    from a2video.explore.report import main

    synthetic_run(tmp_path / "run", num_classes=4, videos=8, clips=2, crops=1)
    (tmp_path / "run" / "checkpoints").mkdir()
    (tmp_path / "untested" / "checkpoints").mkdir(parents=True)
    cases = {
        tmp_path / "no_such_run": "no such file or folder; pass a run folder",
        tmp_path / "run" / "checkpoints": f"no scores.npz; the run folder above it holds one: "
        f"pass {tmp_path / 'run'}",
        tmp_path / "untested" / "checkpoints": "no scores.npz; `python train.py test --config "
        "CONFIG --ckpt_path CKPT` writes one",
    }
    for run, message in cases.items():
        assert main([str(run), "--out", str(tmp_path / "figs")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"error: {run}: {message}" in err, err
        assert "--ckpt ..." not in err
    assert not (tmp_path / "figs").exists()


# ---------------------------------------------------------------- which scores.npz, and refusals


def _write_scores(
    path,
    *,
    views: bool = True,
    stage: str | None = None,
    age: float = 0.0,
    names: list[str] | None = None,
):
    """A small scores.npz: a test's (with per-view scores) or a predict's (without), ``age``
    seconds old, of classes ``names`` (default c0, c1, ...)."""
    import dataclasses
    import os
    import time

    res = _evaluate(list(range(N_VIDEOS)))
    if not views:
        res = dataclasses.replace(
            res, view_topk_scores=None, view_topk_classes=None, subset_pred=None, views=None
        )
    names = names or [f"c{i}" for i in range(N_CLASSES)]
    recorded = {"stage": stage} if stage else {}
    save_results(path, res, names, [f"v{i}.mp4" for i in range(N_VIDEOS)], **recorded)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_a_run_folder_reads_the_newest_test_output_not_a_later_predicts(tmp_path, capsys):
    """`train.py test` then `train.py predict` leave two scores.npz in the run; the newer is the
    predict's (no per-view scores): the test's is read, and the report names it."""
    from a2video.explore.report import main
    from a2video.explore.results import find_scores

    old_test = _write_scores(tmp_path / "version_0" / "scores.npz", age=300)
    test = _write_scores(tmp_path / "version_1" / "scores.npz", age=200)
    predict = _write_scores(tmp_path / "version_2" / "scores.npz", views=False, age=100)
    assert find_scores(tmp_path) == test
    from a2video.explore.results import describe_scores, scores_stage

    assert (scores_stage(old_test), scores_stage(test), scores_stage(predict)) == (
        "test",
        "test",
        "predict",
    )
    run = load_run(tmp_path)
    assert run.source == test and run.stage == "test" and run.views == (CLIPS, CROPS)
    assert f"reading {test} (test, {N_VIDEOS} videos, 4x3 views)" in describe_scores(run, tmp_path)
    assert main([str(tmp_path), "--out", str(tmp_path / "figs"), "--class", "nope"]) == 2
    err = capsys.readouterr().err
    assert f"reading {test} (test" in err  # which file, before anything else
    # A recorded stage decides; with no test output at all, the newest predict's is read.
    (tmp_path / "version_0" / "scores.npz").unlink()
    test.unlink()
    recorded = _write_scores(tmp_path / "version_3" / "scores.npz", stage="predict")
    assert scores_stage(recorded) == "predict" and find_scores(tmp_path) == recorded
    run = load_run(tmp_path)
    assert "a predict's scores" in describe_scores(run, tmp_path)
    with pytest.raises(ValueError, match="stage must be one of"):
        save_results(tmp_path / "x.npz", _evaluate([0, 1]), stage="train")


def test_synthetic_400_never_writes_into_a_real_runs_folder(tmp_path, capsys):
    """--synthetic-400 on a run folder wrote a made-up scores.npz that every later report read
    instead of the real one; on a scores.npz path it died in a FileExistsError traceback."""
    from a2video.explore.report import main

    real = _write_scores(tmp_path / "run" / "lightning_logs" / "version_0" / "scores.npz")
    before = real.read_bytes()
    out = tmp_path / "figs"
    assert main([str(tmp_path / "run"), "--synthetic-400", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds a run's results" in err and "give a new folder" in err
    assert sorted((tmp_path / "run").rglob("scores.npz")) == [real]
    assert real.read_bytes() == before and not out.exists()
    assert main([str(real), "--synthetic-400", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{real}: a file, not a folder" in err
    ckpt_run = tmp_path / "trained"
    (ckpt_run / "checkpoints").mkdir(parents=True)
    (ckpt_run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(ValueError, match="holds a run's results"):
        synthetic_run(ckpt_run, num_classes=4, videos=8)
    # A new folder, and again over its own made-up run (same seed: the same file).
    from a2video.explore.results import refuse_results_folder

    made = synthetic_run(tmp_path / "made_up", num_classes=4, videos=8, clips=2, crops=1)
    refuse_results_folder(tmp_path / "made_up")
    assert synthetic_run(tmp_path / "made_up", num_classes=4, videos=8, clips=2, crops=1) == made
    assert load_run(tmp_path / "made_up").stage == "synthetic"


def test_report_refuses_a_bad_class_out_file_or_negative_mistakes_in_one_line(tmp_path, capsys):
    from a2video.explore.report import main

    run = _write_scores(tmp_path / "run" / "scores.npz")
    out = tmp_path / "figs"
    assert main([str(run), "--out", str(out), "--class", "c9x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (  # no quotes around it
        f"python -m a2video.explore.report: error: {run}: no class 'c9x': not a class name, "
        "nor an index in 0..6; its classes begin 'c0', 'c1', 'c2'"
    )
    assert not out.exists()  # nothing left behind
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    assert main([str(run), "--out", str(afile)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{afile}: a file, not a folder" in err
    assert afile.read_text() == "mine\n"
    for bad, says in (("-1", "must be 0 or more, got -1"), ("two", "a whole number 0 or more")):
        with pytest.raises(SystemExit) as exit_:  # -1 dropped the last mistake silently
            main([str(run), "--out", str(out), "--mistakes", bad])
        assert exit_.value.code == 2 and f"--mistakes: {says}" in capsys.readouterr().err
    assert not out.exists()


def test_report_class_is_a_name_else_an_index(tmp_path, capsys):
    """``--class 3`` was read as a name only ("no class '3'"), though predictions.csv names a
    class by index (``label``) as well as by name (``label_name``)."""
    from a2video.explore.report import main

    run = _write_scores(tmp_path / "run" / "scores.npz")  # classes c0..c6
    out = tmp_path / "figs"
    assert main([str(run), "--out", str(out), "--class", "3", "--mistakes", "0"]) == 0
    assert (out / "class_c3.png").is_file() and not list(out.glob("class_3*"))
    # a name all digits is that class; digits naming no class are an index
    names = ["7", "3", "c2", "c3", "c4", "c5", "c6"]
    digits = load_run(_write_scores(tmp_path / "digits" / "scores.npz", names=names))
    assert [digits.class_index(c) for c in ("3", "7", "4", "c4", 4)] == [1, 0, 4, 4, 4]
    for unknown, hint in (("9", "its classes begin '7', '3', 'c2'"), ("c44", "did you mean 'c4'?")):
        with pytest.raises(KeyError) as err:
            digits.class_index(unknown)
        assert err.value.args[0] == (
            f"no class '{unknown}': not a class name, nor an index in 0..6; {hint}"
        )
    capsys.readouterr()


def test_report_refuses_videos_without_synthetic_400_in_one_line(tmp_path, capsys):
    """``--videos`` without ``--synthetic-400`` was ignored without a word: the figures showed
    the run's own videos, not the files given."""
    from a2video.explore.report import main

    run = _write_scores(tmp_path / "run" / "scores.npz")
    out = tmp_path / "figs"
    assert main([str(run), "--out", str(out), "--videos", str(tmp_path / "a.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.endswith(
        "--videos: only with --synthetic-400 (the files a made-up run's videos "
        "cycle over); a run's figures show the videos its test read: drop --videos"
    )
    assert not out.exists()


def test_an_empty_scores_file_is_one_line_and_a_killed_write_leaves_none(tmp_path, capsys):
    """A 0-byte scores.npz (a test killed while numpy wrote it) ended in an EOFError traceback;
    save_results now writes through a temp file, so a killed write leaves no such file."""
    from a2video.explore.report import main

    empty = tmp_path / "run" / "lightning_logs" / "version_0" / "scores.npz"
    empty.parent.mkdir(parents=True)
    empty.write_bytes(b"")
    assert main([str(tmp_path / "run"), "--out", str(tmp_path / "figs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{empty}: not a scores.npz" in err

    import numpy as np

    target = tmp_path / "again" / "scores.npz"

    def killed(f, **arrays):
        f.write(b"PK\x03\x04partial")
        raise KeyboardInterrupt

    real = _write_scores(tmp_path / "good" / "scores.npz")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(np, "savez_compressed", killed)
        with pytest.raises(KeyboardInterrupt):
            _write_scores(target)
    assert not target.exists() and list(target.parent.iterdir()) == []
    assert real.is_file()


def test_the_report_of_an_unlabelled_run_says_there_is_nothing_to_score(tmp_path, capsys):
    """A test of an unlabelled split drew every figure as accuracies of 0 ('all videos: 0.000')
    and exited 0."""
    import dataclasses

    from a2video.explore.report import main

    res = _evaluate(list(range(N_VIDEOS)))
    res = dataclasses.replace(res, label=torch.full_like(res.label, -1))
    scores = save_results(tmp_path / "run" / "scores.npz", res, stage="test")
    out = tmp_path / "figs"
    assert main([str(tmp_path / "run"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert err[0].endswith(f"reading {scores} (test, {N_VIDEOS} videos, 4x3 views)")
    assert err[1] == (
        f"python -m a2video.explore.report: error: {scores}: no labelled videos ({N_VIDEOS} "
        "videos, 1 unreadable): nothing to score, no figure drawn; each video's top-5 is in "
        "predictions.csv beside it"
    )
    assert not out.exists()


def test_an_older_runs_relative_video_paths_are_found_from_the_folders_above_it(
    kinetics_root, tmp_path, monkeypatch
):
    """Runs recorded video paths relative to the folder their test ran in; read from elsewhere,
    every gallery row said 'no frames: ...: file not found', with nothing saying why."""
    import shutil
    import warnings

    videos = tmp_path / "work" / "data"
    shutil.copytree(Path(kinetics_root) / "test", videos)
    names = [f"data/{p.name}" for p in sorted(videos.iterdir())[:2]]
    names.append("data/gone.mp4")
    res = _evaluate([0, 1, 2])
    # the test ran in tmp_path/work with --trainer.default_root_dir runs/x
    scores = save_results(tmp_path / "work" / "runs" / "x" / "version_0" / "scores.npz", res,
                          video_names=names, stage="test")  # fmt: skip
    monkeypatch.chdir(tmp_path)  # somewhere else
    run = load_run(scores)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = gallery_items(run, [0, 1, 2, 2], num_frames=2)
    assert [("missing" in i) for i in items] == [False, False, True, True]
    assert items[0]["frames"].shape[0] == 2
    said = [str(w.message) for w in caught if "no frames" in str(w.message)]
    assert len(said) == 1, said  # once per run, saying why
    assert "data/gone.mp4" in said[0] and "relative to the folder its test ran in" in said[0]
    assert run.video_file(0) == str(tmp_path / "work" / "data" / Path(names[0]).name)


def test_report_says_why_a_run_without_mistakes_has_no_gallery(tmp_path, capsys):
    """A run whose every top-1 is right (the demo's fine-tune on some CPUs) silently wrote no
    mistakes.png, which the docs list among the report's figures."""
    from a2video.explore.report import main

    scores = synthetic_run(tmp_path / "run", num_classes=4, videos=8, clips=2, crops=1)
    arrays = dict(np.load(scores))
    labels = arrays["label"].astype(np.int64)
    arrays["probs"] = np.eye(4, dtype=arrays["probs"].dtype)[labels]  # every top-1 right
    np.savez_compressed(scores, **arrays)
    assert main([str(scores), "--out", str(tmp_path / "figs")]) == 0
    assert not (tmp_path / "figs" / "mistakes.png").exists()
    err = capsys.readouterr().err
    assert "no mistakes.png: every scored video's top-1 is right" in err, err
    assert main([str(scores), "--out", str(tmp_path / "figs"), "--mistakes", "0"]) == 0
    assert "no mistakes.png" not in capsys.readouterr().err  # none asked for: nothing to say


def test_a_report_without_a_gallery_leaves_no_earlier_reports_gallery_in_its_folder(
    tmp_path, capsys
):
    """Reporting a run with mistakes, then one without (or ``--mistakes 0``), into the same
    ``--out`` left the first run's mistakes.png there, beside figures of the second, while
    stderr said the second has no mistakes.png."""
    from a2video.explore.report import main

    figs = tmp_path / "figs"
    wrong = synthetic_run(tmp_path / "wrong", num_classes=4, videos=8, clips=2, crops=1)
    right = synthetic_run(tmp_path / "right", num_classes=4, videos=8, clips=2, crops=1)
    arrays = dict(np.load(right))
    labels = arrays["label"].astype(np.int64)
    arrays["probs"] = np.eye(4, dtype=arrays["probs"].dtype)[labels]  # every top-1 right
    np.savez_compressed(right, **arrays)
    for run, argv in ((right, []), (wrong, ["--mistakes", "0"])):
        assert main([str(wrong), "--out", str(figs)]) == 0
        assert (figs / "mistakes.png").is_file()
        assert main([str(run), "--out", str(figs), *argv]) == 0
        assert not (figs / "mistakes.png").exists()
        assert (figs / "per_class.png").is_file()
    capsys.readouterr()
