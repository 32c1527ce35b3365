"""Both notebooks run top to bottom against a tiny checkpoint and keep their figures."""

from __future__ import annotations

import nbclient  # noqa: F401  (a dev dependency: imported, never skipped)
import pytest

from a2video.explore.notebooks import NOTEBOOKS, execute_notebook, image_outputs, repo_root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, kinetics_root) -> dict[str, str]:
    from tiny_checkpoint import train_tiny_run

    return train_tiny_run(tmp_path_factory.getbasetemp(), kinetics_root)


def _run(name: str, tiny_run: dict[str, str], tmp_path):
    env = {
        "A2VIDEO_CKPT": tiny_run["ckpt"],
        "A2VIDEO_DATA": tiny_run["data"],
        "A2VIDEO_RUN": tiny_run["run"],
    }
    source = repo_root() / "notebooks" / name
    target = tmp_path / name
    nb = execute_notebook(source, target, env=env, timeout=300)
    assert target.is_file()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    return nb


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


def test_explore_predictions_notebook_draws_every_figure(tiny_run, tmp_path):
    nb = _run("explore_predictions.ipynb", tiny_run, tmp_path)
    assert _cell_images(nb, "plot_per_class_accuracy") == 1
    assert _cell_images(nb, "plot_confusion_matrix") == 1
    assert _cell_images(nb, "plot_mistake_gallery") == 1
    assert _cell_images(nb, "plot_accuracy_vs_views") == 1
    text = _text(nb)
    assert "a2net_tiny: 4 classes" in text
    # It found training's predictions.csv and compared it with its own scores.
    assert "predictions.csv: 4 rows, tested with 3x3 views" in text


def test_attention_maps_notebook_draws_b_and_v_for_every_block(tiny_run, tmp_path):
    nb = _run("attention_maps.ipynb", tiny_run, tmp_path)
    blocks = 2  # a2net_tiny: layer2.0.attn and layer3.0.attn
    assert _cell_images(nb, "plot_clip_topk") == 1
    assert _cell_images(nb, "plot_attention_maps") == 2 * blocks  # B and V per block
    assert _cell_images(nb, "plot_descriptor_usage") == blocks
    text = _text(nb)
    assert "layer2.0.attn: 32 descriptors" in text and "layer3.0.attn: 64 descriptors" in text
