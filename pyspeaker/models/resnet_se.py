"""ResNet-34 with squeeze-excitation: voxceleb_trainer's ResNetSE34L, ResNetSE34Half and ResNetSE34V2.

Parameter names and layer order follow voxceleb_trainer (``conv1``, ``bn1``, ``layerN.i.se.fc``,
``sap_linear``, ``attention``, ``fc``) so that its checkpoints map onto these modules key by key
(checked against the manifests in ../shared/compat/voxceleb_trainer by the tests).

Two designs, both with SE basic blocks [3, 4, 6, 3] whose conv is followed by ReLU *then* BN:

- "L" (ResNetSE34L: channels 16-32-64-128; ResNetSE34Half: 32-64-128-256, exactly as
  voxceleb_trainer's ``ResNetSE34Half``, which reuses the ResNetSE34L network at twice the width):
  7x7 stem with stride 2 on the mel axis (conv, BN, ReLU), layers 2 and 3 with stride 2, the
  output averaged over the mel axis, then temporal pooling of 128 (or 256) channels.
- "V2" (ResNetSE34V2: 32-64-128-256): 3x3 stem with stride 1 and a bias (conv, ReLU, BN),
  layers 2-4 with stride 2, channels x remaining mel bins flattened into one vector per frame,
  and SAP/ASP weights from a Conv1d-ReLU-BN-Conv1d attention network (one weight per
  dimension and frame).

Input: features [batch, time, n_mels]; the optional per-crop instance norm is the first step.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from pyspeaker.models.frontend import MelSpec, check_input_norm, normalize_input
from pyspeaker.models.pooling import POOLING_TYPES, pool, pooled_dim, weighted_mean_std


class SELayer(nn.Module):
    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.fc(x.mean(dim=(2, 3)))
        return x * w[:, :, None, None]


class SEBasicBlock(nn.Module):
    """conv-ReLU-BN, conv-BN, SE, + shortcut, ReLU (ReLU before BN, as in voxceleb_trainer)."""

    def __init__(self, inplanes: int, planes: int, stride=1, reduction: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.se = SELayer(planes, reduction)
        self.downsample = None
        if stride not in (1, (1, 1)) or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.relu(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


def _make_layer(inplanes: int, planes: int, blocks: int, stride=1) -> nn.Sequential:
    return nn.Sequential(SEBasicBlock(inplanes, planes, stride), *[SEBasicBlock(planes, planes) for _ in range(1, blocks)])


def _check_encoder(encoder_type: str, family: str) -> None:
    if encoder_type not in POOLING_TYPES:
        raise ValueError(f"unknown encoder_type {encoder_type!r} for {family}; valid: {', '.join(POOLING_TYPES)}")


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class ResNetSE(nn.Module):
    """The "L" design (ResNetSE34L, ResNetSE34Half)."""

    frontend_spec = MelSpec()

    def __init__(self, layers, num_filters, nOut: int = 512, encoder_type: str = "SAP", n_mels: int = 40,
                 input_norm: str = "instance"):
        super().__init__()
        _check_encoder(encoder_type, "ResNetSE")
        self.encoder_type = encoder_type
        self.n_mels = int(n_mels)
        self.input_norm = check_input_norm(input_norm)
        self.conv1 = nn.Conv2d(1, num_filters[0], kernel_size=7, stride=(2, 1), padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(num_filters[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _make_layer(num_filters[0], num_filters[0], layers[0])
        self.layer2 = _make_layer(num_filters[0], num_filters[1], layers[1], stride=(2, 2))
        self.layer3 = _make_layer(num_filters[1], num_filters[2], layers[2], stride=(2, 2))
        self.layer4 = _make_layer(num_filters[2], num_filters[3], layers[3], stride=(1, 1))
        channels = num_filters[3]
        if encoder_type in ("SAP", "ASP"):
            self.sap_linear = nn.Linear(channels, channels)
            self.attention = nn.Parameter(torch.empty(channels, 1))
            nn.init.xavier_normal_(self.attention)
        self.fc = nn.Linear(pooled_dim(encoder_type, channels), nOut)
        _init_weights(self)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: [batch, time, n_mels] -> embeddings [batch, nOut]."""
        x = normalize_input(feats, self.input_norm)  # [B, F, T]
        x = self.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = x.mean(dim=2).transpose(1, 2)  # average over frequency -> [B, T, C]
        x = pool(self.encoder_type, x, getattr(self, "sap_linear", None), getattr(self, "attention", None))
        return self.fc(x)


def _halved(size: int, times: int) -> int:
    """Size after ``times`` 3x3 convolutions with stride 2 and padding 1."""
    for _ in range(times):
        size = (size - 1) // 2 + 1
    return size


class ResNetSEV2(nn.Module):
    """The "V2" design (ResNetSE34V2)."""

    frontend_spec = MelSpec(preemphasis=True)

    def __init__(self, layers, num_filters, nOut: int = 512, encoder_type: str = "SAP", n_mels: int = 64,
                 input_norm: str = "instance"):
        super().__init__()
        _check_encoder(encoder_type, "ResNetSE34V2")
        self.encoder_type = encoder_type
        self.n_mels = int(n_mels)
        self.input_norm = check_input_norm(input_norm)
        self.conv1 = nn.Conv2d(1, num_filters[0], kernel_size=3, stride=1, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.bn1 = nn.BatchNorm2d(num_filters[0])
        self.layer1 = _make_layer(num_filters[0], num_filters[0], layers[0])
        self.layer2 = _make_layer(num_filters[0], num_filters[1], layers[1], stride=(2, 2))
        self.layer3 = _make_layer(num_filters[1], num_filters[2], layers[2], stride=(2, 2))
        self.layer4 = _make_layer(num_filters[2], num_filters[3], layers[3], stride=(2, 2))
        # voxceleb_trainer uses int(n_mels / 8), which is the same for n_mels divisible by 8 (and
        # would crash otherwise); the exact size keeps other n_mels usable.
        dim = num_filters[3] * _halved(self.n_mels, 3)
        if encoder_type in ("SAP", "ASP"):
            self.attention = nn.Sequential(nn.Conv1d(dim, 128, kernel_size=1), nn.ReLU(), nn.BatchNorm1d(128),
                                           nn.Conv1d(128, dim, kernel_size=1), nn.Softmax(dim=2))
        self.fc = nn.Linear(pooled_dim(encoder_type, dim), nOut)
        _init_weights(self)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: [batch, time, n_mels] -> embeddings [batch, nOut]."""
        x = normalize_input(feats, self.input_norm)
        x = self.bn1(self.relu(self.conv1(x.unsqueeze(1))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = x.reshape(x.shape[0], -1, x.shape[-1])  # channels x mel bins per frame: [B, D, T]
        if self.encoder_type in ("SAP", "ASP"):
            w = self.attention(x)  # one softmax over time per dimension
            if self.encoder_type == "SAP":
                x = torch.sum(x * w, dim=2)
            else:
                x = torch.cat(weighted_mean_std(x.transpose(1, 2), w.transpose(1, 2)), dim=1)
        else:
            x = pool(self.encoder_type, x.transpose(1, 2))
        return self.fc(x)


def _named(net: nn.Module, name: str) -> nn.Module:
    net.model_name = name  # registry / voxceleb_trainer name, used by checkpoint export
    return net


def ResNetSE34L(nOut: int = 512, encoder_type: str = "SAP", n_mels: int = 40, **kw) -> ResNetSE:
    return _named(ResNetSE([3, 4, 6, 3], [16, 32, 64, 128], nOut=nOut, encoder_type=encoder_type, n_mels=n_mels, **kw),
                  "ResNetSE34L")


def ResNetSE34Half(nOut: int = 512, encoder_type: str = "SAP", n_mels: int = 40, **kw) -> ResNetSE:
    return _named(ResNetSE([3, 4, 6, 3], [32, 64, 128, 256], nOut=nOut, encoder_type=encoder_type, n_mels=n_mels, **kw),
                  "ResNetSE34Half")


def ResNetSE34V2(nOut: int = 512, encoder_type: str = "ASP", n_mels: int = 64, **kw) -> ResNetSEV2:
    return _named(ResNetSEV2([3, 4, 6, 3], [32, 64, 128, 256], nOut=nOut, encoder_type=encoder_type, n_mels=n_mels,
                             **kw), "ResNetSE34V2")
