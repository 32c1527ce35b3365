"""Export a trained network to ONNX or TorchScript for a fixed clip shape, and check that the
exported program gives the same logits as PyTorch.

The A²-block (Chen et al., NeurIPS 2018, Eq. 1-7) exports as plain operators: 1×1×1
convolutions, two softmaxes and two batched matrix products (left association, Eq. 6), so no
custom operator is needed in either format.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from a2video.atomic_write import replaced_atomically

__all__ = ["FORMATS", "Parity", "export_model", "load_exported", "parity_check"]

Format = Literal["onnx", "torchscript"]
FORMATS: tuple[str, ...] = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
INPUT_NAME, OUTPUT_NAME = "video", "logits"


@dataclass
class Parity:
    """How far the exported program's logits are from PyTorch's on the same input.

    Attributes:
        max_abs_diff: max |exported − torch| over all logits.
        max_abs_logit: max |torch logit|, the scale the difference compares to.
        top1_agree: Fraction of clips whose arg-max class is the same.
        tolerance: The bound the check was made against.
    """

    max_abs_diff: float
    max_abs_logit: float
    top1_agree: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def summary(self) -> str:
        verdict = "OK" if self.ok else "FAILED"
        return (
            f"parity {verdict}: max |logit diff| = {self.max_abs_diff:.2e} "
            f"(tolerance {self.tolerance:.0e}, logits up to {self.max_abs_logit:.2f}), "
            f"top-1 agreement {100 * self.top1_agree:.1f}%"
        )


def _cpu_eval_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).float().cpu().eval()


def export_model(
    model: nn.Module,
    path: str | Path,
    clip_shape: tuple[int, int, int, int, int],
    *,
    fmt: Format = "onnx",
    opset: int | None = None,
) -> Path:
    """Writes ``model`` (in eval mode, float32, CPU) as ``fmt`` for inputs of ``clip_shape``.

    Args:
        model: Maps (N, 3, T, H, W) float clips to (N, num_classes) logits.
        path: Output file (created with its parent folder).
        clip_shape: The fixed input shape (N, 3, T, H, W).
        fmt: ``"onnx"`` (input ``video``, output ``logits``) or ``"torchscript"`` (traced).
        opset: ONNX opset; the exporter's default when None.

    Returns:
        The written path.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    path = Path(path)
    # a failed or killed export leaves what was there (the suffix: ONNX's writer reads it)
    with replaced_atomically(path, suffix=path.suffix) as tmp:
        _write(model, tmp, clip_shape, fmt, opset)
    return path


def _write(
    model: nn.Module, path: Path, clip_shape: tuple[int, ...], fmt: Format, opset: int | None
) -> None:
    net = _cpu_eval_copy(model)
    example = torch.zeros(clip_shape)
    with torch.no_grad():
        if fmt == "onnx":
            kwargs = {} if opset is None else {"opset_version": opset}
            with warnings.catch_warnings(), _quiet_loggers("torch.onnx", "onnxscript"):
                warnings.simplefilter("ignore")
                program = torch.onnx.export(
                    net,
                    (example,),
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamo=True,
                    verbose=False,
                    **kwargs,
                )
            # One self-contained file: the weights of these models stay far below 2 GB.
            program.save(str(path), external_data=False)
            if opset is not None:
                _check_opset(path, opset)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(net, (example,), check_trace=False)
            traced.save(str(path))


@contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Silence these loggers: an opset the exporter cannot convert to is logged as a traceback
    (the outcome is checked by :func:`_check_opset`)."""
    loggers = [logging.getLogger(name) for name in names]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, saved, strict=True):
            logger.setLevel(level)


def _check_opset(path: Path, opset: int) -> None:
    """Refuse a file whose opset is not the one asked for: the exporter falls back to its own
    (18) when it cannot convert the model, with a warning only."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    wrote = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if wrote is not None and wrote != opset:
        raise ValueError(
            f"opset {opset}: the ONNX exporter wrote opset {wrote} instead (it cannot convert "
            f"this model to {opset}); ask for opset {wrote} or later (--opset), or leave it out"
        )


def load_exported(path: str | Path, fmt: Format):
    """A callable ``(N, 3, T, H, W) float32 tensor -> logits tensor`` running the exported file
    (onnxruntime on the CPU for ONNX)."""
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        name = session.get_inputs()[0].name

        def run_onnx(x: Tensor) -> Tensor:
            (out,) = session.run(None, {name: x.detach().cpu().float().numpy()})
            return torch.from_numpy(out)

        return run_onnx
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, not gone
            module = torch.jit.load(str(path), map_location="cpu").eval()

        def run_script(x: Tensor) -> Tensor:
            with torch.no_grad():
                return module(x.detach().cpu().float())

        return run_script
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


@torch.no_grad()
def parity_check(
    model: nn.Module,
    path: str | Path,
    fmt: Format,
    inputs: Tensor,
    *,
    tolerance: float = 1e-3,
) -> Parity:
    """Runs PyTorch and the exported file on ``inputs`` and compares the logits.

    Args:
        model: The network that was exported.
        path: The exported file.
        fmt: Its format.
        inputs: Clips of the exported shape, (N, 3, T, H, W).
        tolerance: Bound on the largest absolute logit difference.

    Returns:
        The :class:`Parity` of the two.
    """
    expected = _cpu_eval_copy(model)(inputs.float().cpu())
    got = load_exported(path, fmt)(inputs)
    diff = (got.float() - expected).abs()
    return Parity(
        max_abs_diff=float(diff.max()),
        max_abs_logit=float(expected.abs().max()),
        top1_agree=float((got.argmax(1) == expected.argmax(1)).float().mean()),
        tolerance=tolerance,
    )
