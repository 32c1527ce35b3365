"""``KineticsDataModule`` and ``UCF101DataModule``.

Both are map-style (every loader has a length), shard by rank themselves without padding in
val/test/predict (use ``Trainer(use_distributed_sampler=False)``), and know ``num_classes``
and ``class_names`` right after ``__init__`` (read from the annotation files), so LightningCLI
can link ``data.num_classes -> model.num_classes``.

Batches (dicts):
- train/val: ``video`` (B, 3, T, S, S), ``label``, ``index``, ``valid``, ``failed``,
  ``failed_index``.
- test/predict: ``video`` (B, V, 3, T, S, S) with V = num_clips * num_crops, clip-major.

Workers return uint8 clips (a quarter of the bytes over PCIe, less work per clip); the
DataModule's ``on_after_batch_transfer`` converts them to normalised float on the device, so the
model sees the same floats as before, or hands them on as uint8 to a compiled VideoClassifier,
which normalises them in its graph (:func:`to_model_input`). ``normalize_on_device=False``
normalises in the workers, for code that iterates the loaders directly. With
``repeat_clips=K`` a train batch of ``batch_size`` clips holds ``batch_size / K`` videos, K clips
of each (see docs/data.md).

The DataModule implements ``on_before_batch_transfer`` to count unusable videos (see
:class:`BadVideoMonitor`); ``data_counters(stage)`` gives the numbers to log per epoch.

``decoder="nvdec"`` decodes on the GPU: with ``num_workers=0`` in the training process, with
``num_workers > 0`` as a :class:`~a2video.data.mixed.MixedLoader` (train only: a share
``nvdec_share`` of the batches from NVDEC threads, the rest from CPU workers; val/test/predict
on the CPU workers with ``decoder="auto"``).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from . import annotations as ann
from . import listing
from .datasets import (
    BadVideoMonitor,
    ClipSpec,
    ShardedSampler,
    VideoClipDataset,
    collate_clips,
)
from .mixed import KeyBatches, MixedLoader
from .prepare import LAYOUT_MARKERS, not_this_layout, other_layout, records_prepared
from .ring import BatchRing, RingDataLoader
from .transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_batch
from .video import check_decoder
from .workers import sigterm_blocked, worker_init

log = logging.getLogger(__name__)

_STAGE_OF = {
    "sanity_check": "val",
    "validate": "val",
    "train": "train",
    "test": "test",
    "predict": "predict",
}


# the splits a stage reads (None: a DataModule set up without a Trainer)
_SPLITS_OF = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("predict",),
    None: ("train", "val", "test"),
}

# what a layout's data_root holds (said when it does not exist)
_ROOT_HOLDS = {
    "kinetics": "train/, val/ and annotations/",
    "ucf101": "UCF-101/ and ucfTrainTestlist/",
}
# the entry point that trains on a layout (said when a root of the other layout is given)
_ENTRY_POINTS = {"kinetics": "train.py", "ucf101": "finetune_ucf.py"}


def to_model_input(batch, mean, std, module=None):
    """A batch's uint8 ``video`` as the model takes it: normalised float on its device.

    Left uint8 where ``module.takes_uint8(mean, std)`` says its forward normalises uint8 clips
    itself with the same mean and std (a compiled ``VideoClassifier``: the normalisation runs in
    its compiled graph, fused with the layout change and the first layer), so the floats the
    network sees come from the same :func:`normalize_batch` either way.
    """
    takes_uint8 = getattr(module, "takes_uint8", None)
    if callable(takes_uint8) and takes_uint8(mean, std):
        return batch
    if isinstance(batch, dict) and getattr(batch.get("video"), "dtype", None) == torch.uint8:
        batch["video"] = normalize_batch(batch["video"], mean, std)
    return batch


class _StartsAtFirstBatch(RingDataLoader):
    """A DataLoader whose iterator (workers, sampler read) starts at the first batch.

    Lightning makes the train iterator (``FitLoop.setup_data``) before ``on_train_start``, where
    :class:`~a2video.training.resume.ResumeState` calls ``sampler.skip``; a DataLoader with
    workers reads its sampler as soon as its iterator is made, so without this a resumed epoch
    would start over from its first batch. The generator ``__iter__`` of
    :class:`~a2video.data.ring.RingDataLoader` defers it so.
    """

    def _get_iterator(self):
        with sigterm_blocked():  # the workers leave a job-wide SIGTERM to this process
            return super()._get_iterator()


class VideoDataModule(L.LightningDataModule):
    """Shared machinery; subclasses read the annotations of one layout."""

    layout = "video"

    def __init__(
        self,
        data_root: str,
        annotation_dir: str | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        predict_split: str | None = None,
        # clip
        frames: int = 8,
        stride: int = 8,
        train_scale: tuple[int, int] = (256, 320),
        crop_size: int = 224,
        test_scale: int = 256,
        num_clips: int = 10,
        num_crops: int = 3,
        flip: bool = True,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        # loading
        batch_size: int = 8,
        test_batch_size: int = 1,
        num_workers: int = 4,
        decoder: str = "auto",
        pin_memory: bool | None = None,
        persistent_workers: bool = False,
        seed: int | None = None,
        max_bad_fraction: float = 0.05,
        repeat_clips: int = 1,
        normalize_on_device: bool = True,
        nvdec_share: float = 0.3,
        nvdec_threads: int = 4,
        batch_ring: bool | None = None,
    ) -> None:
        """The clip, loading and bad-video arguments are listed in docs/data.md; the decoding ones:

        Args:
            test_split: None (default): the val split (Kinetics' test labels are withheld), so
                a ``val_split`` given for the fit is the split ``test`` scores too;
                ``predict_split`` None follows the test split.
            decoder: "auto" (decord, else PyAV), "decord", "pyav", "torchcodec" or "nvdec".
            num_workers: CPU DataLoader worker processes. With ``decoder="nvdec"``: 0 decodes
                everything with NVDEC in the training process; more mixes both sources.
            nvdec_share: with ``decoder="nvdec"`` and ``num_workers > 0``: the fraction of the
                train batches NVDEC decodes, the rest on the workers (``decoder="auto"``). Set it
                to ``nvdec_rate / (nvdec_rate + cpu_rate)`` from ``bench_nvdec.py --cpu-workers``.
            nvdec_threads: NVDEC decoding threads of the mixed loader (a GPU has several engines).
            batch_ring: the train workers write their uint8 batches into page-locked shared
                memory that the GPU copies from (:mod:`a2video.data.ring`), instead of the
                pin-memory thread copying each batch once more. None (default): where the train
                batches go to a GPU from workers; True also on the CPU (for tests).
        """
        super().__init__()
        self.save_hyperparameters()
        for name, value, least, what in (
            ("batch_size", batch_size, 1, ""),
            ("test_batch_size", test_batch_size, 1, ""),
            ("num_workers", num_workers, 0, ""),
            # the clip: checked here, before any checkpoint or video is read, for every stage
            ("frames", frames, 1, " (the frames of a clip)"),
            ("stride", stride, 1, " (the frame step within a clip)"),
            ("crop_size", crop_size, 1, " (the side of a crop, in pixels)"),
            ("num_clips", num_clips, 1, " (the test's clips per video; 1 for a single clip)"),
            ("num_crops", num_crops, 1, " (the test's crops per clip; 1 for the centre crop)"),
        ):
            if value < least:
                raise ValueError(f"--data.{name} {value}: it must be >= {least}{what}")
        if repeat_clips < 1 or batch_size % repeat_clips:
            raise ValueError(
                f"repeat_clips={repeat_clips} must be >= 1 and divide batch_size={batch_size} "
                "(a batch holds batch_size / repeat_clips videos, repeat_clips clips of each)"
            )
        self.repeat_clips = repeat_clips
        self.normalize_on_device = normalize_on_device
        if batch_ring and not normalize_on_device:
            raise ValueError(
                "--data.batch_ring true needs uint8 clips from the workers: leave "
                "--data.normalize_on_device true"
            )
        self.batch_ring = batch_ring
        self._ring: BatchRing | None = None
        if not 0.0 <= nvdec_share <= 1.0 or nvdec_threads < 1:
            raise ValueError(
                f"nvdec_share={nvdec_share} must be in [0, 1] and nvdec_threads={nvdec_threads} "
                ">= 1 (the share of train batches NVDEC decodes, and its decoding threads)"
            )
        # decoder='nvdec' with workers: NVDEC threads in this process + CPU workers (MixedLoader)
        self.mixed = decoder == "nvdec" and num_workers > 0
        self.nvdec_share, self.nvdec_threads = nvdec_share, nvdec_threads
        # one-line error here, not in a worker, where it cannot run
        check_decoder(decoder, option="--data.decoder")
        if decoder == "nvdec" and not num_workers:  # decodes on the GPU in the main process
            pin_memory = False
        self.data_root = str(data_root)
        self.annotation_dir = annotation_dir
        self.splits = {
            "train": train_split,
            "val": val_split,
            "test": test_split or val_split,
            "predict": predict_split or test_split or val_split,
        }
        self.spec = ClipSpec(
            frames,
            stride,
            tuple(train_scale),
            crop_size,
            test_scale,
            num_clips,
            num_crops,
            tuple(mean),
            tuple(std),
            flip,
        )
        self.batch_size, self.test_batch_size = batch_size, test_batch_size
        self.num_workers, self.decoder = num_workers, decoder
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.seed = 0 if seed is None else int(seed)  # the CLIs: seed_everything (docs/data.md)
        fix = (
            f"list and drop them with `a2video check-data --layout {self.layout} {data_root} "
            "--write-clean DIR`, then pass --data.annotation_dir DIR"
        )
        self.monitor = BadVideoMonitor(max_bad_fraction, fix=fix)
        self.mixed_loader: MixedLoader | None = None
        self.datasets: dict[str, VideoClipDataset] = {}
        self.missing: dict[str, int] = {}
        if not os.path.isdir(self.data_root):
            raise ann.AnnotationError(
                self.data_root,
                "no such folder",
                fix=f"pass --data.data_root DIR (data_root=), the {self.layout} dataset's folder "
                f"({_ROOT_HOLDS.get(self.layout, 'its videos')})",
            )
        try:
            self.class_names: list[str] = self._read_class_names()
        except ann.AnnotationError as err:
            other = self._other_layout_error(err)
            if other is None:
                raise
            raise other from err
        if not self.class_names:
            raise ann.AnnotationError(self.data_root, "no classes found")

    def _other_layout_error(self, err: ann.AnnotationError) -> ann.AnnotationError | None:
        """A root of the other layout (a UCF-101 folder given to Kinetics, or the reverse),
        named as such with its entry point, in place of ``err`` (an annotation file not found
        in this layout's default annotation folder); None where ``err`` is about anything else."""
        if self.annotation_dir is not None or self.layout not in LAYOUT_MARKERS:
            return None
        own = os.path.join(self.data_root, LAYOUT_MARKERS[self.layout])
        if not os.path.abspath(err.file).startswith(os.path.abspath(own)):
            return None
        other = other_layout(self.data_root, self.layout)
        if other is None:
            return None
        return ann.AnnotationError(
            self.data_root,
            not_this_layout(self.layout, other),
            fix=f"use {_ENTRY_POINTS[other]} for {other} data, or pass --data.data_root DIR "
            f"(data_root=), the {self.layout} dataset's folder ({_ROOT_HOLDS[self.layout]})",
        )

    # ------------------------------------------------------------------ to override
    def _read_class_names(self) -> list[str]:
        raise NotImplementedError

    def _read_split(self, stage: str) -> ann.SplitAnnotations:
        raise NotImplementedError

    # ------------------------------------------------------------------ public attributes
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def clip_spec(self) -> dict:
        return self.spec.as_dict()

    def data_counters(self, stage: str = "train") -> dict[str, int]:
        """Per-epoch ``seen``/``failed`` samples, run-wide ``bad_files``, ``missing`` listings."""
        c = self.monitor.counters(stage)
        c["missing"] = self.missing.get(stage, 0)
        return c

    def bad_videos(self, stage: str = "test") -> dict[str, str]:
        return self.monitor.bad_videos(stage)

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        for name in _SPLITS_OF[stage]:
            if name in self.datasets:
                continue
            split = self._read_split(name)
            ann.require_nonempty(split, f"{self.layout} {name} split")
            self.missing[name] = len(split.missing)
            mode = {"train": "train", "val": "val"}.get(name, "test")
            records = ann.RecordArray(split.records)  # shared by forked workers, not copied
            del split
            # 1 and None unless the videos lie in an `a2video prepare` copy (root or video folder)
            frame_step, short_side = records_prepared(records.paths)
            self.datasets[name] = VideoClipDataset(
                records,
                mode,
                self.spec,
                "auto" if self.mixed else self.decoder,  # workers decode on the CPU
                self.seed,
                repeat=self.repeat_clips,  # the dataset keeps 1 outside train
                uint8=self.normalize_on_device,
                frame_step=frame_step,
            )
            self.monitor.set_paths(name, records.paths)
            self._warn_upscaled(name, short_side)
        if stage == "fit":
            self._write_class_names()

    def _warn_upscaled(self, name: str, side: int | None) -> None:
        """One warning when a split's videos lie in an ``a2video prepare`` copy made smaller
        (``side``: its ``--short-side``) than the scale its clips are read at: every clip is
        then upscaled from the copy."""
        spec = self.spec
        scale = spec.train_scale[1] if name == "train" else spec.test_scale
        if side is None or scale <= side or not ann.first_process():
            return
        option = "data.train_scale" if name == "train" else "data.test_scale"
        log.warning(
            "%s split: its videos are an `a2video prepare` copy with a short side of at most %d "
            "px, and %s reaches %d: its clips are upscaled %.2gx from the copy (detail the "
            "original had is lost); prepare the copy with --short-side %d, or lower %s",
            name, side, option, scale, scale / side, scale, option,
        )  # fmt: skip

    def _write_class_names(self) -> None:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return
        log_dir = trainer.log_dir  # on every rank: Trainer.log_dir broadcasts (a collective)
        if trainer.is_global_zero and log_dir:
            self.save_class_names(log_dir)

    def save_class_names(self, directory: str | os.PathLike) -> Path:
        """Write ``class_names.txt`` (one per line, label order) into ``directory``."""
        path = Path(directory) / "class_names.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.class_names) + "\n", encoding="utf-8")
        return path

    def state_dict(self) -> dict:
        # Saved by Lightning inside every checkpoint.
        return {"layout": self.layout, "class_names": self.class_names, "clip_spec": self.clip_spec}

    def load_state_dict(self, state_dict: dict) -> None:
        saved = state_dict.get("class_names")
        if saved is not None and list(saved) != self.class_names:
            log.warning("checkpoint class list differs from the annotation files' class list")

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        trainer = getattr(self, "trainer", None)
        stage = "train"
        if trainer is not None:
            stage = _STAGE_OF.get(
                str(trainer.state.stage.value if trainer.state.stage else ""), "train"
            )
        self.count_batch(batch, stage)
        return batch

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """uint8 clips -> normalised float, on the device the batch was moved to (or left uint8
        for a compiled VideoClassifier, which normalises them inside its graph: see
        :func:`to_model_input`)."""
        trainer = getattr(self, "trainer", None)
        module = trainer.lightning_module if trainer is not None else None
        if self._ring is not None:  # the copy out of its slot is launched: free once done
            batch = self._ring.released(batch)
        return to_model_input(batch, self.spec.mean, self.spec.std, module)

    def normalize(self, batch):
        """A batch's uint8 ``video`` as normalised float (the clip spec's mean/std)."""
        return to_model_input(batch, self.spec.mean, self.spec.std)

    def check_bad_videos(self, stage: str) -> None:
        """At an epoch's end, on every rank: the bad-video limit over all ranks' bad files
        (:meth:`BadVideoMonitor.sync`, a collective), so every rank stops together."""
        self.monitor.sync(stage)

    def count_batch(self, batch: dict, stage: str) -> dict:
        """Count a batch's failure flags (raises DataQualityError past the limit); drops strings."""
        if isinstance(batch, dict):
            self.monitor.update(batch, stage)
            batch.pop("failed_reason", None)
        return batch

    def teardown(self, stage: str | None = None) -> None:
        if self.mixed_loader is not None:
            self.mixed_loader.close()  # joins the NVDEC threads of an unfinished epoch
        if self._ring is not None and stage in (None, "fit"):
            self._ring.wait()  # the last copies out of it, before its memory can go
            self._ring = None

    # ------------------------------------------------------------------ loaders
    def _loader(
        self,
        name: str,
        batch_size: int,
        sampler: ShardedSampler | None = None,
        batch_sampler: KeyBatches | None = None,
        ring: BatchRing | None = None,
    ) -> DataLoader:
        if name not in self.datasets:
            self.setup({"train": "fit", "val": "validate"}.get(name, name))
        self.monitor.reset_epoch(name)
        repeat = self.datasets[name].repeat
        loader = _StartsAtFirstBatch(
            self.datasets[name],
            # videos; each gives `repeat` clips (1: the DataLoader's default, with batch_sampler)
            batch_size=batch_size // repeat if batch_sampler is None else 1,
            collate_fn=functools.partial(collate_clips, repeat=repeat, ring=ring),
            sampler=sampler,
            batch_sampler=batch_sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and ring is None,  # a ring is page-locked already
            persistent_workers=self.persistent_workers,
            worker_init_fn=worker_init,
            drop_last=False,
            # The loader's per-iterator base seed comes from its own generator, not torch's global
            # one: starting an epoch or a validation run leaves dropout's RNG stream untouched,
            # so a resumed run (which restores that stream) matches an uninterrupted one.
            generator=torch.Generator().manual_seed(self.seed),
        )
        loader.ring = ring
        return loader

    def _train_ring(self) -> BatchRing | None:
        """The train loader's :class:`BatchRing` (made once): where ``batch_ring`` is None, when
        the train batches go from workers to a GPU; where it is True, always."""
        if self._ring is not None:
            return self._ring
        trainer = getattr(self, "trainer", None)
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        wanted = self.batch_ring
        if wanted is None:
            wanted = (
                self.num_workers > 0
                and self.pin_memory
                and self.normalize_on_device
                and device.type == "cuda"
            )
        if not wanted:
            return None
        try:
            self._ring = BatchRing.for_loader(
                self.batch_size,
                self.spec.frames,
                self.spec.crop_size,
                self.num_workers,
                pin=device.type == "cuda",
            )
        except RuntimeError as err:  # no room in /dev/shm, or the driver would not page-lock it
            log.warning(
                "--data.batch_ring: %s; the train batches go through the pin-memory thread", err
            )
            return None
        return self._ring

    def _sampler(self, name: str, **kwargs) -> ShardedSampler:
        # Lightning calls set_epoch every epoch (train) and every evaluation run: the
        # per-epoch failure counters restart there.
        reset = functools.partial(self.monitor.reset_epoch, name)
        return ShardedSampler(len(self._dataset(name)), on_epoch=reset, **kwargs)

    def train_dataloader(self) -> DataLoader | MixedLoader:
        sampler = self._sampler("train", shuffle=True, seed=self.seed, pad=True, yield_epoch=True)
        ring = self._train_ring()
        if not self.mixed:
            return self._loader("train", self.batch_size, sampler, ring=ring)
        if self.mixed_loader is not None:
            self.mixed_loader.close()
        cpu = self._loader("train", self.batch_size, batch_sampler=KeyBatches(), ring=ring)
        dataset = self.datasets["train"]
        self.mixed_loader = MixedLoader(
            sampler,
            self.batch_size // dataset.repeat,  # videos per batch, as the DataLoader's
            cpu,
            dataset.with_decoder("nvdec"),
            self.nvdec_share,
            self.nvdec_threads,
        )
        return self.mixed_loader

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.batch_size, self._sampler("val"))

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.test_batch_size, self._sampler("test"))

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", self.test_batch_size, self._sampler("predict"))

    def _dataset(self, name: str) -> VideoClipDataset:
        if name not in self.datasets:
            self.setup({"train": "fit", "val": "validate"}.get(name, name))
        return self.datasets[name]


class KineticsDataModule(VideoDataModule):
    """Kinetics-400/600/700 from the official CSVs (flat or per-class video folders).

    ``data_root`` holds the split folders (``train/``, ``val/``, ``test/``; MMAction2's
    ``videos_train/`` also works); ``annotation_dir`` defaults to ``data_root/annotations``.
    A split may also be a path to a CSV, or to a ``path label`` .txt list (paths relative
    to ``data_root``). The class list is the sorted labels of the train CSV.
    """

    layout = "kinetics"

    def __init__(self, data_root: str, *, listing_cache: bool = True, **kwargs) -> None:
        """The arguments of :class:`VideoDataModule` (its split defaults are Kinetics'), and:

        Args:
            listing_cache: list the video folders of the CSV splits once per node (in
                ``prepare_data``) into a file in the node's temporary folder that every process's
                ``setup`` reads (:mod:`a2video.data.listing`); false: every process lists them
                (for a file system that keeps no folder modification times).
        """
        self.listing_cache = listing_cache
        # split -> (CSV, video folder, recursive), found once: prepare_data's look-ahead and
        # setup's read share it (its "no split folder found" line is said once, not twice)
        self._found_splits: dict[str, tuple[Path, Path, bool]] = {}
        super().__init__(data_root, **kwargs)

    def _annotation_dir(self) -> str:
        return self.annotation_dir or os.path.join(self.data_root, "annotations")

    # The train CSV's rows, parsed by __init__ for the class list, kept for setup's read of the
    # same file (a Kinetics-700 CSV is parsed once, not twice) and dropped at setup's end.
    _csv_rows: tuple[tuple, ann.KineticsRows] | None = None

    def _read_class_names(self) -> list[str]:
        split = self.splits["train"]
        if ann.is_path_label_list(split):
            return ann.path_label_list_classes(split, self.data_root)
        csv_path = ann.find_kinetics_csv(self._annotation_dir(), split)
        rows = ann.read_kinetics_rows(csv_path)
        classes = ann.read_kinetics_classes(csv_path, rows)
        self._csv_rows = (_file_key(csv_path), rows)
        return classes

    def _csv_split(self, stage: str) -> tuple[Path, Path, bool] | None:
        """``(CSV, video folder, search it recursively)`` of a CSV split; None for a list."""
        split = self.splits[stage]
        if ann.is_path_label_list(split):
            return None
        if split not in self._found_splits:
            csv_path = ann.find_kinetics_csv(self._annotation_dir(), split)
            found = ann.find_kinetics_split_videos(self.data_root, split, csv_path)
            self._found_splits[split] = (csv_path, *found)
        return self._found_splits[split]

    def prepare_data(self) -> None:
        """List the video folders of the splits this run reads, once per node, for every
        process's ``setup`` (Lightning calls this on each node's local rank 0 while the other
        processes wait at its barrier). Anything wrong (an absent CSV) is left to ``setup``,
        which says it on every rank alike: an error raised here on one rank alone would leave
        the others waiting."""
        if not self.listing_cache:
            return
        trainer = getattr(self, "trainer", None)
        fn = trainer.state.fn.value if trainer is not None and trainer.state.fn else None
        listed = set()
        for name in _SPLITS_OF.get(fn, _SPLITS_OF[None]):
            try:
                found = self._csv_split(name)
                if found is not None and found[1:] not in listed:
                    listed.add(found[1:])
                    if listing.load(*found[1:]) is None:  # none yet, or its folders changed
                        listing.scan(*found[1:])
            except Exception as err:  # setup meets it again and says it, on every rank
                log.debug("%s split: its videos are not listed ahead (%s)", name, err)

    def _read_split(self, stage: str) -> ann.SplitAnnotations:
        found = self._csv_split(stage)
        if found is None:
            return ann.read_path_label_list(self.splits[stage], self.data_root, self.class_names)
        csv_path, video_dir, recursive = found
        read = self._csv_rows
        return ann.read_kinetics_csv(
            csv_path,
            video_dir,
            self.class_names,
            require_labels=stage in ("train", "val"),  # test/predict CSVs may be unlabelled
            recursive=recursive,
            rows=read[1] if read is not None and read[0] == _file_key(csv_path) else None,
            # the listing prepare_data wrote for this node; else the folders are listed here
            videos=listing.load(video_dir, recursive) if self.listing_cache else None,
        )

    def setup(self, stage: str | None = None) -> None:
        try:
            super().setup(stage)
        finally:
            self._csv_rows = None  # not kept for the run (nor forked into the workers)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_csv_rows", None)
        return state


def _file_key(path: str | os.PathLike) -> tuple:
    """Which file, in which state: the same key, the same bytes (short of a same-size rewrite
    within the file system's time resolution)."""
    st = os.stat(path)
    return os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino


class UCF101DataModule(VideoDataModule):
    """UCF-101 with the official three folds (``trainlist0F.txt`` / ``testlist0F.txt``).

    ``data_root`` holds ``UCF-101/`` (videos); ``annotation_dir`` defaults to
    ``data_root/ucfTrainTestlist``. UCF-101 has no val split: val and test both read the
    fold's test list (the common practice), val as one centre clip, test as all views.
    """

    layout = "ucf101"

    def __init__(
        self,
        data_root: str,
        fold: int = 1,
        annotation_dir: str | None = None,
        train_split: str = "train",
        val_split: str = "test",
        test_split: str = "test",
        predict_split: str | None = None,
        **kwargs,
    ) -> None:
        """Args: as :class:`VideoDataModule`, plus ``fold`` (1, 2 or 3: the official splits)."""
        if fold not in (1, 2, 3):
            raise ValueError(f"UCF-101 fold must be 1, 2 or 3, got {fold}")
        self.fold = fold
        super().__init__(
            data_root,
            annotation_dir=annotation_dir,
            train_split=train_split,
            val_split=val_split,
            test_split=test_split,
            predict_split=predict_split,
            **kwargs,
        )

    def _annotation_dir(self) -> str:
        return self.annotation_dir or os.path.join(self.data_root, "ucfTrainTestlist")

    def _read_class_names(self) -> list[str]:
        return ann.read_ucf_classes(self._annotation_dir())

    def _read_split(self, stage: str) -> ann.SplitAnnotations:
        split_file = ann.ucf_split_file(self._annotation_dir(), self.splits[stage], self.fold)
        return ann.read_ucf_split(
            split_file, ann.find_ucf_video_dir(self.data_root), self.class_names
        )
