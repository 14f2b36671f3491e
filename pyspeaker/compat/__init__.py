"""Interoperability with other toolkits (voxceleb_trainer checkpoints, evaluation and export)."""
