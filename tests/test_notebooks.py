"""Both notebooks run top to bottom, on a tiny checkpoint's run and at Kinetics scale (400
classes, 2,000 videos), and keep their figures, none larger than about 20 inches."""

from __future__ import annotations

from pathlib import Path

import nbclient  # noqa: F401  (a dev dependency: imported, never skipped)
import pytest

from a2video.explore.notebooks import NOTEBOOKS, execute_notebook, image_outputs, repo_root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, kinetics_root) -> dict[str, str]:
    from tiny_checkpoint import train_tiny_run

    return train_tiny_run(tmp_path_factory.getbasetemp(), kinetics_root)


@pytest.fixture(scope="session")
def kinetics_scale(tmp_path_factory, tiny_run) -> dict[str, str]:
    """A 400-class, 2,000-video test run (structured random scores; the videos' names cycle
    through the tiny dataset's files) and the tiny checkpoint widened to 400 classes."""
    from pathlib import Path

    from tiny_checkpoint import widen_checkpoint

    from a2video.explore.results import synthetic_run

    base = tmp_path_factory.mktemp("k400_notebooks")
    files = sorted(str(p) for p in Path(tiny_run["data"]).rglob("*.mp4"))[:8]
    synthetic_run(base / "run", num_classes=400, videos=2000, video_files=files)
    ckpt = widen_checkpoint(tiny_run["ckpt"], base / "wide.ckpt", 400)
    return {"ckpt": ckpt, "data": tiny_run["data"], "run": str(base / "run")}


MAX_INCHES = 20.0
INLINE_DPI = 72  # the notebooks draw at 72 dpi


def _run(name: str, paths: dict[str, str], tmp_path):
    env = {
        "A2VIDEO_CKPT": paths["ckpt"],
        "A2VIDEO_DATA": paths["data"],
        "A2VIDEO_RUN": paths["run"],
    }
    source = repo_root() / "notebooks" / name
    target = tmp_path / name
    nb = execute_notebook(source, target, env=env, timeout=300)
    assert target.is_file()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    for cell, size in _image_sizes(nb):  # every figure readable on a screen
        assert max(size) <= MAX_INCHES * INLINE_DPI, (cell, size)
    return nb


def _image_sizes(nb) -> list[tuple[int, tuple[int, int]]]:
    import base64
    import io

    from PIL import Image

    sizes = []
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            data = output.get("data", {}).get("image/png")
            if data:
                with Image.open(io.BytesIO(base64.b64decode(data))) as image:
                    sizes.append((i, image.size))
    return sizes


def _cell_images(nb, marker: str) -> int:
    """Image outputs of the code cell whose source contains ``marker``."""
    (index,) = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and marker in c.source]
    return sum(1 for i, _ in image_outputs(nb) if i == index)


def _text(nb) -> str:
    return "".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "")
        for c in nb.cells
        for o in c.get("outputs", [])
    )


def test_the_committed_notebooks_are_the_ones_the_runner_knows():
    for name in NOTEBOOKS:
        assert (repo_root() / "notebooks" / name).is_file()


def test_explore_predictions_notebook_reads_the_test_runs_scores(tiny_run, tmp_path):
    nb = _run("explore_predictions.ipynb", tiny_run, tmp_path)
    for marker in (
        "plot_per_class_accuracy",
        "plot_confused_pairs",
        "plot_confusion_matrix",
        "plot_view_summary",
        "class_browser",
    ):
        assert _cell_images(nb, marker) == 1, marker
    text = _text(nb)
    # training's test (3x3 views) wrote scores.npz; the notebook read it, no checkpoint needed
    assert "4 videos (0 unreadable), 4 classes, tested with 3x3 views" in text


def _relabelled_run(tiny_run, folder, **changes) -> dict[str, str]:
    """The tiny run's scores.npz copied into ``folder`` with some arrays changed (None: left
    out): the run of another kind of test."""
    import numpy as np

    from a2video.explore.results import find_scores

    with np.load(find_scores(tiny_run["run"])) as z:
        arrays = {k: z[k] for k in z.files}
    for key, value in changes.items():
        arrays.pop(key) if value is None else arrays.__setitem__(key, value(arrays[key]))
    folder.mkdir(parents=True)
    np.savez_compressed(folder / "scores.npz", **arrays)
    return {**tiny_run, "run": str(folder)}


def test_explore_predictions_notebook_on_an_unlabelled_test(tiny_run, tmp_path):
    """A test split without labels: the notebook failed in its views cell (and drew zeros)."""
    import numpy as np

    paths = _relabelled_run(tiny_run, tmp_path / "run", label=lambda a: np.full_like(a, -1))
    nb = _run("explore_predictions.ipynb", paths, tmp_path)
    text = _text(nb)
    assert "4 videos (0 unreadable), 4 classes, tested with 3x3 views" in text
    assert text.count("no labelled videos: nothing to score") >= 5
    assert "video top-1" not in text and not _image_sizes(nb)


def test_explore_predictions_notebook_on_a_run_without_view_subsets(tiny_run, tmp_path):
    """A predict's scores.npz (no per-view scores; an older one without its views): the views
    cell failed ('index must be a MultiIndex to unstack')."""
    import numpy as np

    per_view = ("view_topk_scores", "view_topk_classes", "subset_pred", "subsets", "views")
    changes = dict.fromkeys(per_view) | {"stage": lambda _: np.array("predict")}
    paths = _relabelled_run(tiny_run, tmp_path / "run", **changes)
    nb = _run("explore_predictions.ipynb", paths, tmp_path)
    text = _text(nb)
    assert "4 videos (0 unreadable), 4 classes, tested with views not recorded" in text
    assert "no view subsets in this run (predict): `train.py test` scores" in text
    assert _cell_images(nb, "plot_view_summary") == 1  # the centre clip against all views


def test_explore_predictions_notebook_at_kinetics_scale(kinetics_scale, tmp_path):
    nb = _run("explore_predictions.ipynb", kinetics_scale, tmp_path)
    for marker in (
        "plot_per_class_accuracy",
        "plot_confused_pairs",
        "plot_confusion_matrix",
        "plot_view_summary",
        "plot_mistake_gallery",
        "class_browser",
    ):
        assert _cell_images(nb, marker) == 1, marker
    text = _text(nb)
    assert "2000 videos (3 unreadable), 400 classes, tested with 10x3 views" in text
    assert "image/gif;base64" in "".join(
        o.get("data", {}).get("text/html", "") for c in nb.cells for o in c.get("outputs", [])
    )


def test_attention_maps_notebook_draws_b_and_v_for_every_block(tiny_run, tmp_path):
    nb = _run("attention_maps.ipynb", tiny_run, tmp_path)
    blocks = 2  # a2net_tiny: layer2.0.attn and layer3.0.attn
    assert _cell_images(nb, "plot_clip_topk") == 1
    assert _cell_images(nb, "plot_attention_maps") == 2 * blocks  # B and V per block
    assert _cell_images(nb, "plot_descriptor_usage") == blocks
    text = _text(nb)
    assert "layer2.0.attn: 32 descriptors" in text and "layer3.0.attn: 64 descriptors" in text


def test_attention_maps_notebook_at_400_classes(kinetics_scale, tmp_path):
    nb = _run("attention_maps.ipynb", kinetics_scale, tmp_path)
    assert _cell_images(nb, "plot_descriptor_usage") == 2
    assert "(4 classes with videos; the first 10)" in _text(nb)


# ---------------------------------------------------------------- the command line's checks


@pytest.fixture
def no_kernel(monkeypatch):
    """Replaces the kernel: records which notebooks would run, with which environment."""
    from types import SimpleNamespace

    from a2video.explore import notebooks

    ran: list[tuple[str, dict]] = []

    def execute(source, target=None, *, env=None, timeout=600, cwd=None):
        ran.append((str(source), dict(env or {})))
        return SimpleNamespace(cells=[])

    monkeypatch.setattr(notebooks, "execute_notebook", execute)
    monkeypatch.delenv("A2VIDEO_CKPT", raising=False)
    monkeypatch.delenv("A2VIDEO_RUN", raising=False)
    monkeypatch.delenv("A2VIDEO_VIDEO", raising=False)
    return ran


def test_notebooks_read_what_they_need_from_their_code():
    from a2video.explore.notebooks import needs

    assert needs(repo_root() / "notebooks" / "explore_predictions.ipynb") == {"run"}
    assert needs(repo_root() / "notebooks" / "attention_maps.ipynb") == {"ckpt", "blocks", "video"}


def test_explore_notebook_runs_without_a_checkpoint_and_names_its_scores(
    no_kernel, tmp_path, monkeypatch, capsys
):
    """It needs no checkpoint (the docs say so); the runner demanded the demo's anyway."""
    from a2video.explore import notebooks
    from a2video.explore.results import synthetic_run

    monkeypatch.setattr(notebooks, "DEMO_CHECKPOINTS", (str(tmp_path / "none" / "last.ckpt"),))
    scores = synthetic_run(tmp_path / "run", num_classes=4, videos=8, clips=2, crops=1)
    source = repo_root() / "notebooks" / "explore_predictions.ipynb"
    args = ["--out", str(tmp_path / "out"), "--run", str(tmp_path / "run"), str(source)]
    assert notebooks.main(args) == 0
    assert [path for path, _ in no_kernel] == [str(source)]
    out = capsys.readouterr().out
    assert f"explore_predictions.ipynb: reading {scores} (synthetic, 8 videos, 2x1 views)" in out
    # the attention notebook still needs one: one line naming it, no "(or use 'last')"
    attention = str(repo_root() / "notebooks" / "attention_maps.ipynb")
    with pytest.raises(SystemExit) as exit_:
        notebooks.main(["--out", str(tmp_path / "out"), attention])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.count("\n") == 0, err
    assert "no such checkpoint (attention_maps.ipynb loads one); pass --ckpt" in err
    assert "use 'last'" not in err and len(no_kernel) == 1


def test_a_missing_run_or_a_plain_state_dict_is_refused_before_the_kernel(
    no_kernel, tmp_path, capsys
):
    """Both failed inside the kernel with a 40-60 line traceback and exit status 1."""
    import torch

    from a2video.explore.notebooks import main

    explore = str(repo_root() / "notebooks" / "explore_predictions.ipynb")
    attention = str(repo_root() / "notebooks" / "attention_maps.ipynb")
    missing = tmp_path / "no_such_run"
    with pytest.raises(SystemExit) as exit_:
        main(["--out", str(tmp_path / "out"), "--run", str(missing), explore])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.count("\n") == 0, err
    assert f"{missing}: no such file or folder; pass a run folder" in err
    assert err.endswith("or its scores.npz with --run (A2VIDEO_RUN in Jupyter)"), err
    plain = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(2, 3).state_dict(), plain)
    with pytest.raises(SystemExit) as exit_:
        main(["--out", str(tmp_path / "out"), "--ckpt", str(plain), attention])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.count("\n") == 0, err
    assert f"{plain}: no 'a2video' metadata" in err
    assert no_kernel == [] and not (tmp_path / "out").exists()


def test_a_data_root_the_attention_notebook_cannot_read_is_refused_before_the_kernel(
    no_kernel, tiny_run, ucf_root, tmp_path, capsys
):
    """``--data`` with no such folder, or another layout's dataset, failed inside the kernel
    (a traceback, exit status 1) after the explore notebook had run, its fix naming train.py's
    ``--data.data_root``."""
    from a2video.explore.notebooks import main

    attention = str(repo_root() / "notebooks" / "attention_maps.ipynb")
    missing = tmp_path / "no_such_data"
    for data, what in ((missing, f"{missing}: no such folder"), (ucf_root, "annotations")):
        argv = ["--out", str(tmp_path / "out"), "--ckpt", tiny_run["ckpt"], "--data", str(data)]
        with pytest.raises(SystemExit) as exit_:
            main([*argv, attention])
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == 2 and err.count("\n") == 0, err
        assert what in err and "--data.data_root" not in err, err
        assert err.endswith(
            "pass --data DIR (A2VIDEO_DATA in Jupyter), the dataset last.ckpt was trained on "
            "(attention_maps.ipynb reads its test videos)"
        ), err
    assert no_kernel == [] and not (tmp_path / "out").exists()
    argv = ["--out", str(tmp_path / "out"), "--ckpt", tiny_run["ckpt"], "--data", tiny_run["data"]]
    assert main([*argv, attention]) == 0 and len(no_kernel) == 1


def test_the_kernel_reads_the_data_root_the_runner_checked(
    no_kernel, tiny_run, tmp_path, monkeypatch
):
    """A checkpoint recording a relative data root (``--data.data_root data``, a run without a
    saved config) passed the check from the folder the runner ran in, then the kernel, which
    moves to the repository root, found no such folder (a traceback, exit status 1)."""
    from tiny_checkpoint import relative_data_checkpoint

    from a2video.explore import notebooks

    project = tmp_path / "project"
    relative_data_checkpoint(tiny_run["ckpt"], project, saved_config=False)
    monkeypatch.chdir(project)
    attention = str(repo_root() / "notebooks" / "attention_maps.ipynb")
    argv = ["--out", str(tmp_path / "out"), "--ckpt", "runs/x/checkpoints/last.ckpt", attention]
    assert notebooks.main(argv) == 0
    env = no_kernel[-1][1]
    assert env["A2VIDEO_DATA"] == str(project / "data")
    monkeypatch.chdir(repo_root())  # where the kernel's first cell moves
    with notebooks._environ(env):
        _, data, _ = notebooks.notebook_paths()
    assert data == project / "data"
    # --data given: the kernel reads it (made absolute) instead
    monkeypatch.chdir(project)
    assert notebooks.main([*argv[:4], "--data", "data", attention]) == 0
    assert no_kernel[-1][1]["A2VIDEO_DATA"] == str((project / "data").resolve())


def test_a_checkpoint_without_a2_blocks_is_refused_before_the_attention_kernel(
    no_kernel, tiny_run, tmp_path, capsys
):
    """An i3d_tiny checkpoint ran the attention notebook to the end with its maps and
    descriptor figures left out, and nothing saying why (``a2video predict --attention``
    refuses it)."""
    import torch

    from a2video.explore.notebooks import main

    ckpt = torch.load(tiny_run["ckpt"], map_location="cpu", weights_only=True)
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if ".attn." not in k}
    ckpt["a2video"]["arch"] = ckpt["hyper_parameters"]["arch"] = "i3d_tiny"
    path = tmp_path / "i3d_tiny.ckpt"
    torch.save(ckpt, path)
    attention = str(repo_root() / "notebooks" / "attention_maps.ipynb")
    with pytest.raises(SystemExit) as exit_:
        main(["--out", str(tmp_path / "out"), "--ckpt", str(path), attention])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.count("\n") == 0, err
    assert err.endswith(
        f"{path}: i3d_tiny has no A2-block (attention_maps.ipynb draws their maps); pass --ckpt "
        "with the checkpoint of an A2-Net (a2net_*)"
    ), err
    assert no_kernel == [] and not (tmp_path / "out").exists()


def test_a_video_the_attention_notebook_cannot_draw_is_refused_before_the_kernel(
    no_kernel, tiny_run, tmp_path, monkeypatch, capsys
):
    """``A2VIDEO_VIDEO`` was not checked: a missing file, a text file named .mp4 or an mp4 cut
    before its index passed the runner's checks, then failed in the notebook's second cell (a
    traceback, exit status 1). A file whose centre clip decodes (only its tail cut) is drawn."""
    import os

    import numpy as np

    from a2video.data.synthetic import write_special
    from a2video.explore.notebooks import main

    rng = np.random.default_rng(0)
    attention = str(repo_root() / "notebooks" / "attention_maps.ipynb")
    argv = ["--out", str(tmp_path / "out"), "--ckpt", tiny_run["ckpt"], "--data", tiny_run["data"]]
    fix = (
        "(attention_maps.ipynb draws its centre clip); pass --video VIDEO (A2VIDEO_VIDEO in "
        "Jupyter) with a video file it can decode, or leave it out for the first test video"
    )
    missing = tmp_path / "no_such.mp4"
    text = write_special(tmp_path / "page.mp4", "text", rng)
    cut = write_special(tmp_path / "cut_index.mp4", "truncated-moov", rng)
    for video, reason in (
        (missing, "file not found"),
        (text, "not a readable video"),
        (cut, "not a readable video"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--video", str(video), attention])
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == 2 and err.count("\n") == 0, err
        assert f"error: {video}: {reason}" in err and err.endswith(fix), err
    # set in the environment as in Jupyter: relative to the repository root, where it moves
    monkeypatch.setenv("A2VIDEO_VIDEO", os.path.relpath(text, repo_root()))
    with pytest.raises(SystemExit) as exit_:
        main([*argv, attention])
    assert exit_.value.code == 2 and "page.mp4: not a readable video" in capsys.readouterr().err
    assert no_kernel == [] and not (tmp_path / "out").exists()
    monkeypatch.delenv("A2VIDEO_VIDEO")
    tail = write_special(tmp_path / "cut_tail.mp4", "truncated", rng)  # its centre decodes
    for video in (sorted(Path(tiny_run["data"]).rglob("*.mp4"))[0], tail):
        assert main([*argv, "--video", str(video), attention]) == 0
        assert no_kernel[-1][1]["A2VIDEO_VIDEO"] == str(Path(video).resolve())
    assert main([*argv, attention]) == 0 and "A2VIDEO_VIDEO" not in no_kernel[-1][1]


def test_out_naming_a_file_is_one_line_before_the_kernel(no_kernel, tmp_path, capsys):
    """The inputs were checked and reported, then making the folder failed: a FileExistsError
    traceback."""
    from a2video.explore.notebooks import main
    from a2video.explore.results import synthetic_run

    synthetic_run(tmp_path / "run", num_classes=4, videos=8, clips=2, crops=1)
    out = tmp_path / "executed"
    out.write_text("mine")
    explore = str(repo_root() / "notebooks" / "explore_predictions.ipynb")
    with pytest.raises(SystemExit) as exit_:
        main(["--out", str(out), "--run", str(tmp_path / "run"), explore])
    captured = capsys.readouterr()
    assert exit_.value.code == 2 and captured.err.count("\n") == 1, captured.err
    assert f"{out}: a file, not a folder; --out takes the folder" in captured.err
    assert out.read_text() == "mine" and no_kernel == [] and captured.out == ""


def test_a_checkpoints_run_folder_is_above_checkpoints_else_its_own():
    """A checkpoint outside a ``checkpoints/`` folder made the folder above it the "run": for
    /tmp/x/model.ckpt, every scores.npz anywhere under /tmp was a candidate."""
    from pathlib import Path

    from a2video.explore.notebooks import run_of

    assert run_of(Path("runs/x/checkpoints/last.ckpt")) == Path("runs/x")
    assert run_of(Path("/tmp/x/model.ckpt")) == Path("/tmp/x")


def test_the_explore_notebooks_run_is_not_chosen_by_the_attention_notebooks_checkpoint(
    no_kernel, tmp_path, monkeypatch, capsys
):
    """``--ckpt`` is the attention notebook's input only (docs/explore.md): the explore notebook
    read the scores of the checkpoint's run instead of the demo's, and refused a checkpoint whose
    run had none."""
    from a2video.explore import notebooks
    from a2video.explore.results import synthetic_run

    demo = synthetic_run(tmp_path / "demo", num_classes=4, videos=8, clips=2, crops=1)
    monkeypatch.setattr(notebooks, "DEMO_RUNS", (str(tmp_path / "demo"),))
    other = synthetic_run(tmp_path / "other", num_classes=5, videos=6, clips=1, crops=1)
    untested = tmp_path / "untested" / "checkpoints"
    untested.mkdir(parents=True)
    explore = str(repo_root() / "notebooks" / "explore_predictions.ipynb")
    for ckpt in (tmp_path / "other" / "checkpoints" / "last.ckpt", untested / "last.ckpt"):
        code = notebooks.main(["--out", str(tmp_path / "out"), "--ckpt", str(ckpt), explore])
        out = capsys.readouterr().out
        assert code == 0 and f"reading {demo} (synthetic, 8 videos, 2x1 views)" in out, out
        with notebooks._environ(no_kernel[-1][1]):  # what the kernel's first cell reads
            assert notebooks.notebook_scores() == demo
    # --run chooses it; no run and no demo's: one line naming --run
    assert notebooks.main(["--out", str(tmp_path / "out"), "--run", str(other), explore]) == 0
    assert f"reading {other} (synthetic" in capsys.readouterr().out
    monkeypatch.setattr(notebooks, "DEMO_RUNS", (str(tmp_path / "no_demo"),))
    with pytest.raises(SystemExit) as exit_:
        notebooks.main(["--out", str(tmp_path / "out"), "--ckpt", str(untested), explore])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.count("\n") == 0, err
    assert err.endswith(
        f"error: no --run given and the demo's runs ({tmp_path / 'no_demo'}) hold no scores.npz; "
        "test a checkpoint (`python train.py test --config CONFIG --ckpt_path CKPT`) and pass its "
        "run folder or scores.npz with --run (A2VIDEO_RUN in Jupyter), or run `make demo`"
    ), err
