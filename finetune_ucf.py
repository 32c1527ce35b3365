"""UCF-101 transfer: ``python finetune_ucf.py fit --config CONFIG.yaml --ckpt KINETICS_CKPT``.

A thin LightningCLI entry point over :class:`a2video.training.module.VideoClassifier`,
:class:`a2video.data.UCF101DataModule` and the :class:`a2video.training.finetune.Finetune`
callback (the logic is in :mod:`a2video.training.finetune`);
``--folds all``
runs folds 1-3 and reports their mean. See docs/transfer.md.
"""

from a2video.training.finetune import main

if __name__ == "__main__":
    main()
