"""Training objectives, chosen by name; each declares the batch layout it needs.

A loss takes embeddings ``x`` [batch, nPerSpeaker, dim] -- row ``i`` holds ``nPerSpeaker``
utterances of one speaker, and no speaker appears twice in a batch -- and speaker labels [batch]
(one per row), and returns (loss, top-1 accuracy in percent, or None).

Each loss class declares:

- ``utts_per_speaker``: the fewest utterances of a speaker it needs side by side in a batch
  (1 for classification losses, 2 for the metric-learning ones); the config is checked against
  it when it loads (``check_batch_layout``);
- ``max_utts_per_speaker``: the most it can use (None: any number);
- ``test_normalize``: whether embeddings are L2-normalised before scoring (voxceleb_trainer's flag);
- ``has_margin``: whether it has a margin that a margin warm-up schedule can set (``set_margin``).

Names and voxceleb_trainer key layout (so its checkpoints' ``__L__.*`` tensors map one to one):

    softmax       fc.weight [nClasses, nOut], fc.bias
    amsoftmax     W [nOut, nClasses]            (additive margin, CosFace)
    aamsoftmax    weight [nClasses, nOut]       (additive angular margin, ArcFace)
    angleproto    w, b  (scalars)               (angular prototypical)
    proto         none                          (prototypical, squared Euclidean)
    ge2e          w, b                          (generalised end-to-end)
    triplet       none                          (hard-negative mining + margin)
    softmaxproto  softmax.fc.{weight,bias}, angleproto.{w,b}
"""
from __future__ import annotations

import importlib
import inspect

import torch
import torch.nn as nn

from pyspeaker.errors import ConfigError

# name -> (module, class)
_REGISTRY = {
    "softmax": ("pyspeaker.losses.softmax", "Softmax"),
    "amsoftmax": ("pyspeaker.losses.amsoftmax", "AMSoftmax"),
    "aamsoftmax": ("pyspeaker.losses.aamsoftmax", "AAMSoftmax"),
    "angleproto": ("pyspeaker.losses.angleproto", "AngleProto"),
    "proto": ("pyspeaker.losses.proto", "Proto"),
    "ge2e": ("pyspeaker.losses.ge2e", "GE2E"),
    "triplet": ("pyspeaker.losses.triplet", "Triplet"),
    "softmaxproto": ("pyspeaker.losses.softmaxproto", "SoftmaxProto"),
}
LOSS_NAMES = tuple(_REGISTRY)
_BUILT_IN = ("nOut", "nClasses")  # given by the trainer (model.nOut, the speakers in the data)


def loss_class(name: str) -> type:
    """The class of loss ``name``; ConfigError listing the valid names if unknown."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown loss {name!r}; valid losses: {', '.join(sorted(_REGISTRY))}")
    module, attr = _REGISTRY[name]
    return getattr(importlib.import_module(module), attr)


def loss_options(name: str) -> list[str]:
    """The options loss ``name`` accepts in the config's ``loss`` section (besides ``name``)."""
    return [p for p in inspect.signature(loss_class(name)).parameters if p not in _BUILT_IN]


def check_loss_options(name: str, options: dict) -> None:
    accepted = loss_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"loss {name} has no option {unknown[0]!r}; its options: {', '.join(accepted) or 'none'}")


def check_batch_layout(name: str, n_per_speaker: int) -> None:
    """ConfigError naming the setting to change unless loss ``name`` can use ``n_per_speaker``."""
    cls = loss_class(name)
    need, most = cls.utts_per_speaker, cls.max_utts_per_speaker
    if n_per_speaker < need:
        raise ConfigError(f"loss {name} needs data.nPerSpeaker >= {need} (got {n_per_speaker}): "
                          f"set --set data.nPerSpeaker={need}")
    if most is not None and n_per_speaker > most:
        raise ConfigError(f"loss {name} uses at most {most} utterances per speaker in a batch, "
                          f"data.nPerSpeaker is {n_per_speaker}: set --set data.nPerSpeaker={most}")


def build_loss(name: str, nOut: int, num_classes: int, **options) -> nn.Module:
    cls = loss_class(name)
    check_loss_options(name, options)
    try:
        return cls(nOut=nOut, nClasses=num_classes, **options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"loss {name}: {e}") from None


def as_groups(x: torch.Tensor) -> torch.Tensor:
    """Embeddings as [batch, nPerSpeaker, dim] (a [batch, dim] input is one utterance per speaker)."""
    return x.unsqueeze(1) if x.dim() == 2 else x


def flatten(x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[batch, n, dim] + labels [batch] -> [batch * n, dim] + one label per row (for classifiers)."""
    x = as_groups(x)
    n = x.shape[1]
    return x.reshape(-1, x.shape[-1]), labels.repeat_interleave(n) if n > 1 else labels


def top1_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Percentage of rows whose largest logit is at the label."""
    return (logits.argmax(dim=-1) == labels).float().mean() * 100.0


class ScaledCosineLoss(nn.Module):
    """Base of the metric losses whose logits are cosines with voxceleb_trainer's learnt scale and
    bias, ``w * cos + b`` (``w`` clamped > 0): angleproto and ge2e."""
    utts_per_speaker = 2
    max_utts_per_speaker = None
    test_normalize = True
    has_margin = False

    def __init__(self, nOut: int = 0, nClasses: int = 0, init_w: float = 10.0, init_b: float = -5.0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(float(init_w)))
        self.b = nn.Parameter(torch.tensor(float(init_b)))

    def scaled(self, cos: torch.Tensor) -> torch.Tensor:
        return cos * self.w.clamp(min=1e-6) + self.b
