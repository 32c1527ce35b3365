"""Every entry point (``train.py``, ``finetune_ucf.py``, ``a2video predict/export/check-data``,
the notebooks' runner) ends a user error with one message and exit code 2, no traceback:

- a crafted pickle (its payload would create a file) is refused in one line naming the file, why,
  and the exact flag that entry point accepts, and the file never appears; with that flag the
  payload does run (so the flag reaches the loader);
- a wrong data root and a wrong checkpoint path name the path;
- ``A2VIDEO_DEBUG=1`` shows the traceback instead.

The entry points run in-process through their own ``main`` (``train.py``'s reads ``sys.argv``);
one test runs ``python train.py`` as a subprocess to check the whole path, stderr included.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch  # noqa: F401  (its log handler binds stderr now, not a test's capture)
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "configs" / "demo_kinetics.yaml")
DEMO_UCF = str(ROOT / "configs" / "demo_ucf101.yaml")
QUIET = [
    "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
    "--trainer.max_steps", "1", "--data.num_workers", "0",
]  # fmt: skip
LIGHTNING_FLAG, A2VIDEO_FLAG = "--unsafe_load true", "--unsafe-load"


class _Payload:
    """Unpickling it creates ``path`` (stands for any code a crafted checkpoint could run)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def evil(tmp_path) -> tuple[Path, Path]:
    """(a crafted checkpoint, the file its payload would create)."""
    marker = tmp_path / "PAYLOAD_RAN"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.6", "x": _Payload(marker)}, path)
    return path, marker


def _train_main() -> Callable[[list[str]], object]:
    spec = importlib.util.spec_from_file_location("a2video_train_entry", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def run(argv: list[str]) -> object:
        saved = sys.argv
        sys.argv = ["train.py", *argv]
        try:
            return module.main()
        finally:
            sys.argv = saved

    return run


def _finetune_main(argv: list[str]) -> object:
    from a2video.training.finetune import main

    return main(argv)


def _a2video_main(argv: list[str]) -> object:
    from a2video.cli import main

    raise SystemExit(main(argv))  # as the console script does


def _notebooks_main(argv: list[str]) -> object:
    from a2video.explore.notebooks import main

    return main(argv)


def _user_error(capsys, run: Callable[[list[str]], object], argv: list[str]) -> str:
    """Run an entry point; it must exit with 2 and print one ``error:`` line, no traceback."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    progs = ("train.py: error: ", "finetune_ucf.py: error: ", "a2video ", "python -m a2video")
    lines = [line for line in err.splitlines() if line.startswith(progs)]
    assert len(lines) == 1, err
    return lines[0]


def _cases(kinetics_root: str, ucf_root: str, tmp_path: Path, ckpt: str) -> dict:
    """entry point -> (main, argv reading ``ckpt``, the trust flag it accepts)."""
    run_dir = ["--trainer.default_root_dir", str(tmp_path / "run")]
    # --config first: a later option wins, and the demo configs name their own run folders
    train = ["--config", DEMO, *QUIET, *run_dir, "--data.data_root", kinetics_root]
    ucf = ["--config", DEMO_UCF, *QUIET, *run_dir, "--data.data_root", ucf_root]
    video = str(next(Path(kinetics_root).rglob("*.mp4")))
    cases = {
        f"train.py {stage}": (_train_main(), [stage, *train, "--ckpt_path", ckpt], LIGHTNING_FLAG)
        for stage in ("fit", "validate", "test", "predict")
    }
    cases["train.py fit --model.pretrained_2d"] = (
        _train_main(), ["fit", *train, "--model.pretrained_2d", ckpt], LIGHTNING_FLAG,
    )  # fmt: skip
    cases["finetune_ucf.py fit --ckpt"] = (_finetune_main, ["fit", *ucf, "--ckpt", ckpt], None)
    cases["finetune_ucf.py test --ckpt_path"] = (
        _finetune_main, ["test", *ucf, "--ckpt_path", ckpt], None,
    )  # fmt: skip
    cases["a2video predict"] = (_a2video_main, ["predict", "--ckpt", ckpt, video], A2VIDEO_FLAG)
    cases["a2video export"] = (
        _a2video_main, ["export", "--ckpt", ckpt, "--format", "torchscript"], A2VIDEO_FLAG,
    )  # fmt: skip
    cases["notebooks"] = (
        _notebooks_main, ["--ckpt", ckpt, "--out", str(tmp_path / "nb")], A2VIDEO_FLAG,
    )  # fmt: skip
    return {k: (run, argv, flag or LIGHTNING_FLAG) for k, (run, argv, flag) in cases.items()}


ENTRY_POINTS = [
    *(f"train.py {s}" for s in ("fit", "validate", "test", "predict")),
    "train.py fit --model.pretrained_2d",
    "finetune_ucf.py fit --ckpt",
    "finetune_ucf.py test --ckpt_path",
    "a2video predict",
    "a2video export",
    "notebooks",
]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_crafted_pickle_refused_in_one_line(entry, evil, kinetics_root, ucf_root, tmp_path, capsys):
    path, marker = evil
    run, argv, flag = _cases(kinetics_root, ucf_root, tmp_path, str(path))[entry]
    line = _user_error(capsys, run, argv)
    assert str(path) in line and "refused" in line and "pickled" in line, line
    assert line.endswith(f"pass {flag}."), line
    assert not marker.exists()  # the payload never ran


def test_a_pickle_in_arch_options_is_refused_naming_what_does_load_it(
    evil, kinetics_root, ucf_root, tmp_path, capsys
):
    """Weights in ``--model.arch_options`` load while the model is built, before
    ``--unsafe_load`` is read: the refusal named ``--unsafe_load true``, which changed nothing.
    It names what does load the file."""
    path, marker = evil
    run, argv, _ = _cases(kinetics_root, ucf_root, tmp_path, str(path))["train.py fit"]
    argv = [a for a in argv if a != "--ckpt_path" and a != str(path)]
    argv += ["--model.arch_options", f"{{pretrained_2d: {path}}}"]
    for extra in ([], ["--unsafe_load", "true"]):
        line = _user_error(capsys, run, argv + extra)
        assert str(path) in line and "refused" in line, line
        assert "pass it as --model.pretrained_2d FILE with --unsafe_load true" in line, line
        assert "torch.save(state_dict, NEW_FILE)" in line, line
    assert not marker.exists()


@pytest.mark.parametrize(
    "entry",
    # --model.pretrained_2d: the file was refused again with --unsafe_load true, the flag the
    # refusal names (its loader never got the flag)
    ["train.py test", "train.py fit --model.pretrained_2d", "finetune_ucf.py fit --ckpt",
     "a2video predict"],
)  # fmt: skip
def test_the_named_flag_is_accepted(entry, evil, kinetics_root, ucf_root, tmp_path, capsys):
    """With the flag the refusal names, the file is loaded (its payload runs: the flag reaches the
    loader), and what follows still ends in one line (it is not a usable checkpoint)."""
    path, marker = evil
    run, argv, flag = _cases(kinetics_root, ucf_root, tmp_path, str(path))[entry]
    _user_error(capsys, run, argv + flag.split())
    assert marker.exists()


@pytest.mark.parametrize(
    "entry",
    ["train.py test", "train.py fit", "finetune_ucf.py fit --ckpt",
     "finetune_ucf.py test --ckpt_path", "a2video predict", "a2video export", "notebooks"],
)  # fmt: skip
def test_wrong_checkpoint_path(entry, kinetics_root, ucf_root, tmp_path, capsys):
    missing = str(tmp_path / "no_such.ckpt")
    run, argv, _ = _cases(kinetics_root, ucf_root, tmp_path, missing)[entry]
    line = _user_error(capsys, run, argv)
    assert missing in line and "no such checkpoint" in line, line


def test_wrong_data_root(tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    run_dir = ["--trainer.default_root_dir", str(tmp_path / "run")]  # not the demo's folders
    argv = ["fit", "--config", DEMO, "--data.data_root", missing, *run_dir]
    line = _user_error(capsys, _train_main(), argv)
    assert line.startswith("train.py: error: ") and missing in line, line
    line = _user_error(
        capsys, _finetune_main, ["fit", "--config", DEMO_UCF, "--data.data_root", missing, *run_dir]
    )
    said = f"finetune_ucf.py: error: {missing}: no such folder; fix: pass --data.data_root DIR"
    assert line.startswith(said) and "\n" not in line, line
    # a2video: the data root of `synth` cannot be made, an input video does not exist
    line = _user_error(capsys, _a2video_main, ["synth", "/proc/no/such", "--layout", "kinetics"])
    assert line.startswith("a2video synth: error: ") and "/proc/no" in line, line


def test_data_root_of_the_other_layout(kinetics_root, ucf_root, tmp_path, capsys):
    """A UCF-101 folder given to train.py (or a Kinetics one to finetune_ucf.py) is named as the
    other layout's root, with the entry point for it, not only as a missing annotation file."""
    run_dir = ["--trainer.default_root_dir", str(tmp_path / "run")]  # not the demo's folders
    argv = ["fit", "--config", DEMO, "--data.data_root", ucf_root, *run_dir]
    line = _user_error(capsys, _train_main(), argv)
    said = f"train.py: error: {ucf_root}: no annotations/ folder, not a kinetics dataset root"
    assert line.startswith(said) and "a ucf101 root" in line and "finetune_ucf.py" in line, line
    argv = ["fit", "--config", DEMO_UCF, "--data.data_root", kinetics_root, *run_dir]
    line = _user_error(capsys, _finetune_main, argv)
    said = f"finetune_ucf.py: error: {kinetics_root}: no ucfTrainTestlist/ folder, not a ucf101"
    assert line.startswith(said) and "a kinetics root" in line and "use train.py" in line, line
    assert not (tmp_path / "run").exists()


def test_missing_annotation_folder(ucf_root, tmp_path, capsys):
    argv = ["fit", "--config", DEMO_UCF, "--data.data_root", ucf_root]
    argv += ["--trainer.default_root_dir", str(tmp_path / "run")]  # not the demo's folders
    line = _user_error(capsys, _finetune_main, [*argv, "--data.annotation_dir", str(tmp_path)])
    assert str(tmp_path) in line and "classInd.txt" in line, line


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--data.crop_size", "999", "crop_size 999"),
        ("--data.batch_size", "0", "--data.batch_size 0: it must be >= 1"),
        ("--data.num_workers", "-1", "--data.num_workers -1: it must be >= 0"),
        ("--trainer.accumulate_grad_batches", "0", "--trainer.accumulate_grad_batches 0: it must"),
        # a negative chunk forwarded nothing: "torch.cat(): expected a non-empty list of Tensors"
        ("--model.view_chunk", "-1", "--model.view_chunk -1: it must be >= 0"),
    ],
)
def test_bad_config_value(flag, value, said, kinetics_root, tmp_path, capsys):
    argv = ["fit", "--config", DEMO, "--data.data_root", kinetics_root, flag, value]
    argv += ["--trainer.default_root_dir", str(tmp_path / "run")]
    line = _user_error(capsys, _train_main(), argv)
    assert said in line, line


@pytest.mark.parametrize("subcommand", ["test", "fit"])
def test_a_checkpoint_given_as_config_is_one_line(subcommand, tmp_path, capsys):
    """``--config last.ckpt`` (a checkpoint where the YAML goes) ended in a UnicodeDecodeError
    traceback: one line names the file and the option that takes a checkpoint."""
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "pytorch-lightning_version": "2.6"}, ckpt)
    line = _user_error(capsys, _train_main(), [subcommand, "--config", str(ckpt)])
    assert line.startswith(f"train.py: error: {ckpt}: not a YAML config"), line
    assert f"pass a checkpoint as --ckpt_path {ckpt}" in line, line
    line = _user_error(capsys, _finetune_main, [subcommand, f"--config={ckpt}"])
    assert line.startswith(f"finetune_ucf.py: error: {ckpt}: not a YAML config"), line
    assert f"--ckpt {ckpt} to start a fine-tune from its weights" in line, line


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (["--model.lr_base_batchsize", "8"],
         "unrecognized arguments: --model.lr_base_batchsize 8; did you mean "
         "--model.lr_base_batch_size?"),
        (["--config", str(ROOT / "configs" / "demo_kinetic.yaml")], "demo_kinetics.yaml?"),
        (["--model.scheduler", "cosin"], "Got value: cosin; did you mean cosine?"),
        (["--trainer.max_epochs", "abc"], 'Parser key "trainer.max_epochs": Does not validate'),
        (["--config", DEMO_UCF],
         "does not accept option 'data.fold'; UCF-101 fold options belong to finetune_ucf.py"),
        (["--data.fold", "2"], "--data.fold 2; UCF-101 fold options belong to finetune_ucf.py"),
        # abbreviations: argparse read `--ckpt X` as --ckpt_path X (a resume of X's run)
        (["--ckpt", "x.ckpt"], "--ckpt x.ckpt; ckpt belongs to finetune_ucf.py"),
        (["--trainer.max_epo", "3"], "--trainer.max_epo 3; did you mean --trainer.max_epochs?"),
        # a class_path's init_args (jsonargparse: ~700 characters over every type of the Union)
        (["--model.optimizer.init_args.weight_decy", "0.01"],
         "error: model.optimizer: torch.optim.AdamW has no option 'weight_decy'; did you mean "
         "weight_decay?"),
        (["--trainer.logger", '{"class_path": "CSVLogger", "init_args": {"save_dri": "x"}}'],
         "error: trainer.logger: lightning.pytorch.loggers.CSVLogger has no option 'save_dri'; "
         "did you mean save_dir?"),
    ],
)  # fmt: skip
def test_a_command_line_mistake_is_one_line_with_the_fix(given, said, tmp_path, capsys):
    """A mistyped option, a missing --config file or a bad value printed the ~130 lines of usage
    with the error at their end and no suggestion: one line, exit 2, naming the option meant
    (difflib over the parser's own options), the config file meant, or the entry point a
    UCF-101 config belongs to."""
    argv = ["fit", "--config", DEMO, "--trainer.default_root_dir", str(tmp_path), *given]
    line = _user_error(capsys, _train_main(), argv)
    assert line.startswith("train.py: error: ") and said in line, line
    assert "usage:" not in capsys.readouterr().err
    line = _user_error(capsys, _finetune_main, ["fit", "--config", DEMO_UCF, "--ckpt_pth", "x"])
    assert line.endswith("unrecognized arguments: --ckpt_pth x; did you mean --ckpt_path?"), line
    line = _user_error(capsys, _train_main(), ["tset"])
    assert line.endswith("; did you mean test?"), line


def test_a_command_line_mistake_with_the_debug_switch_shows_the_usage(monkeypatch, capsys):
    """``A2VIDEO_DEBUG=1``: jsonargparse's own output (usage text, then the message), exit 2."""
    monkeypatch.setenv("A2VIDEO_DEBUG", "1")
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        _train_main()(["fit", "--model.lr_base_batchsize", "8"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage:") and "error: unrecognized arguments" in err, err[-500:]


def test_help_is_unchanged(capsys):
    """--help still prints the usage and every option, and exits with 0."""
    with pytest.raises(SystemExit) as stop:
        _train_main()(["fit", "--help"])
    assert stop.value.code in (0, None)
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "--model.lr_base_batch_size" in out


@pytest.mark.parametrize("flag", ["--data.num_clips", "--data.num_crops", "--data.frames"])
def test_a_clip_setting_of_zero_is_one_line_naming_it(flag, kinetics_root, tmp_path, capsys):
    """``fit --data.num_clips 0`` trained without a word (its test views were never used):
    the DataModule refuses it for every stage, in one line naming the option and its range."""
    argv = ["fit", "--config", DEMO, *QUIET, "--data.data_root", kinetics_root, flag, "0"]
    argv += ["--trainer.default_root_dir", str(tmp_path / "run")]
    line = _user_error(capsys, _train_main(), argv)
    assert line.startswith(f"train.py: error: {flag} 0: it must be >= 1"), line
    assert not (tmp_path / "run").exists()


def test_debug_switch_shows_the_traceback(tmp_path):
    """``python train.py`` end to end: one message and exit 2, and with ``A2VIDEO_DEBUG=1`` the
    exception's traceback."""
    argv = [sys.executable, str(ROOT / "train.py"), "fit", "--config", DEMO]
    argv += ["--data.data_root", str(tmp_path / "nowhere")]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("A2VIDEO_DEBUG", None)
    plain = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr, plain.stderr
    assert "train.py: error: " in plain.stderr and "nowhere" in plain.stderr
    debug = subprocess.run(
        argv, env={**env, "A2VIDEO_DEBUG": "1"}, capture_output=True, text=True, timeout=120
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    assert "AnnotationError" in debug.stderr


def test_a_fresh_fit_never_writes_over_an_earlier_runs_checkpoint(kinetics_root, tmp_path, capsys):
    """The same ``fit`` command twice (a forgotten ``--ckpt_path last``): the second stops in one
    line naming the checkpoint and both fixes, before writing anything; the weights are intact.
    A ``fast_dev_run`` there is allowed and saves nothing (Lightning's own end-of-training save
    of ``last`` used to write the dry run's weights over the real ones)."""
    from tiny_fit import tiny_fit_args

    run = tmp_path / "run"
    argv = tiny_fit_args(kinetics_root, run, "--data.num_workers", "0", "--trainer.max_steps", "1")
    _train_main()(argv)
    last = run / "checkpoints" / "last.ckpt"
    weights = last.read_bytes()
    line = _user_error(capsys, _train_main(), argv)
    assert str(last) in line, line
    assert "--ckpt_path last" in line and "--trainer.default_root_dir" in line, line
    assert last.read_bytes() == weights
    _train_main()([*argv, "--trainer.fast_dev_run", "true"])  # saves nothing: allowed
    assert last.read_bytes() == weights


def test_a_resume_of_another_folders_checkpoint_never_writes_over_this_folders(
    kinetics_root, tmp_path, capsys
):
    """``fit --ckpt_path a/checkpoints/last.ckpt --trainer.default_root_dir b`` where b holds
    another run: one line naming b's checkpoint and the fixes, b's weights intact (before: b's
    last.ckpt was replaced by the resumed run's without a word). Into a new folder, or with a
    file of the folder itself, it resumes."""
    from tiny_fit import tiny_fit_args

    one_step = ["--data.num_workers", "0", "--trainer.max_steps", "1"]
    _train_main()(tiny_fit_args(kinetics_root, tmp_path / "a", *one_step))
    _train_main()(tiny_fit_args(kinetics_root, tmp_path / "b", *one_step))
    source, last = (
        tmp_path / "a" / "checkpoints" / "last.ckpt",
        tmp_path / "b" / "checkpoints" / "last.ckpt",
    )
    weights = last.read_bytes()
    resume = ["--data.num_workers", "0", "--trainer.max_steps", "2", "--ckpt_path", str(source)]
    line = _user_error(capsys, _train_main(), tiny_fit_args(kinetics_root, tmp_path / "b", *resume))
    assert str(last) in line and f"--trainer.default_root_dir {tmp_path / 'a'}" in line, line
    assert last.read_bytes() == weights
    _train_main()(tiny_fit_args(kinetics_root, tmp_path / "c", *resume))  # a new folder: resumes
    assert (
        torch.load(tmp_path / "c" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
        == 2
    )
    _train_main()(tiny_fit_args(kinetics_root, tmp_path / "a", *resume))  # its own folder
    assert torch.load(source, weights_only=True)["global_step"] == 2


def test_a_runs_saved_config_reused_with_another_root_writes_its_checkpoints_there(
    kinetics_root, tmp_path, capsys
):
    """A run's ``config.yaml`` (and the config in its checkpoints) leaves the checkpoint folders
    to ``default_root_dir``: reused with another ``--trainer.default_root_dir``, the new run's
    checkpoints go there (the saved config used to carry the old run's folder, so the new run
    wrote into it, or stopped naming a flag that would not have moved it). A config that sets
    the folder itself gets the flag that moves it named."""
    import yaml
    from tiny_fit import tiny_fit_args

    from a2video.training.checkpoint import load_checkpoint

    old, new = tmp_path / "old", tmp_path / "new"
    argv = tiny_fit_args(kinetics_root, old, "--data.num_workers", "0", "--trainer.max_steps", "1")
    _train_main()(argv)
    saved = yaml.safe_load((old / "config.yaml").read_text())
    assert saved["checkpoint"]["dirpath"] is None and saved["step_checkpoint"]["dirpath"] is None
    stored = load_checkpoint(old / "checkpoints" / "last.ckpt")["a2video"]["config"]
    assert yaml.safe_load(stored)["checkpoint"]["dirpath"] is None
    before = sorted(os.listdir(old / "checkpoints"))
    again = ["fit", "--config", str(old / "config.yaml"), "--trainer.default_root_dir", str(new)]
    _train_main()([*again, "--trainer.max_steps", "1"])
    assert (new / "checkpoints" / "last.ckpt").is_file()
    assert sorted(os.listdir(old / "checkpoints")) == before
    pinned = [*again, "--checkpoint.dirpath", str(old / "checkpoints")]
    line = _user_error(capsys, _train_main(), pinned)
    assert "--trainer.default_root_dir DIR --checkpoint.dirpath DIR/checkpoints" in line, line


def test_ckpt_path_last_and_best_are_the_runs_files(kinetics_root, tmp_path, capsys):
    """``--ckpt_path best`` / ``last`` name files of the run's checkpoint folder from a new
    process (``test --ckpt_path best`` failed in Lightning there) and get the checks of a path
    (an architecture conflict is one line, not a state-dict traceback). Evaluating with no
    checkpoint, or with ``last`` where there is none, stops in one line instead of scoring
    untrained weights; a ``fit --ckpt_path last`` with no ``last.ckpt`` but another run's
    checkpoint stops before writing over it. Without a logger's versions, a second test writes
    its outputs beside the first's (``test-1/``), not over them, and no test writes over the
    fit's ``config.yaml`` (before, each replaced it with its own settings)."""
    from tiny_fit import TINY_CLIP, tiny_fit_args

    run = tmp_path / "run"
    one_epoch = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1"]
    one_epoch += ["--trainer.check_val_every_n_epoch", "1", "--data.num_workers", "0"]
    _train_main()(tiny_fit_args(kinetics_root, run, *one_epoch))
    best = next((run / "checkpoints").glob("best-*.ckpt"))

    def test_args(folder: Path, *extra: str) -> list[str]:
        return [
            "test", "--config", DEMO, "--data.data_root", kinetics_root,
            "--trainer.default_root_dir", str(folder), "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--data.num_workers", "0",
            "--trainer.limit_test_batches", "1", *TINY_CLIP, *extra,
        ]  # fmt: skip

    _train_main()(test_args(run, "--ckpt_path", "best"))
    first = (run / "predictions.csv").read_bytes()
    # No logger (no version_N folders): a second test writes beside the first, never over it
    _train_main()(test_args(run, "--ckpt_path", "best", "--data.num_clips", "2"))
    assert (run / "predictions.csv").read_bytes() == first
    assert (run / "test-1" / "predictions.csv").is_file()
    assert (run / "test-1" / "scores.npz").is_file()
    # ... and the fit's config.yaml stays the fit's: each test's settings are beside it
    assert "max_epochs: 1\n" in (run / "config.yaml").read_text()
    assert "num_clips: 2\n" in (run / "test-config-1.yaml").read_text()
    assert "ckpt_path:" in (run / "test-config.yaml").read_text()

    line = _user_error(capsys, _train_main(), test_args(run))
    assert "no --ckpt_path was given" in line, line
    empty = tmp_path / "empty"
    line = _user_error(capsys, _train_main(), test_args(empty, "--ckpt_path", "last"))
    assert str(empty / "checkpoints") in line and "no last checkpoint" in line, line
    line = _user_error(
        capsys, _train_main(), test_args(run, "--ckpt_path", "last", "--model.arch", "i3d_tiny")
    )
    assert "the checkpoint's arch is 'a2net_tiny'" in line, line
    assert "leave --model.arch (command line and --config files) unset" in line, line

    (run / "checkpoints" / "last.ckpt").rename(run / "checkpoints" / "mine.ckpt")
    kept = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    argv = tiny_fit_args(kinetics_root, run, *one_epoch, "--ckpt_path", "last")
    line = _user_error(capsys, _train_main(), argv)
    assert "--ckpt_path " + str(best) in line, line
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == kept


ONE_EPOCH = [
    "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
    "--trainer.check_val_every_n_epoch", "1", "--data.num_workers", "0",
]  # fmt: skip


def test_fit_from_a_weights_only_checkpoint_is_one_line(kinetics_root, ucf_root, tmp_path, capsys):
    """``fit --ckpt_path`` of a file without training state (``save_weights_only=True``, or no
    ``lr_schedulers``) stops in one line naming the file, why, and the option that starts a new
    run from its weights (Lightning's KeyError traceback before); that option works."""
    from tiny_fit import tiny_fit_args

    run = tmp_path / "run"
    _train_main()(
        tiny_fit_args(kinetics_root, run, *ONE_EPOCH, "--checkpoint.save_weights_only=true")
    )
    weights = next((run / "checkpoints").glob("best-*.ckpt"))
    argv = tiny_fit_args(kinetics_root, tmp_path / "again", *ONE_EPOCH)
    line = _user_error(capsys, _train_main(), [*argv, "--ckpt_path", str(weights)])
    said = f"train.py: error: {weights}: it holds weights but no training state (no "
    assert line.startswith(said + "optimizer_states / lr_schedulers: "), line
    assert "so fit cannot resume from it" in line, line
    finetune = "--trainer.callbacks+=a2video.training.finetune.Finetune"
    assert f"{finetune} --trainer.callbacks.pretrained {weights} " in line, line
    assert not (tmp_path / "again").exists()  # stopped before anything ran

    # the option it names starts a new run from those weights
    start = line.split("from its weights with ")[1].removesuffix(" (not --ckpt_path)")
    _train_main()(tiny_fit_args(kinetics_root, tmp_path / "new", *ONE_EPOCH, *start.split()))
    assert (tmp_path / "new" / "checkpoints" / "last.ckpt").is_file()

    # a full checkpoint but for its LR-scheduler state
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    del ckpt["lr_schedulers"]
    torch.save(ckpt, tmp_path / "no_schedule.ckpt")
    line = _user_error(
        capsys, _train_main(), [*argv, "--ckpt_path", str(tmp_path / "no_schedule.ckpt")]
    )
    assert "no training state (no lr_schedulers: " in line, line

    # finetune_ucf.py names its own option, --ckpt
    ucf = ["fit", "--config", DEMO_UCF, *QUIET, "--data.data_root", ucf_root]
    ucf += ["--trainer.default_root_dir", str(tmp_path / "ucf"), "--ckpt_path", str(weights)]
    line = _user_error(capsys, _finetune_main, ucf)
    assert line.startswith(f"finetune_ucf.py: error: {weights}: it holds weights but"), line
    assert line.endswith(f"from its weights with --ckpt {weights} (not --ckpt_path)"), line


def test_a_resume_with_fewer_epochs_than_trained_is_one_line(kinetics_root, tmp_path, capsys):
    """``fit --ckpt_path last --trainer.max_epochs 1`` after 3 epochs: one line naming the
    file, the epoch and the options (Lightning's MisconfigurationException traceback before);
    the checkpoints are left as they were."""
    from tiny_fit import tiny_fit_args

    run = tmp_path / "run"
    three = ["--trainer.max_epochs", "3", "--trainer.limit_train_batches", "1"]
    _train_main()(tiny_fit_args(kinetics_root, run, "--data.num_workers", "0", *three))
    kept = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    argv = tiny_fit_args(kinetics_root, run, *ONE_EPOCH, "--ckpt_path", "last")
    line = _user_error(capsys, _train_main(), argv)
    last = run / "checkpoints" / "last.ckpt"
    assert line.startswith(f"train.py: error: {last}: it was written in epoch 2 (from 0), "), line
    assert "past --trainer.max_epochs 1" in line and "above 2 to train on" in line, line
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == kept


def test_fit_from_a_bare_state_dict_names_the_option_that_starts_from_it(
    kinetics_root, tmp_path, capsys
):
    """``fit --ckpt_path`` of a bare state dict (a PySlowFast user's init weights) stops in one
    line naming the option that starts a new run from its weights (before: only "pass a .ckpt
    written by train.py"); that option trains from it."""
    from tiny_fit import tiny_fit_args

    from a2video.data import KineticsDataModule
    from a2video.models import build_model

    classes = KineticsDataModule(kinetics_root, num_workers=0).num_classes
    weights = tmp_path / "init.pt"
    torch.save(build_model("a2net_tiny", num_classes=classes).state_dict(), weights)
    argv = tiny_fit_args(kinetics_root, tmp_path / "run", *ONE_EPOCH)
    line = _user_error(capsys, _train_main(), [*argv, "--ckpt_path", str(weights)])
    assert line.startswith(f"train.py: error: {weights}: not a Lightning checkpoint"), line
    start = line.split("start a new run from the weights it holds with ")[1]
    start = start.removesuffix(" (not --ckpt_path).")
    assert f"--trainer.callbacks.pretrained {weights} " in start + " ", line
    _train_main()([*argv, *start.split()])
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def _test_best(kinetics_root: str, run: Path, caplog, *extra: str) -> str:
    """``train.py test --ckpt_path best`` of ``run``: its one ``--ckpt_path best:`` info line."""
    from tiny_fit import TINY_CLIP

    argv = [
        "test", "--config", DEMO, "--data.data_root", kinetics_root,
        "--trainer.default_root_dir", str(run), "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--data.num_workers", "0",
        "--trainer.limit_test_batches", "1", *TINY_CLIP, "--ckpt_path", "best", *extra,
    ]  # fmt: skip
    caplog.clear()
    with caplog.at_level("INFO"):
        _train_main()(argv)
    (line,) = [r.getMessage() for r in caplog.records if "--ckpt_path best:" in r.getMessage()]
    return line


def _val_losses(run: Path) -> dict[Path, float]:
    """The saved ``val/loss`` of each best file of ``run``."""
    files = sorted((run / "checkpoints").glob("best-*.ckpt"))
    return {p: torch.load(p, weights_only=True)["a2video"]["metrics"]["val/loss"] for p in files}


def test_ckpt_path_best_ranks_by_the_monitor_the_run_was_trained_with(
    kinetics_root, tmp_path, caplog
):
    """A run trained with ``--checkpoint.monitor val/loss --checkpoint.mode min`` keeps 3 best
    files; ``test --ckpt_path best`` without repeating the monitor picks the lowest val/loss
    (before: the best val/top1, this command's default monitor) and says so in its info line. An
    explicit other monitor does not change the choice; the line says it is not used."""
    from tiny_fit import tiny_fit_args

    run = tmp_path / "run"
    argv = tiny_fit_args(kinetics_root, run, *ONE_EPOCH, "--trainer.max_epochs=3")
    watch = ["--checkpoint.monitor=val/loss", "--checkpoint.mode=min"]
    _train_main()([*argv, *watch, "--checkpoint.save_top_k=3"])
    losses = _val_losses(run)
    assert len(losses) == 3
    lowest, highest = min(losses, key=losses.get), max(losses, key=losses.get)
    for path in losses:  # the worst val/loss gets the best val/top1: the rankings disagree
        ckpt = torch.load(path, weights_only=True)
        ckpt["a2video"]["metrics"]["val/top1"] = 0.9 if path == highest else 0.1
        torch.save(ckpt, path)

    line = _test_best(kinetics_root, run, caplog)
    assert f"--ckpt_path best: {lowest} (ranked by val/loss (min), the monitor the run's " in line
    assert line.endswith("; not by this command's checkpoint.monitor val/top1 (max))"), line
    line = _test_best(
        kinetics_root, run, caplog, "--checkpoint.monitor=val/top1", "--checkpoint.mode=max"
    )
    assert f"--ckpt_path best: {lowest} (ranked by val/loss (min)" in line, line
    line = _test_best(
        kinetics_root, run, caplog, "--checkpoint.monitor=val/loss", "--checkpoint.mode=min"
    )
    assert line.endswith(
        f"{lowest} (ranked by val/loss (min), the monitor the run's checkpoints record)"
    )


def test_ckpt_path_best_when_the_runs_checkpoints_record_different_monitors(
    kinetics_root, tmp_path, caplog
):
    """A run resumed with another monitor keeps best files of both: ``best`` ranks them all by
    the newest file's monitor, and the info line names the other one."""
    from tiny_fit import tiny_fit_args

    run = tmp_path / "run"
    argv = tiny_fit_args(kinetics_root, run, *ONE_EPOCH, "--checkpoint.save_top_k=2")
    _train_main()([*argv, "--trainer.max_epochs=2"])  # val/top1 (max), the default
    resume = ["--trainer.max_epochs=4", "--ckpt_path=last"]
    _train_main()([*argv, *resume, "--checkpoint.monitor=val/loss", "--checkpoint.mode=min"])
    losses = _val_losses(run)
    assert len(losses) == 4

    line = _test_best(kinetics_root, run, caplog)
    newest = max(losses, key=lambda p: p.stat().st_mtime).name
    lowest = min(losses, key=losses.get)
    assert (
        f"best: {lowest} (ranked by val/loss (min), the monitor of the newest, {newest}; " in line
    )
    assert "older checkpoints of the run record val/top1 (max)" in line, line


@pytest.mark.parametrize("entry", ["train.py", "finetune_ucf.py"])
def test_nvdec_without_a_gpu_is_one_line(
    entry, kinetics_root, ucf_root, tmp_path, monkeypatch, capsys
):
    """``--data.decoder nvdec`` where PyNvVideoCodec imports but there is no CUDA GPU: one line
    naming what is missing and both fixes (a RuntimeError traceback from the DataModule before)."""
    from a2video.data.video import check_decoder

    (tmp_path / "PyNvVideoCodec.py").write_text("")  # the package imports
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config, root = (DEMO, kinetics_root) if entry == "train.py" else (DEMO_UCF, ucf_root)
    argv = ["fit", "--config", config, *QUIET, "--data.data_root", root, "--data.decoder", "nvdec"]
    argv += ["--trainer.default_root_dir", str(tmp_path / "run")]
    run = _train_main() if entry == "train.py" else _finetune_main
    line = _user_error(capsys, run, argv)
    assert line.startswith(f"{entry}: error: decoder='nvdec' needs an NVIDIA GPU"), line
    assert "run on a machine with an NVIDIA GPU" in line, line
    assert line.endswith(f"or decode on the CPU with --data.decoder {check_decoder('auto')}"), line


def test_a_run_whose_loss_stays_non_finite_ends_in_one_line(kinetics_root, tmp_path, capsys):
    """A diverged run (a learning rate of 1e30: every loss after the first step is NaN) stops
    at ``max_nonfinite_steps`` with one line saying what to change, not a traceback."""
    from tiny_fit import tiny_fit_args

    argv = tiny_fit_args(
        kinetics_root, tmp_path / "run", "--data.num_workers", "0",
        "--model.optimizer.init_args.lr", "1e30", "--model.max_nonfinite_steps", "2",
    )  # fmt: skip
    line = _user_error(capsys, _train_main(), argv)
    assert "2 consecutive steps had a non-finite loss" in line and "learning rate" in line, line
    assert (tmp_path / "run" / "config.yaml").is_file()  # it trained: its folder is kept


def test_a_failed_start_leaves_no_run_folder(kinetics_root, tmp_path, capsys):
    """A fit that stops in setup (a val split that is not there, read after the logger made
    ``lightning_logs/version_N``) left the run folder and an empty ``version_N`` behind, and the
    next attempt became ``version_N+1``. Now what it created is removed, and only that: an earlier
    run's version folder stays as it was, and the next attempt is ``version_1`` again."""
    run = tmp_path / "run"
    argv = ["fit", "--config", DEMO, "--data.data_root", kinetics_root, *QUIET]
    argv += ["--trainer.default_root_dir", str(run), "--trainer.logger", "true"]
    argv += ["--data.val_split", str(tmp_path / "no_val.csv")]
    line = _user_error(capsys, _train_main(), argv)
    assert "no_val.csv: no such file" in line, line
    assert not run.exists()
    earlier = run / "lightning_logs" / "version_0"
    earlier.mkdir(parents=True)
    (earlier / "config.yaml").write_text("seed_everything: 0\n")
    (earlier / "metrics.csv").write_text("step,train/loss\n0,1.0\n")
    kept = sorted(p.relative_to(run) for p in run.rglob("*"))
    for _ in range(2):
        _user_error(capsys, _train_main(), argv)
        assert sorted(p.relative_to(run) for p in run.rglob("*")) == kept


def test_a_failed_start_leaves_a_run_started_beside_it_alone(
    kinetics_root, tmp_path, capsys, monkeypatch
):
    """Two fits started at once in one ``lightning_logs`` (a sweep): the one that fails in
    setup removes its own ``version_N`` only. Before, it removed every new folder there holding
    start-up files alone, so the other run lost its config, hparams.yaml and open event file."""
    from a2video.training import cli

    run = tmp_path / "run"
    other = run / "lightning_logs" / "version_7"
    folder_snapshot = cli.folder_snapshot

    def snapshot_then_other_starts(folders):
        snapshot = folder_snapshot(folders)
        other.mkdir(parents=True)
        for name in ("config.yaml", "hparams.yaml", "events.out.tfevents.1.host.2.0"):
            (other / name).write_text("x")
        return snapshot

    monkeypatch.setattr(cli, "folder_snapshot", snapshot_then_other_starts)
    argv = ["fit", "--config", DEMO, "--data.data_root", kinetics_root, *QUIET]
    argv += ["--trainer.default_root_dir", str(run), "--trainer.logger", "true"]
    argv += ["--data.val_split", str(tmp_path / "no_val.csv")]
    _user_error(capsys, _train_main(), argv)
    assert sorted(p.name for p in run.rglob("*")) == [
        "config.yaml", "events.out.tfevents.1.host.2.0", "hparams.yaml", "lightning_logs",
        "version_7",
    ]  # fmt: skip


def test_a_fit_stopped_before_its_first_validation_has_no_monitor_warning(kinetics_root, tmp_path):
    """``--trainer.max_steps 1`` stops before any validation: no val/top1 exists yet, and
    Lightning's "could not find the monitored key ... Did you call log('val/top1')?" is not
    for the user."""
    import warnings

    from tiny_fit import tiny_fit_args

    argv = tiny_fit_args(
        kinetics_root, tmp_path / "run", "--data.num_workers", "0", "--trainer.max_steps", "1",
        "--trainer.check_val_every_n_epoch", "1",
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _train_main()(argv)
    assert not [w for w in caught if "could not find the monitored key" in str(w.message)]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_imagenet_weights_without_internet_is_one_line(
    kinetics_root, tmp_path, capsys, monkeypatch
):
    """The paper config's ``pretrained_2d: imagenet`` on a compute node without internet ended
    in a 95-line ``URLError`` traceback. Now one line names the file to fetch elsewhere, the
    option that takes its path and the cache folder that torch looks in."""
    import urllib.error

    import torch.hub

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # nothing cached
    monkeypatch.setattr(torch.hub, "urlopen", offline)
    argv = ["fit", "--config", DEMO, "--data.data_root", kinetics_root, *QUIET]
    argv += ["--model.pretrained_2d", "imagenet", "--trainer.default_root_dir", str(tmp_path / "r")]
    line = _user_error(capsys, _train_main(), argv)
    assert "could not download torchvision's ResNet-50 weights" in line, line
    assert "Name or service not known" in line and "--model.pretrained_2d /path/resnet50-" in line
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints") in line, line


def test_a_val_check_interval_longer_than_the_epoch_is_one_line(kinetics_root, tmp_path, capsys):
    """``--trainer.val_check_interval 10`` with 3 training batches per epoch: one line naming
    the option, the epoch's batches and the fixes (before: Lightning's ValueError in a traceback
    from inside its fit loop)."""
    from tiny_fit import tiny_fit_args

    argv = tiny_fit_args(kinetics_root, tmp_path / "run", "--data.num_workers", "0")
    line = _user_error(capsys, _train_main(), [*argv, "--trainer.val_check_interval", "10"])
    assert "--trainer.val_check_interval 10: an epoch has 3 training batches" in line, line
    assert "--trainer.check_val_every_n_epoch null" in line, line


def test_a_reader_that_leaves_the_pipe_is_no_error():
    """``a2video flops all --json | head`` printed ``a2video flops: error: [Errno 32] Broken
    pipe`` and exited 2 (a user error) when head closed the pipe: now nothing on stderr and
    128 + SIGPIPE, as a shell reports a command the pipe ended."""
    argv = [sys.executable, "-m", "a2video.cli", "flops", "a2net_tiny", "--json"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("A2VIDEO_DEBUG", None)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the command writes
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == "", err
