"""Training: the LightningModule, video-level metrics, callbacks, checkpoints and the CLI."""
