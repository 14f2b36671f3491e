"""Model zoo: speaker-embedding networks chosen by name in the training config.

Every network takes features [batch, time, n_mels] and returns embeddings [batch, nOut]. Common
options: ``nOut``, ``encoder_type`` (temporal pooling: SAP, ASP, TAP, MAX, STATS), ``n_mels``
and ``input_norm`` (per-crop normalisation: instance, mean, none). With ``waveform=True`` the
network gets voxceleb_trainer's raw-waveform front-end in front of it (input [batch, samples] of
16 kHz audio) and ``log_input`` says whether the mel energies are log-compressed.

Names (``name`` in the config; an unknown name is a ConfigError listing these):

- ``ResNetSE34L``: voxceleb_trainer's ResNet-34 with squeeze-excitation, 16-32-64-128 channels
- ``ResNetSE34Half``: the same network at 32-64-128-256 channels (voxceleb_trainer's ResNetSE34Half)
- ``ResNetSE34V2``: voxceleb_trainer's V2 (3x3 stem, 32-64-128-256, attention over channels x mel)
- ``VGGVox``: VGG-M-40, as voxceleb_trainer
- ``TDNN``: Kaldi's x-vector network (5 frame layers, statistics pooling, 512-dim segment layer);
  Kaldi's pooling is ``encoder_type: STATS``
- ``ECAPA-TDNN`` (also ``ECAPA_TDNN``): option ``channels`` 512 or 1024; its own attentive
  statistics pooling with global context is ``encoder_type: ASP``

Imported families (``pyspeaker import-model``; each computes exactly what its source toolkit's
network computes, with the same tensors): WeSpeaker's ``ResNet18/34/221/293``,
``ECAPA_TDNN_GLOB_c512/c1024`` and ``CAMPPlus`` (Kaldi fbank input); ``SpeechBrainECAPA`` and
``ResemblyzerLSTM``, which take the samples and compute their toolkit's own features
(class attribute ``takes_waveform``; options ``waveform: true``).
"""
from __future__ import annotations

import importlib

import torch.nn as nn

from pyspeaker.errors import ConfigError

# name -> (module, constructor)
_REGISTRY: dict[str, tuple[str, str]] = {
    "ResNetSE34L": ("pyspeaker.models.resnet_se", "ResNetSE34L"),
    "ResNetSE34Half": ("pyspeaker.models.resnet_se", "ResNetSE34Half"),
    "ResNetSE34V2": ("pyspeaker.models.resnet_se", "ResNetSE34V2"),
    "VGGVox": ("pyspeaker.models.vggvox", "VGGVox"),
    "TDNN": ("pyspeaker.models.tdnn", "TDNN"),
    "ECAPA-TDNN": ("pyspeaker.models.ecapa_tdnn", "ECAPA_TDNN"),
    # imported families (pyspeaker import-model): the source toolkit's network, tensor for tensor
    "ResNet18": ("pyspeaker.models.wespeaker_resnet", "ResNet18"),
    "ResNet34": ("pyspeaker.models.wespeaker_resnet", "ResNet34"),
    "ResNet221": ("pyspeaker.models.wespeaker_resnet", "ResNet221"),
    "ResNet293": ("pyspeaker.models.wespeaker_resnet", "ResNet293"),
    "ECAPA_TDNN_GLOB_c512": ("pyspeaker.models.wespeaker_ecapa", "ECAPA_TDNN_GLOB_c512"),
    "ECAPA_TDNN_GLOB_c1024": ("pyspeaker.models.wespeaker_ecapa", "ECAPA_TDNN_GLOB_c1024"),
    "CAMPPlus": ("pyspeaker.models.campplus", "CAMPPlus"),
    "SpeechBrainECAPA": ("pyspeaker.models.speechbrain_ecapa", "SpeechBrainECAPA"),
    "ResemblyzerLSTM": ("pyspeaker.models.resemblyzer_lstm", "ResemblyzerLSTM"),
}
# accepted spellings that are not listed
_ALIASES = {"ECAPA_TDNN": "ECAPA-TDNN"}

MODEL_NAMES = tuple(_REGISTRY)
# pyspeaker's own training families (common options: nOut, encoder_type, n_mels, input_norm); the
# imported ones take their toolkit's options
IMPORTED_NAMES = tuple(n for n, (module, _) in _REGISTRY.items()
                       if module.rsplit(".", 1)[1] in ("wespeaker_resnet", "wespeaker_ecapa", "campplus",
                                                      "speechbrain_ecapa", "resemblyzer_lstm"))
ZOO_NAMES = tuple(n for n in MODEL_NAMES if n not in IMPORTED_NAMES)


def canonical_name(name: str) -> str:
    """The registry name for ``name`` (aliases resolved); ConfigError listing the valid names if unknown."""
    name = _ALIASES.get(name, name)
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(MODEL_NAMES)}")
    return name


def build_model(name: str, *, waveform: bool = False, log_input: bool | None = None, **options) -> nn.Module:
    """Build model ``name`` with keyword ``options`` (nOut, encoder_type, n_mels, input_norm, ...).

    ``waveform=True`` returns a :class:`pyspeaker.models.frontend.WaveformModel` (voxceleb_trainer's
    front-end + the network, ``log_input`` default True); without it ``log_input`` is refused,
    since features from a store are already what the network sees.
    """
    module_name, attr = _REGISTRY[canonical_name(name)]
    constructor = getattr(importlib.import_module(module_name), attr)
    if getattr(constructor, "takes_waveform", False):
        # a network with its own front-end (SpeechBrain's Fbank, Resemblyzer's mel): samples in
        if not waveform or log_input is not None:
            raise ConfigError(f"model {name} computes its own features from the samples: set waveform: true "
                              "(and no log_input)")
        try:
            return constructor(**options)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"model {name}: {e}") from None
    if log_input is not None and not waveform:
        raise ConfigError(f"model {name}: log_input applies to the waveform front-end only (set waveform: true); "
                          "features from a feature store are used as they are")
    try:
        model = constructor(**options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model {name}: {e}") from None
    if waveform:
        from pyspeaker.models.frontend import WaveformModel

        model = WaveformModel(model, log_input=True if log_input is None else bool(log_input))
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
