"""Training objectives, chosen by name; each declares the batch layout it needs.

A loss takes embeddings [batch, nPerSpeaker, dim] and speaker labels [batch] and returns
(loss, top-1 accuracy in percent or None). ``utts_per_speaker`` says how many utterances of a
speaker the loss needs side by side in a batch (1 for classification losses).
"""
from __future__ import annotations

import torch.nn as nn

from pyspeaker.errors import ConfigError


def _registry():
    from pyspeaker.losses.amsoftmax import AMSoftmax
    from pyspeaker.losses.softmax import Softmax

    return {"softmax": Softmax, "amsoftmax": AMSoftmax}


def build_loss(name: str, nOut: int, num_classes: int, **options) -> nn.Module:
    registry = _registry()
    if name not in registry:
        raise ConfigError(f"unknown loss {name!r}; valid losses: {', '.join(sorted(registry))}")
    import inspect

    accepted = [p for p in inspect.signature(registry[name]).parameters if p not in ("nOut", "nClasses")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"loss {name} has no option {unknown[0]!r}; its options: {', '.join(accepted) or 'none'}")
    return registry[name](nOut=nOut, nClasses=num_classes, **options)
