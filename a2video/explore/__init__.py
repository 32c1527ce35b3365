"""Exploring a trained model: prediction, attention maps, figures and export."""
