"""Shared fixtures: small synthetic datasets made once per session."""

from __future__ import annotations

import os

import pytest
import torch

# Two cores on CI: keep every test process at a predictable thread count.
torch.set_num_threads(int(os.environ.get("A2VIDEO_TEST_THREADS", "2")))


def pytest_configure(config: pytest.Config) -> None:
    # A GPU host's own python may have pytest without pytest-timeout: the `timeout` marks then
    # do nothing, instead of failing --strict-markers at import of every module that uses one.
    if not config.pluginmanager.hasplugin("timeout"):
        config.addinivalue_line("markers", "timeout(seconds): needs pytest-timeout to act")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --------------------------------------------------------------------------- synthetic datasets
# Tiny datasets in the real Kinetics / UCF-101 layouts, written once per test session.
# 4 motion classes x 3 videos, frames <= 64 px, 1-2 s: a few seconds to make on 2 cores.
SMALL_CLIP = {
    "frames": 4,
    "stride": 2,
    "train_scale": (40, 48),
    "crop_size": 32,
    "test_scale": 40,
    "num_clips": 3,
    "num_crops": 3,
    "batch_size": 4,
    "test_batch_size": 2,
    "num_workers": 0,
}


@pytest.fixture(scope="session")
def kinetics_root(tmp_path_factory) -> str:
    """Kinetics layout: annotations/{train,val,test}.csv, train/ mostly per-class, val/test flat.

    4 classes ("falling", "growing", "rising", "shrinking" after sorting), 3 train videos per
    class of which one is listed but missing, 1 val and 1 test video per class.
    """
    from a2video.data.synthetic import synthesize

    root = tmp_path_factory.mktemp("kinetics")
    synthesize(
        root,
        "kinetics",
        classes=4,
        videos_per_class=3,
        duration=(1.0, 2.0),
        max_side=64,
        seed=0,
        progress=False,
    )
    return str(root)


@pytest.fixture(scope="session")
def ucf_root(tmp_path_factory) -> str:
    """UCF-101 layout: UCF-101/<Class>/v_<Class>_gXX_cYY.avi (64x48) + ucfTrainTestlist/.

    4 classes x 3 videos in groups 1, 8 and 15: each fold tests on one video per class.
    """
    from a2video.data.synthetic import synthesize

    root = tmp_path_factory.mktemp("ucf101")
    synthesize(
        root,
        "ucf101",
        classes=4,
        videos_per_class=3,
        duration=(1.0, 2.0),
        size=(64, 48),
        seed=0,
        progress=False,
    )
    return str(root)


@pytest.fixture(scope="session")
def broken_kinetics_root(tmp_path_factory) -> str:
    """Kinetics layout where ~15% of videos are unusable plus one of each odd-but-usable kind.

    ``synth_manifest.json`` in the root maps each special file to its kind.
    """
    from a2video.data.synthetic import synthesize

    root = tmp_path_factory.mktemp("kinetics_broken")
    synthesize(
        root,
        "kinetics",
        classes=4,
        videos_per_class=6,
        val_per_class=2,
        duration=(1.0, 1.6),
        max_side=64,
        seed=1,
        broken=0.15,
        quirks=True,
        progress=False,
    )
    return str(root)


@pytest.fixture
def small_clip() -> dict:
    """DataModule keyword arguments for tiny clips (4 frames, 32 px, 3x3 views, no workers)."""
    return dict(SMALL_CLIP)
