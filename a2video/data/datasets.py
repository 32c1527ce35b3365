"""Map-style clip datasets, rank-sharding samplers and the bad-video monitor.

One sample = one video. Train: one random clip ``(3, T, S, S)``, or with ``repeat=K`` K clips
``(K, 3, T, S, S)`` from one decode (repeated augmentation; :func:`collate_clips` flattens
them into the batch); val: the centre clip; test/predict: every view ``(V, 3, T, S, S)``
(V = clips x crops, clip-major) from one decode. Each sample opens its file once and closes it
before returning. Clips are normalised float, or uint8 with ``uint8=True`` (the DataModules
normalise on the device: :func:`transforms.normalize_batch`).

Randomness is per sample: the generator is seeded from ``(seed, epoch, index)``, so a batch
does not depend on which worker made it. :class:`ShardedSampler` hands ``(index, epoch)``
keys to the dataset so this also holds with persistent workers.

Bad videos never stop a run on their own. Every sample carries ``valid`` (its tensor comes
from a decoded video), ``failed`` (the requested video was unusable), ``failed_index`` and
``failed_reason``. In training a failed video is replaced by another, deterministically
chosen one (``valid`` stays True, ``failed`` True); in val/test it comes back as zeros with
``valid=False``. :class:`BadVideoMonitor` counts these flags in the main process, so the
counts are right whatever the number of workers, reports each file once and stops the run
when more than ``max_bad_fraction`` of a split is unusable.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, default_collate, get_worker_info

from . import sampling, transforms
from .annotations import RecordArray, VideoRecord, record_array
from .ring import BatchRing, SlotSamples
from .video import CHUNK_BYTES, VideoDecodeError, get_decoder, iter_frames, select_frames

log = logging.getLogger(__name__)

MODES = ("train", "val", "test")


class DataQualityError(RuntimeError):
    """Too many unusable videos: the run stops with the list of what failed."""


@dataclass
class ClipSpec:
    """How clips are cut and transformed (also what checkpoints record as ``clip_spec``)."""

    frames: int = 8
    stride: int = 8
    train_scale: tuple[int, int] = (256, 320)
    crop_size: int = 224
    test_scale: int = 256
    num_clips: int = 10
    num_crops: int = 3
    mean: tuple[float, float, float] = transforms.IMAGENET_MEAN
    std: tuple[float, float, float] = transforms.IMAGENET_STD
    flip: bool = True

    def __post_init__(self) -> None:
        self.train_scale = (int(self.train_scale[0]), int(self.train_scale[1]))
        self.mean, self.std = tuple(self.mean), tuple(self.std)  # type: ignore[assignment]
        if self.frames < 1 or self.stride < 1:
            raise ValueError(f"frames and stride must be >= 1, got {self.frames}, {self.stride}")
        if self.num_clips < 1 or self.num_crops < 1:
            raise ValueError(
                f"num_clips and num_crops (the test views: clips per video x crops per clip) "
                f"must be >= 1, got {self.num_clips}, {self.num_crops}"
            )
        if min(self.train_scale[0], self.test_scale) < self.crop_size:
            raise ValueError(
                f"short-side scales {self.train_scale} / {self.test_scale} must be >= "
                f"crop_size {self.crop_size}"
            )
        if self.train_scale[0] > self.train_scale[1]:
            raise ValueError(f"train_scale must be (min, max), got {self.train_scale}")

    @property
    def num_views(self) -> int:
        return self.num_clips * self.num_crops

    @property
    def centre_view(self) -> int:
        """Index of the centre clip's centre crop among the test views
        (:func:`a2video.data.sampling.centre_view`)."""
        return sampling.centre_view(self.num_clips, self.num_crops)

    def as_dict(self) -> dict:
        """Plain data (JSON, weights-only checkpoints); :meth:`from_dict` reads it back."""
        d = asdict(self)
        d["train_scale"], d["mean"], d["std"] = (
            list(self.train_scale),
            list(self.mean),
            list(self.std),
        )
        return d

    @classmethod
    def from_dict(cls, values: dict) -> ClipSpec:
        """The spec of :meth:`as_dict` output, also of older checkpoints (``size`` key)."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in known}
        if "crop_size" not in kwargs and "size" in values:
            kwargs["crop_size"] = int(values["size"])
        return cls(**kwargs)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample: a pure function of (seed, epoch, index)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF, int(index)])


class VideoClipDataset(Dataset):
    """Clips of the listed videos for one mode (``train``, ``val`` or ``test``).

    Args:
        records: the split's usable videos (from ``annotations``); kept as a
            :class:`~a2video.data.annotations.RecordArray` (``self.records``: indexing and
            iterating give the same :class:`VideoRecord` values), which forked DataLoader
            workers share with the training process instead of copying it page by page.
        mode: "train" (random clip + augmentation), "val" (centre clip) or "test" (all views).
        spec: clip shape and transform sizes.
        decoder: decoder name for :func:`get_decoder`.
        seed: base seed of the per-sample generators.
        max_retries: train only: how many replacement videos to try after a failure.
        repeat: train only: clips per decoded video, each with its own start, scale, crop and
            flip (PySlowFast / MAE-ST repeated augmentation); 1 gives one ``(3, T, S, S)`` clip.
        uint8: return uint8 clips (normalise later with :func:`transforms.normalize_batch`).
        frame_step: the videos keep every ``frame_step``-th frame of the original (a copy made
            by ``a2video prepare --frame-step``): ``spec.stride``, in original frames, is
            divided by it so a clip spans the same time.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        mode: str,
        spec: ClipSpec,
        decoder: str = "auto",
        seed: int = 0,
        max_retries: int = 10,
        repeat: int = 1,
        uint8: bool = False,
        frame_step: int = 1,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if frame_step < 1 or spec.stride % frame_step:
            raise ValueError(
                f"stride {spec.stride} (in original frames) is not a multiple of the videos' "
                f"frame_step {frame_step}: use a stride divisible by {frame_step}"
            )
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        self.records: RecordArray = record_array(records)
        self.mode = mode
        self.spec = spec
        self.decoder_name = decoder
        self.seed = seed
        self.max_retries = max_retries
        self.repeat = repeat if mode == "train" else 1
        self.uint8 = uint8
        self.stride = spec.stride // frame_step  # in the frames of the files read
        self._decoder = None  # made lazily in each worker process
        # the multi-view test sample (~80 frames; 2 GB of a 4K video) is resized in chunks of at
        # most this many decoded bytes (None: one); train and val clips (8-32 frames) are decoded
        # whole: chunked, decord's were 1.10-1.18x slower (benchmarks/RESULTS.md)
        self.chunk_bytes: int | None = CHUNK_BYTES

    def __len__(self) -> int:
        return len(self.records)

    @property
    def decoder(self):
        if self._decoder is None:
            self._decoder = get_decoder(self.decoder_name)
        return self._decoder

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_decoder"] = None
        return state

    def with_decoder(self, name: str) -> VideoClipDataset:
        """This dataset (same records, mode, spec, seed) decoding with decoder ``name``."""
        out = copy.copy(self)
        out.decoder_name, out._decoder = name, None
        return out

    # ------------------------------------------------------------------ loading
    def _decode(self, path: str, pick, whole, streamed=None):
        """Open ``path`` once, choose the clips' indices from ``num_frames`` with ``pick``,
        decode each distinct frame once, close, and give ``whole(frames, positions)`` of all
        frames at once (``positions``: each clip's positions in ``frames``).

        With ``streamed`` (the test sample), a reader that hands its frames over in chunks as it
        decodes them (decord, PyAV: :func:`~a2video.data.video.iter_frames`) gives
        ``streamed(chunks, flat, clips)`` instead, which shrinks each chunk before the next is
        decoded; the same bytes (tests/test_data_chunked.py).
        """
        reader = self.decoder.open(path)
        try:
            clips = pick(reader.num_frames)
            flat = sorted({i for clip in clips for i in clip})
            if streamed is not None and hasattr(reader, "iter_frames"):
                return streamed(iter_frames(reader, flat, self.chunk_bytes), flat, clips)
            frames = reader.get_frames(flat)  # each distinct frame decoded once
        finally:
            reader.close()
        pos = {v: k for k, v in enumerate(flat)}
        return whole(frames, [[pos[i] for i in clip] for clip in clips])

    def _resize_chunks(self, chunks, flat: list[int]) -> torch.Tensor:
        """The distinct frames ``(N, 3, h, w)`` resized to short side ``test_scale`` chunk by
        chunk as decoded (:func:`transforms.short_side_resize` of each chunk: the same bytes as
        of all frames at once), in ``flat`` order."""
        scale = self.spec.test_scale
        pos = {v: k for k, v in enumerate(flat)}
        first, out = None, None
        for idx, chunk in chunks:
            x = transforms.short_side_resize(transforms.to_tchw(chunk), scale)  # (m, 3, h, w)
            if first is None and out is None:
                first = (idx, x)  # all frames in one chunk (a small video): no copy
                continue
            if out is None:  # (N, 3, h, w) in channels-last memory, as the resize returns it
                _, c, h, w = x.shape
                out = transforms.to_tchw(torch.empty((len(flat), h, w, c), dtype=x.dtype))
                self._put(out, pos, *first)
                first = None
            self._put(out, pos, idx, x)
        if out is None:
            if first[0] != flat:
                raise RuntimeError(f"decoder handed over frames {first[0]}, not {flat}")
            return first[1]
        return out

    @staticmethod
    def _put(out: torch.Tensor, pos: dict[int, int], idx: list[int], x: torch.Tensor) -> None:
        for j, i in enumerate(idx):
            out[pos[i]].copy_(x[j])

    def _train_clip(self, record: VideoRecord, rng: np.random.Generator) -> torch.Tensor:
        """One augmented clip, or ``repeat`` of them ``(K, 3, T, S, S)`` from one decode."""
        s, k = self.spec, self.repeat
        out = self._decode(
            record.path,
            lambda n: sampling.repeated_train_clips(n, s.frames, self.stride, k, rng),
            lambda frames, clips: self.augment(frames, clips, rng),
        )
        return out[0] if k == 1 else transforms.stack_clips(out)

    def augment(
        self, frames: torch.Tensor, clips: list[list[int]], rng: np.random.Generator
    ) -> list[torch.Tensor]:
        """The training clips at ``clips`` (positions in the decoded ``frames``), each with its
        own draws of ``rng`` (scale, crop, flip), in order."""
        s = self.spec
        return [
            transforms.train_transform(
                select_frames(frames, positions),
                rng,
                s.train_scale,
                s.crop_size,
                s.mean,
                s.std,
                s.flip,
                self.uint8,
            )
            for positions in clips
        ]

    def _val_clip(self, record: VideoRecord) -> torch.Tensor:
        s = self.spec
        frames, (positions,) = self._decode(
            record.path,
            lambda n: [sampling.center_clip(n, s.frames, self.stride)],
            lambda frames, clips: (frames, clips),
        )
        return transforms.eval_transform(
            select_frames(frames, positions), s.test_scale, s.crop_size, s.mean, s.std, self.uint8
        )

    def _test_views(self, record: VideoRecord) -> torch.Tensor:
        s = self.spec
        views = (s.crop_size, s.num_crops, s.mean, s.std, self.uint8)

        def streamed(chunks, flat: list[int], clips: list[list[int]]) -> torch.Tensor:
            pos = {v: k for k, v in enumerate(flat)}
            x = self._resize_chunks(chunks, flat)
            return transforms.multi_view_crops(x, [[pos[i] for i in c] for c in clips], *views)

        return self._decode(
            record.path,
            lambda n: sampling.multi_clip(n, s.frames, self.stride, s.num_clips),
            lambda frames, clips: transforms.multi_view_transform(
                frames, clips, s.test_scale, *views
            ),
            streamed,
        )

    def empty(self) -> torch.Tensor:
        s = self.spec
        shape = (3, s.frames, s.crop_size, s.crop_size)
        if self.mode == "test":
            shape = (s.num_views, *shape)
        elif self.repeat > 1:
            shape = (self.repeat, *shape)
        return torch.zeros(shape, dtype=torch.uint8 if self.uint8 else torch.float32)

    # ------------------------------------------------------------------ sample
    def _key(self, key) -> tuple[int, int]:
        if isinstance(key, (tuple, list)):
            return int(key[0]), int(key[1])
        info = get_worker_info()
        # without an epoch from ShardedSampler: the DataLoader's per-epoch base seed
        base = (info.seed - info.id) if info is not None else torch.initial_seed()
        return int(key), int(base) & 0xFFFFFFFF

    def __getitems__(self, keys: Sequence) -> list[dict]:
        """A batch's samples (the DataLoader's batched fetch), with the ring slot its keys carry
        (:class:`~a2video.data.ring.SlotKeys`) for :func:`collate_clips`."""
        samples = [self[key] for key in keys]
        slot = getattr(keys, "slot", None)
        return samples if slot is None else SlotSamples(samples, slot)

    def __getitem__(self, key) -> dict:
        index, epoch = self._key(key)
        record = self.records[index]
        sample = {
            "label": record.label,
            "index": index,
            "valid": True,
            "failed": False,
            "failed_index": -1,
            "failed_reason": "",
        }
        try:
            if self.mode == "train":
                rng = sample_rng(self.seed, epoch, index)
                sample["video"] = self._train_clip(record, rng)
            elif self.mode == "val":
                sample["video"] = self._val_clip(record)
            else:
                sample["video"] = self._test_views(record)
            return sample
        except VideoDecodeError as err:
            sample.update(failed=True, failed_index=index, failed_reason=err.reason)
        if self.mode != "train":
            sample.update(video=self.empty(), valid=False)  # never dropped: listed as invalid
            return sample
        # train: replace by another video chosen from (seed, epoch, index), flagged as failed
        rng = sample_rng(self.seed + 1, epoch, index)
        for _ in range(self.max_retries):
            other = int(rng.integers(len(self.records)))
            if other == index:
                continue
            try:
                video = self._train_clip(self.records[other], sample_rng(self.seed, epoch, other))
            except VideoDecodeError:
                continue
            sample.update(video=video, label=self.records[other].label, index=other)
            return sample
        sample.update(video=self.empty(), valid=False)
        return sample


def collate_clips(samples: list[dict], repeat: int = 1, ring: BatchRing | None = None) -> dict:
    """The DataModules' collate: ``default_collate`` but for ``video``, stacked in the clips'
    own memory order (:func:`a2video.data.transforms.stack_clips`: a ``channels_last_3d`` batch,
    in shared memory in a worker).

    With ``repeat`` K > 1 (train samples of K clips each) the batch is flat: ``video``
    ``(b, K, 3, T, S, S)`` becomes ``(b * K, 3, T, S, S)`` (the K clips of a video side by
    side); ``label``, ``index`` and ``valid`` are repeated per clip. The failure flags
    (``failed``, ``failed_index``, ``failed_reason``) stay one per video, so the bad-video
    counters count videos, not clips.

    With a ``ring`` and samples that carry a slot (:meth:`VideoClipDataset.__getitems__` of a
    :class:`~a2video.data.ring.RingBatches` batch), the clips go into that slot of the ring
    (:meth:`BatchRing.pack`; :meth:`BatchRing.take` unpacks the batch in the training process).
    """
    batch = default_collate([{k: v for k, v in s.items() if k != "video"} for s in samples])
    if repeat > 1:
        for key in ("label", "index", "valid"):
            batch[key] = batch[key].repeat_interleave(repeat)
    videos = [s["video"] for s in samples]
    slot = getattr(samples, "slot", None)
    if ring is not None and slot is not None:
        clips = [c for v in videos for c in (v.unbind(0) if repeat > 1 else (v,))]
        return ring.pack(batch, slot, clips)
    video = transforms.stack_clips(videos, shared=get_worker_info() is not None)
    batch["video"] = video.reshape(-1, *video.shape[2:]) if repeat > 1 else video
    return batch


# ---------------------------------------------------------------------------- samplers
def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ShardedSampler(Sampler):
    """Rank-aware sampler: rank ``r`` of ``w`` gets ``order[r::w]``.

    With ``pad=False`` (val/test/predict) nothing is duplicated: ranks may get one index
    fewer, and every video is seen exactly once over all ranks. With ``pad=True`` (train) the
    order is padded from its start so every rank runs the same number of steps.
    ``yield_epoch`` makes it yield ``(index, epoch)`` keys so the dataset seeds per epoch.
    Rank and world size are read from ``torch.distributed`` when iterated, unless given.
    Lightning calls ``set_epoch`` every epoch. Use with
    ``Trainer(use_distributed_sampler=False)``.

    Resuming mid-epoch: :meth:`skip` drops this rank's first ``n`` keys of one epoch the next time
    that epoch is iterated, so the rest of the epoch is exactly what an uninterrupted run would
    have drawn (``len`` stays the full epoch's: Lightning's batch counters continue from the
    checkpoint).
    """

    def __init__(
        self,
        length: int,
        shuffle: bool = False,
        seed: int = 0,
        pad: bool = False,
        yield_epoch: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        on_epoch: Callable[[int], None] | None = None,
    ) -> None:
        self.length, self.shuffle, self.seed, self.pad = length, shuffle, seed, pad
        self.on_epoch = on_epoch  # e.g. reset the per-epoch failure counters
        self.yield_epoch = yield_epoch
        self._rank, self._world = rank, world_size
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, keys) to drop once, see skip()

    def skip(self, epoch: int, count: int) -> None:
        """Drop the first ``count`` keys of this rank the next time ``epoch`` is iterated.

        One-shot: the next ``__iter__`` consumes it whatever its epoch (a resume at an epoch's
        end continues with the next epoch, which is not shortened).
        """
        self._skip = (int(epoch), int(count))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.on_epoch is not None:
            self.on_epoch(epoch)

    def _rank_world(self) -> tuple[int, int]:
        rank, world = _dist_rank_world()
        return (
            self._rank if self._rank is not None else rank,
            self._world if self._world is not None else world,
        )

    def indices(self) -> list[int]:
        rank, world = self._rank_world()
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        if self.pad and world > 1 and order:
            total = math.ceil(self.length / world) * world
            order = (order * math.ceil(total / len(order)))[:total]
        shard = order[rank::world]
        if not shard and order:
            # Fewer videos than ranks: Lightning refuses a rank with an empty loader, so this rank
            # repeats one video, which the video-level metrics count once (deduplicated by index).
            shard = [order[rank % len(order)]]
        return shard

    def __iter__(self) -> Iterator:
        indices = self.indices()
        skip, self._skip = self._skip, None
        if skip is not None and skip[0] == self.epoch:
            indices = indices[skip[1] :]
        for i in indices:
            yield (i, self.epoch) if self.yield_epoch else i

    def __len__(self) -> int:
        rank, world = self._rank_world()
        if self.pad:
            return math.ceil(self.length / world)
        return max(len(range(rank, self.length, world)), min(self.length, 1))


# ---------------------------------------------------------------------------- monitor
@dataclass
class _StageCounts:
    seen: int = 0  # samples this epoch
    failed: int = 0  # samples whose video was unusable this epoch
    bad_files: dict[int, str] = field(default_factory=dict)  # index -> reason, whole run


class BadVideoMonitor:
    """Counts unusable videos from the batch flags (main process) and enforces a limit.

    With several processes each rank sees its own share of the videos, so the limit is decided
    on the union of the ranks' bad files (:meth:`sync`, a collective): every
    ``sync_every`` training batches (the ranks run as many) and at each epoch end, where every
    rank stops together with the same message. One process decides at every batch.

    Args:
        max_bad_fraction: the run stops once more than this share of a split's videos failed.
        paths: per stage, the list of video paths (to name each bad file once).
        fix: how to drop the bad videos (named in the stop message).
    """

    def __init__(
        self, max_bad_fraction: float = 0.05, paths: dict | None = None, fix: str = ""
    ) -> None:
        self.max_bad_fraction = max_bad_fraction
        self.paths: dict[str, Sequence[str]] = dict(paths or {})
        self.stages: dict[str, _StageCounts] = {}
        self.fix = fix or "list and drop them with `a2video check-data --write-clean DIR`"
        self.sync_every = 50
        self._batches = 0  # training batches since the last sync

    def set_paths(self, stage: str, paths: Sequence[str]) -> None:
        self.paths[stage] = paths

    def update(self, batch: dict, stage: str) -> None:
        counts = self.stages.setdefault(stage, _StageCounts())
        failed = batch.get("failed")
        if failed is None:
            return
        failed = torch.as_tensor(failed).view(-1)
        counts.seen += failed.numel()
        counts.failed += int(failed.sum())
        if bool(failed.any()):
            indices = torch.as_tensor(batch["failed_index"]).view(-1).tolist()
            reasons = batch.get("failed_reason") or [""] * len(indices)
            paths = self.paths.get(stage, [])
            for flag, idx, reason in zip(failed.tolist(), indices, reasons, strict=False):
                if not flag or idx in counts.bad_files:
                    continue
                counts.bad_files[idx] = reason
                path = paths[idx] if 0 <= idx < len(paths) else f"#{idx}"
                action = "replaced by another video" if stage == "train" else "returned as invalid"
                log.warning("unusable video (%s, %s): %s: %s", stage, action, path, reason)
        if _dist_rank_world()[1] == 1:
            self.enforce(stage)
        elif stage == "train":
            self._batches += 1
            if self._batches >= self.sync_every:  # every rank at the same batch
                self.sync(stage)

    def sync(self, stage: str) -> None:
        """Join the ranks' bad files of ``stage`` (a collective: every rank calls it) and
        enforce the limit on them; one process: just enforce."""
        counts = self.stages.setdefault(stage, _StageCounts())
        self._batches = 0
        if _dist_rank_world()[1] > 1:
            gathered: list = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, sorted(counts.bad_files.items()))
            merged = dict(counts.bad_files)
            for items in gathered:
                for idx, reason in items or ():
                    merged.setdefault(int(idx), reason)
            counts.bad_files = dict(sorted(merged.items()))  # the same on every rank
        self.enforce(stage)

    def enforce(self, stage: str) -> None:
        """Raise :class:`DataQualityError` (one line) once more than ``max_bad_fraction`` of the
        split's videos were unusable."""
        counts = self.stages.get(stage)
        paths = self.paths.get(stage, [])
        total = len(paths)
        if counts is None or not total or len(counts.bad_files) <= self.max_bad_fraction * total:
            return
        bad = len(counts.bad_files)
        idx = min(counts.bad_files)
        reason = counts.bad_files[idx]
        example = (paths[idx] if 0 <= idx < total else f"#{idx}") + (
            f" ({reason})" if reason else ""
        )
        raise DataQualityError(
            f"{bad} of {total} {stage} videos ({bad / total:.1%}) are unusable, more than "
            f"data.max_bad_fraction {self.max_bad_fraction}, e.g. {example}; "
            f"{self.fix}, or raise --data.max_bad_fraction"
        )

    def counters(self, stage: str) -> dict[str, int]:
        """``seen`` / ``failed`` samples this epoch and distinct ``bad_files`` of the run."""
        c = self.stages.get(stage, _StageCounts())
        return {"seen": c.seen, "failed": c.failed, "bad_files": len(c.bad_files)}

    def restore_bad_files(self, stage: str, files: dict[int, str]) -> None:
        """Put back the unusable videos a resumed run had met (index -> reason)."""
        counts = self.stages.setdefault(stage, _StageCounts())
        for idx, reason in files.items():
            counts.bad_files.setdefault(int(idx), reason)

    def reset_epoch(self, stage: str, epoch: int | None = None) -> None:
        c = self.stages.get(stage)
        if c is not None:
            c.seen = c.failed = 0

    def bad_videos(self, stage: str) -> dict[str, str]:
        """Path -> reason of every unusable video met in ``stage``."""
        paths = self.paths.get(stage, [])
        c = self.stages.get(stage, _StageCounts())
        return {(paths[i] if i < len(paths) else f"#{i}"): r for i, r in c.bad_files.items()}
