"""Model zoo: speaker-embedding networks chosen by name in the training config."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from pyspeaker.errors import ConfigError


def _registry() -> dict[str, Callable[..., nn.Module]]:
    from pyspeaker.models.resnet_se import ResNetSE34L

    return {"ResNetSE34L": ResNetSE34L}


MODEL_NAMES = ("ResNetSE34L",)


def build_model(name: str, **options) -> nn.Module:
    """Build model ``name`` with keyword ``options`` (nOut, encoder_type, n_mels, ...)."""
    registry = _registry()
    if name not in registry:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(sorted(registry))}")
    try:
        return registry[name](**options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model {name}: {e}") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
