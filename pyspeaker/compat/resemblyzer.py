"""Resemblyzer (resemble-ai): its voice encoder as a pyspeaker model (:class:`~pyspeaker.models.resemblyzer_lstm.ResemblyzerLSTM`).

Resemblyzer ships its weights as ``pretrained.pt`` inside the package (Apache-2.0): a dict
``{"step", "model_state", "optimizer_state"}`` as Real-Time-Voice-Cloning's encoder training saves
it. ``model_state`` holds the network (``lstm.*``, ``linear.*``) and the GE2E loss's
``similarity_weight`` / ``similarity_bias``, which are left out (training only); the optimiser
state is ignored. A bare state dict (those keys at the top level) is read too. Resemblyzer loads
with ``strict=False``; here every network tensor must be there with the shape of Resemblyzer's
fixed architecture (40 mels, 3 x 256 LSTM, 256-dim embedding) and nothing else may be.

The imported model computes ``VoiceEncoder.embed_utterance(wav)`` for 16 kHz samples ``wav``:
mel, partial windows, averaging, all inside the network. Resemblyzer's ``preprocess_wav`` (volume
normalisation to -30 dBFS, increase only, and webrtcvad trimming of long silences) is *not* part of
it: pyspeaker embeds the samples it is given, which equals ``embed_utterance`` on those same
samples; to reproduce Resemblyzer's usual ``embed_utterance(preprocess_wav(path))``, apply
``preprocess_wav`` to the audio first.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from pyspeaker.compat.importing import Imported, load_torch_file, map_state
from pyspeaker.errors import ConfigError, DataError

# Resemblyzer's hparams.py (fixed: VoiceEncoder builds this architecture whatever the file holds)
HPARAMS = {"sampling_rate": 16000, "mel_window_length": 25, "mel_window_step": 10, "mel_n_channels": 40,
           "partials_n_frames": 160, "model_hidden_size": 256, "model_embedding_size": 256,
           "model_num_layers": 3}
# embed_utterance's defaults
RATE, MIN_COVERAGE = 1.3, 0.75
LOSS_KEYS = {"similarity_weight": "GE2E loss scale (training only)",
             "similarity_bias": "GE2E loss offset (training only)"}


def model_options() -> dict:
    """The ``build_model`` options of Resemblyzer's encoder."""
    return {"name": "ResemblyzerLSTM", "waveform": True, "nOut": HPARAMS["model_embedding_size"],
            "hidden": HPARAMS["model_hidden_size"], "layers": HPARAMS["model_num_layers"],
            "n_mels": HPARAMS["mel_n_channels"], "rate": RATE, "min_coverage": MIN_COVERAGE}


def bundled_checkpoint() -> Path:
    """``pretrained.pt`` of the installed resemblyzer package, found without importing it
    (``find_spec`` of a top-level package does not run its code); ConfigError when absent."""
    spec = importlib.util.find_spec("resemblyzer")
    dirs = list(spec.submodule_search_locations or []) if spec is not None else []
    for d in dirs:
        path = Path(d) / "pretrained.pt"
        if path.is_file():
            return path
    raise ConfigError("no Resemblyzer weights: install the package (pip install resemblyzer), whose pretrained.pt "
                      "is used, or give the file with --checkpoint"
                      + (f" (the installed package at {dirs[0]} has no pretrained.pt)" if dirs else ""))


def read_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """The model state dict of a Resemblyzer / Real-Time-Voice-Cloning encoder file, and what else it records."""
    ckpt = load_torch_file(path, "Resemblyzer checkpoint")
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model_state"), dict):
        state, extra = ckpt["model_state"], {k: ckpt[k] for k in ("step",) if k in ckpt}
    elif isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state, extra = ckpt, {}
    else:
        found = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise DataError(f"not a Resemblyzer encoder checkpoint: no 'model_state' state dict (found {found})", path=path)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise DataError(f"model_state entry {bad[0]} is not a tensor", path=path)
    return dict(state), extra


def import_resemblyzer(checkpoint: str | os.PathLike | None = None) -> Imported:
    """Resemblyzer's voice encoder as an :class:`Imported` (default: the installed package's pretrained.pt)."""
    from pyspeaker.models import build_model

    path = bundled_checkpoint() if checkpoint is None else Path(checkpoint)
    if not path.is_file():
        raise DataError("checkpoint not found", path=path)
    source, extra = read_state(path)
    dropped = {k: why for k, why in LOSS_KEYS.items() if k in source}
    options = model_options()
    net = build_model(**options)
    state = map_state(source, net, lambda key: key, path=path, dropped=dropped)
    notes = {"rate": RATE, "min_coverage": MIN_COVERAGE,
             "preprocessing": "Resemblyzer's preprocess_wav (volume normalisation, webrtcvad silence trimming) "
                              "is not applied; the network embeds the samples as embed_utterance does",
             **{f"source_{k}": v for k, v in extra.items()}}
    return Imported("resemblyzer", options, {"waveform": True}, state, path,
                    source_config=dict(HPARAMS), dropped=dropped, notes=notes)
