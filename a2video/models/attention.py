"""Attention blocks: the double attention block (A²-block) and the non-local baseline.

``DoubleAttention`` follows Chen et al., "A²-Nets: Double Attention Networks", NeurIPS 2018,
Section 2, Eq. 1-7. For an input X with c channels over L positions (L = T·H·W for video,
H·W for images):

- A = φ(X) ∈ R^{m×L} (Eq. 2), B = softmax_L(θ(X)) ∈ R^{n×L} (Eq. 3-4, gather by second-order
  attention pooling: G = A·Bᵀ ∈ R^{m×n}),
- V = softmax_n(ρ(X)) ∈ R^{n×L} (Eq. 5, distribute: z_i = G·v_i),
- Z = (A·Bᵀ)·V (Eq. 6, left association) or A·(Bᵀ·V) (Eq. 7, right association),
- Y = X + BN(W_out Z), with the BN scale initialised to zero so a new block is the identity.

``NonLocal`` is the embedded-Gaussian non-local block of Wang et al., "Non-local Neural
Networks", CVPR 2018, the baseline the A²-Nets paper compares against.

Both blocks accept 5-D (N, C, T, H, W) and 4-D (N, C, H, W) tensors; a 4-D input is treated as a
clip of one frame, so the same parameters serve images and video.
"""

from __future__ import annotations

import contextlib
import time
from typing import Literal

import torch
from torch import Tensor, nn

from a2video.models.layers import BatchNorm3d, Conv3d, channels_last_clip

__all__ = [
    "DoubleAttention",
    "NonLocal",
    "association_cost",
    "attention_blocks",
    "folded_bn_projection",
]

Association = Literal["left", "right", "auto"]
Precision = Literal["autocast", "float32"]

# `association="auto"` on these device types times both orders once per shape (see
# DoubleAttention._choose_timed); elsewhere it follows the multiply-add count.
TIMED_AUTO_DEVICES = {"cuda"}
_TIMED_CHOICE: dict[tuple, str] = {}
# The right association holds an L×L matrix per sample: never timed above this many bytes.
_RIGHT_TIMING_MAX_BYTES = 2**30


def association_cost(m: int, n: int, length: int) -> dict[str, int]:
    """Multiply-adds of the two association orders of Eq. 6 and Eq. 7 (per sample).

    Left, Eq. 6, ``(A·Bᵀ)·V``: ``A·Bᵀ`` is (m×L)(L×n) = m·n·L, then ``G·V`` is (m×n)(n×L) =
    m·n·L, in all ``2·m·n·L``; the largest intermediate is G with m·n entries.
    Right, Eq. 7, ``A·(Bᵀ·V)``: ``Bᵀ·V`` is (L×n)(n×L) = n·L², then ``A·(BᵀV)`` is (m×L)(L×L) =
    m·L², in all ``(m + n)·L²``; the intermediate BᵀV has L² entries.

    Args:
        m: Channels of A (feature maps).
        n: Number of attention maps / global descriptors.
        length: Number of positions L.

    Returns:
        ``{"left": 2·m·n·L, "right": (m+n)·L²}``.
    """
    return {"left": 2 * m * n * length, "right": (m + n) * length * length}


def _as_video(x: Tensor) -> tuple[Tensor, bool]:
    """Views a 4-D (N, C, H, W) tensor as a one-frame clip (N, C, 1, H, W)."""
    if x.dim() == 5:
        return x, False
    if x.dim() == 4:
        return x.unsqueeze(2), True
    raise ValueError(
        f"expected a 4-D (N,C,H,W) or 5-D (N,C,T,H,W) tensor, got shape {tuple(x.shape)}"
    )


def _autocast_on(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (False where autocast lacks it, e.g. meta)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:
        return False


def _no_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """Disables autocast where it is on, so the attention runs in the dtype we cast to."""
    if _autocast_on(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def _compute_dtype(x: Tensor, precision: Precision = "float32") -> torch.dtype:
    """The dtype of the softmaxes and matrix products.

    ``"float32"``: at least float32 (fp16/bf16 inputs are promoted). ``"autocast"``: the input's
    dtype, i.e. bf16/fp16 under autocast (the products still accumulate in float32 on GPUs and
    in oneDNN) and float32 otherwise.
    """
    if precision == "autocast":
        return x.dtype
    return torch.promote_types(x.dtype, torch.float32)


def _folds(bn: nn.Module) -> bool:
    """Whether ``bn`` can be folded into the convolution before it: a per-process BatchNorm
    (a SyncBatchNorm's statistics span the ranks)."""
    return isinstance(bn, nn.modules.batchnorm._BatchNorm) and not isinstance(bn, nn.SyncBatchNorm)


def folded_bn_projection(
    weight: Tensor, bn: nn.modules.batchnorm._BatchNorm, z: Tensor
) -> tuple[Tensor, Tensor]:
    """``(W', b')`` with ``BN(W·z) = W'·z + b'`` for a 1×1×1 convolution ``W`` (c×m) on ``z``.

    With batch statistics (training, or no running statistics) the mean and variance of
    ``y = W·z`` come from ``z``'s own: ``E[y] = W·E[z]`` and ``Var[y]_c = w_c Σ_z w_cᵀ``, with
    ``Σ_z`` the m×m covariance of ``z`` over the batch's positions (one m×m GEMM, float32), so
    the c-channel ``y`` is never normalised in a pass of its own (statistics in at least
    float32); the running statistics are
    updated as ``nn.BatchNorm3d`` does (unbiased variance, ``momentum``). Otherwise the running
    statistics fold in, as at inference. The same function of ``z``, ``W``, γ and β as the BN
    after the convolution, so the same gradients.

    Args:
        weight: the convolution's weight, (c, m, 1, 1, 1).
        bn: the BatchNorm over its c output channels.
        z: its input, (N, m, T, H, W).

    Returns:
        ``W'`` shaped like ``weight`` and ``b'`` (c,), in ``weight``'s dtype.
    """
    c, m = weight.shape[:2]
    acc = torch.promote_types(z.dtype, torch.float32)  # float32 statistics of a bf16 z
    w = weight.reshape(c, m).to(acc)
    if bn.training or not bn.track_running_stats:
        with _no_autocast(z.device.type):
            rows = z.movedim(1, -1).reshape(-1, m).to(acc)  # (P, m): a view when channels-last
            count = rows.shape[0]
            mean_z = rows.mean(0)
            cov_z = rows.t().mm(rows) / count - torch.outer(mean_z, mean_z)
            mean = w.mv(mean_z)
            var = (w.mm(cov_z) * w).sum(1).clamp_min(0)
        if bn.training and bn.track_running_stats:
            with torch.no_grad():
                bn.num_batches_tracked.add_(1)
                factor = bn.momentum
                if factor is None:  # a cumulative average, as nn.BatchNorm3d
                    factor = 1.0 / float(bn.num_batches_tracked)
                bn.running_mean.lerp_(mean.detach().to(bn.running_mean.dtype), factor)
                unbiased = var.detach() * (count / max(count - 1, 1))
                bn.running_var.lerp_(unbiased.to(bn.running_var.dtype), factor)
    else:
        mean, var = bn.running_mean.to(acc), bn.running_var.to(acc)
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.to(acc)
    shift = -mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias.to(acc)
    folded = (w * scale[:, None]).reshape(weight.shape)
    return folded.to(weight.dtype), shift.to(weight.dtype)


def _reset_attention_parameters(
    qkv: nn.Conv3d, proj: nn.Conv3d, bn: nn.BatchNorm3d, *, zero_init: bool
) -> None:
    """Kaiming-normal convolutions, zero bias; BN scale zero when ``zero_init`` (identity start)."""
    nn.init.kaiming_normal_(qkv.weight, mode="fan_out", nonlinearity="relu")
    nn.init.zeros_(qkv.bias)
    nn.init.kaiming_normal_(proj.weight, mode="fan_out", nonlinearity="relu")
    bn.reset_parameters()
    if zero_init:
        nn.init.zeros_(bn.weight)


class DoubleAttention(nn.Module):
    """The double attention block (A²-block), Eq. 1-7 of the paper.

    φ, θ and ρ are one fused 1×1×1 convolution producing m + 2n channels (one read of X).
    ``precision="autocast"`` (default) runs the softmaxes and products in the autocast dtype
    (bf16 under ``bf16-mixed``; softmax and GEMMs accumulate in float32 internally), which
    stays within 1e-2 (relative to the output's scale) of a float64 reference
    (tests/test_attention.py); ``"float32"`` promotes them to float32. On a channels-last input
    the products write Z positions-major, so the output projection reads it without a copy.

    Association cost (multiply-adds per sample, see :func:`association_cost`):
    left ``2·m·n·L`` with an m×n intermediate; right ``(m+n)·L²`` with an L×L intermediate.
    ``association="auto"`` picks left when ``2·m·n·L <= (m+n)·L²`` (i.e. unless
    L < 2mn/(m+n)), which is left for every realistic feature map; on CUDA it instead times both
    orders once per shape, dtype and device (a one-time sync, cached; the cost model under
    ``torch.compile`` tracing or where the L×L matrix would exceed 1 GiB). The left path never
    materialises an L×L tensor.

    Added cost of one block over L positions (multiply-adds, BN and softmax not counted):
    projections ``c·(m+2n)·L + m·c·L`` (= ``4·c·m·L`` for m = n) and products ``2·m·n·L``.
    Parameters: ``c·(m+2n) + (m+2n)`` (fused conv with bias) ``+ m·c`` (output conv) ``+ 2·c``
    (output BN).

    Args:
        in_channels: Channels c of the input (and output).
        m: Channels of the feature maps A = φ(X); default c/4.
        n: Number of attention maps / global descriptors; default c/4.
        association: ``"left"`` (Eq. 6), ``"right"`` (Eq. 7) or ``"auto"`` (the faster order:
            timed on CUDA, by cost elsewhere).
        zero_init: Initialise the output BN scale to zero (the block starts as the identity).
        precision: ``"autocast"`` or ``"float32"``: dtype of the softmaxes and products.
        fold_bn: Fold the output BN into the output convolution (:func:`folded_bn_projection`:
            its batch statistics from Z's m×m covariance), so the block is GEMMs, two softmaxes
            and the residual add. The same function and state dict; not with SyncBatchNorm.
    """

    def __init__(
        self,
        in_channels: int,
        m: int | None = None,
        n: int | None = None,
        association: Association = "left",
        *,
        zero_init: bool = True,
        precision: Precision = "autocast",
        fold_bn: bool = False,
    ) -> None:
        super().__init__()
        if association not in ("left", "right", "auto"):
            raise ValueError(f"association must be 'left', 'right' or 'auto', got {association!r}")
        self.in_channels = in_channels
        self.m = m if m is not None else max(1, in_channels // 4)
        self.n = n if n is not None else max(1, in_channels // 4)
        if precision not in ("autocast", "float32"):
            raise ValueError(f"precision must be 'autocast' or 'float32', got {precision!r}")
        self.association = association
        self.precision = precision
        # φ, θ, ρ fused: output channels [0, m) are φ, [m, m+n) θ, [m+n, m+2n) ρ.
        self.qkv = Conv3d(in_channels, self.m + 2 * self.n, kernel_size=1, bias=True)
        self.proj = Conv3d(self.m, in_channels, kernel_size=1, bias=False)
        self.bn = BatchNorm3d(in_channels)
        self.zero_init = zero_init
        self.fold_bn = fold_bn
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_attention_parameters(self.qkv, self.proj, self.bn, zero_init=self.zero_init)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, m={self.m}, n={self.n}, "
            f"association={self.association!r}, precision={self.precision!r}"
            + (", fold_bn=True" if self.fold_bn else "")
        )

    def _choose(self, length: int) -> str:
        """The order by multiply-adds (``association_cost``) unless fixed."""
        if self.association != "auto":
            return self.association
        cost = association_cost(self.m, self.n, length)
        return "left" if cost["left"] <= cost["right"] else "right"

    def _choose_timed(self, a: Tensor, b: Tensor, v: Tensor, positions_major: bool) -> str:
        """``auto`` on a timed device: both orders' forward timed once per shape, then cached."""
        if (
            self.association != "auto"
            or a.device.type not in TIMED_AUTO_DEVICES
            or torch.compiler.is_compiling()  # traced code keeps the cost model's constant
        ):
            return self._choose(a.shape[-1])
        n, length = a.shape[0], a.shape[-1]
        key = (str(a.device), a.dtype, n, self.m, self.n, length, positions_major)
        if key in _TIMED_CHOICE:
            return _TIMED_CHOICE[key]
        right_bytes = n * length * length * a.element_size()
        if right_bytes > _RIGHT_TIMING_MAX_BYTES or (
            a.is_cuda and torch.cuda.is_current_stream_capturing()
        ):
            return self._choose(length)
        times = {}
        with torch.no_grad():
            for order in ("left", "right"):
                for _ in range(2):  # warm-up, then timed
                    torch.cuda.synchronize(a.device) if a.is_cuda else None
                    start = time.perf_counter()
                    for _ in range(3):
                        self.aggregate(a, b, v, order, positions_major=positions_major)
                    torch.cuda.synchronize(a.device) if a.is_cuda else None
                times[order] = time.perf_counter() - start
        _TIMED_CHOICE[key] = min(times, key=times.get)
        return _TIMED_CHOICE[key]

    def descriptors(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The block's three maps for ``x`` (4-D or 5-D).

        Returns:
            ``(A, B, V)`` shaped (N, m, L), (N, n, L), (N, n, L), in the block's precision:
            A = φ(X); B = softmax over positions of θ(X) (each row sums to 1 over L);
            V = softmax over descriptors of ρ(X) (each column sums to 1 over n).
        """
        x5, _ = _as_video(x)
        qkv = self.qkv(x5).flatten(2)  # (N, m+2n, L); a view also when channels-last
        dtype = _compute_dtype(qkv, self.precision)
        with _no_autocast(qkv.device.type):
            a, b, v = self._split(qkv.to(dtype), rows=channels_last_clip(x5))
            b = torch.softmax(b, dim=2)  # (N, n, L): distribution over positions (gather)
            v = torch.softmax(v, dim=1)  # (N, n, L): distribution over descriptors (distribute)
        return a, b, v

    def _split(self, qkv: Tensor, rows: bool) -> tuple[Tensor, ...]:
        """A, B, V (N, m|n, L) from the fused projection's (N, m+2n, L).

        ``rows`` (a channels-last clip): split its (N, L, m+2n) rows, so the gradient the three
        maps join into is stored channels-last like X. Split by channels it was channels-first,
        and cuDNN's convolution backward copies a gradient into its input's layout (such copies
        took 18 % of the compiled block's device time at res2 on an H200).
        """
        widths = [self.m, self.n, self.n]
        if rows:
            return tuple(t.mT for t in torch.split(qkv.mT, widths, dim=2))
        return torch.split(qkv, widths, dim=1)

    def aggregate(
        self,
        a: Tensor,
        b: Tensor,
        v: Tensor,
        association: str | None = None,
        *,
        positions_major: bool = False,
    ) -> Tensor:
        """Z = A·Bᵀ·V in the chosen association order.

        Args:
            a: (N, m, L).
            b: (N, n, L).
            v: (N, n, L).
            association: ``"left"`` or ``"right"``; default from the block's setting.
            positions_major: compute Zᵀ = Vᵀ·Gᵀ (resp. (BᵀV)ᵀ·Aᵀ) so that Z is stored (N, L, m),
                the layout a channels-last projection reads without a copy.

        Returns:
            Z shaped (N, m, L).
        """
        order = association or self._choose(a.shape[-1])
        with _no_autocast(a.device.type):
            if order == "left":
                g = torch.bmm(a, b.transpose(1, 2))  # (N, m, L)(N, L, n) -> (N, m, n)
                if positions_major:  # (N, L, n)(N, n, m) -> (N, L, m), seen as (N, m, L)
                    return torch.bmm(v.transpose(1, 2), g.transpose(1, 2)).transpose(1, 2)
                return torch.bmm(g, v)  # (N, m, n)(N, n, L) -> (N, m, L)
            if order == "right":
                bv = torch.bmm(b.transpose(1, 2), v)  # (N, L, n)(N, n, L) -> (N, L, L)
                if positions_major:  # (N, L, L)(N, L, m) -> (N, L, m), seen as (N, m, L)
                    return torch.bmm(bv.transpose(1, 2), a.transpose(1, 2)).transpose(1, 2)
                return torch.bmm(a, bv)  # (N, m, L)(N, L, L) -> (N, m, L)
        raise ValueError(f"association must be 'left' or 'right', got {order!r}")

    def project(self, z: Tensor) -> Tensor:
        """Output 1×1×1 convolution and BN: (N, m, *spatial) -> (N, C, *spatial)."""
        z5, was_image = _as_video(z)
        z5 = z5.to(self.proj.weight.dtype) if not _autocast_on(z5.device.type) else z5
        if self.fold_bn and _folds(self.bn):
            out = self.proj.forward_with(z5, *folded_bn_projection(self.proj.weight, self.bn, z5))
        else:
            out = self.bn(self.proj(z5))
        return out.squeeze(2) if was_image else out

    def forward(self, x: Tensor) -> Tensor:
        a, b, v = self.descriptors(x)
        rows = channels_last_clip(x)  # positions-major storage
        order = self._choose_timed(a, b, v, rows)
        z = self.aggregate(a, b, v, order, positions_major=rows)  # (N, m, L)
        z = z.reshape(x.shape[0], self.m, *x.shape[2:])  # (N, m, L) -> (N, m, *spatial), a view
        return x + self.project(z).to(x.dtype)


class NonLocal(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al. 2018, Eq. 1-3 with f = exp(θᵀφ)).

    y_i = Σ_j softmax_j(θ(x_i)ᵀ φ(x_j)) g(x_j); out = x + BN(W_z y), BN scale zero at init.
    Builds an L×L (or L×L/s) affinity, so it costs ``2·d·L·L'`` multiply-adds for the products
    (L' = L / pooled positions), against the A²-block's ``2·m·n·L``.

    Args:
        in_channels: Channels c of the input (and output).
        inter_channels: Embedding width d; default c/2 (Wang et al.).
        scale: Multiply the affinity by d^-1/2 before the softmax, as Wang et al.'s released
            code (``USE_SCALE``) and PySlowFast do.
        pool: Max-pool kernel (t, h, w) applied to φ and g to sub-sample the keys (Wang et al.
            use (1, 2, 2) in their "subsampling" variant); ``None`` keeps every position.
        zero_init: Initialise the output BN scale to zero (the block starts as the identity).
        precision: ``"autocast"`` or ``"float32"``: dtype of the softmax and the products (as in
            :class:`DoubleAttention`).
    """

    def __init__(
        self,
        in_channels: int,
        inter_channels: int | None = None,
        *,
        scale: bool = True,
        pool: tuple[int, int, int] | None = None,
        zero_init: bool = True,
        precision: Precision = "autocast",
    ) -> None:
        super().__init__()
        self.precision = precision
        self.in_channels = in_channels
        self.inter_channels = inter_channels or max(1, in_channels // 2)
        self.scale = scale
        d = self.inter_channels
        # θ, φ, g fused: [0, d) θ, [d, 2d) φ, [2d, 3d) g.
        self.qkv = Conv3d(in_channels, 3 * d, kernel_size=1, bias=True)
        self.pool = nn.MaxPool3d(pool, stride=pool) if pool is not None else None
        self.proj = Conv3d(d, in_channels, kernel_size=1, bias=False)
        self.bn = BatchNorm3d(in_channels)
        self.zero_init = zero_init
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_attention_parameters(self.qkv, self.proj, self.bn, zero_init=self.zero_init)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, inter_channels={self.inter_channels}"

    def forward(self, x: Tensor) -> Tensor:
        x5, was_image = _as_video(x)
        d = self.inter_channels
        qkv = self.qkv(x5)  # (N, 3d, T, H, W)
        theta, phi, g = torch.split(qkv, [d, d, d], dim=1)
        if self.pool is not None:
            phi, g = self.pool(phi), self.pool(g)
        theta, phi, g = theta.flatten(2), phi.flatten(2), g.flatten(2)  # (N, d, L), (N, d, L')
        dtype = _compute_dtype(qkv, self.precision)
        with _no_autocast(qkv.device.type):
            theta, phi, g = theta.to(dtype), phi.to(dtype), g.to(dtype)
            aff = torch.bmm(theta.transpose(1, 2), phi)  # (N, L, d)(N, d, L') -> (N, L, L')
            if self.scale:
                aff = aff * d**-0.5
            aff = torch.softmax(aff, dim=2)  # normalise over the keys j
            y = torch.bmm(g, aff.transpose(1, 2))  # (N, d, L')(N, L', L) -> (N, d, L)
        y = y.reshape(x5.shape[0], d, *x5.shape[2:]).to(qkv.dtype)  # (N, d, L) -> (N, d, T, H, W)
        out = x5 + self.bn(self.proj(y)).to(x5.dtype)
        return out.squeeze(2) if was_image else out


def attention_blocks(
    model: nn.Module, kinds: type | tuple[type, ...] = (DoubleAttention, NonLocal)
) -> dict[str, nn.Module]:
    """The attention blocks of ``model`` by module path (``layerS.i.attn``), in forward order.

    The one place that finds them (models, FLOP counts, attention maps, benchmarks).

    Args:
        model: any module.
        kinds: the block classes to find (default: A²-blocks and non-local blocks).
    """
    return {name: m for name, m in model.named_modules() if isinstance(m, kinds)}
