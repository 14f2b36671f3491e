"""ResNet-34 with squeeze-excitation (voxceleb_trainer's ResNetSE34L family).

Parameter names and layer order follow voxceleb_trainer (``conv1``, ``bn1``, ``layerN.i.se.fc``,
``sap_linear``, ``attention``, ``fc``) so that its checkpoints map onto these modules key by key.
Input: features [batch, time, n_mels]; the front-end that turns audio into those features is
separate (the feature store, or a waveform front-end).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from pyspeaker.models.pooling import pool, pooled_dim


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
        if stride != 1 and stride != (1, 1) or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.relu(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class ResNetSE(nn.Module):
    def __init__(self, layers, num_filters, nOut: int = 512, encoder_type: str = "SAP", n_mels: int = 40,
                 input_norm: str = "instance"):
        super().__init__()
        if encoder_type not in ("SAP", "ASP", "TAP", "MAX", "STATS"):
            raise ValueError(f"unknown encoder_type {encoder_type!r} for ResNetSE; valid: SAP, ASP, TAP, MAX, STATS")
        self.encoder_type = encoder_type
        self.n_mels = n_mels
        self.input_norm = input_norm
        self.inplanes = num_filters[0]
        self.conv1 = nn.Conv2d(1, num_filters[0], kernel_size=7, stride=(2, 1), padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(num_filters[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(num_filters[0], layers[0])
        self.layer2 = self._make_layer(num_filters[1], layers[1], stride=(2, 2))
        self.layer3 = self._make_layer(num_filters[2], layers[2], stride=(2, 2))
        self.layer4 = self._make_layer(num_filters[3], layers[3], stride=(1, 1))
        channels = num_filters[3]
        if encoder_type in ("SAP", "ASP"):
            self.sap_linear = nn.Linear(channels, channels)
            self.attention = nn.Parameter(torch.empty(channels, 1))
            nn.init.xavier_normal_(self.attention)
        self.fc = nn.Linear(pooled_dim(encoder_type, channels), nOut)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride=1) -> nn.Sequential:
        layers = [SEBasicBlock(self.inplanes, planes, stride)]
        self.inplanes = planes
        layers += [SEBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: [batch, time, n_mels] -> embeddings [batch, nOut]."""
        x = feats.transpose(1, 2)  # [B, F, T]
        if self.input_norm == "instance":
            # Per-bin mean/variance normalisation over time, as voxceleb_trainer's InstanceNorm1d.
            x = torch.nn.functional.instance_norm(x, eps=1e-5)
        x = self.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = x.mean(dim=2).transpose(1, 2)  # average over frequency -> [B, T, C]
        x = pool(self.encoder_type, x, getattr(self, "sap_linear", None), getattr(self, "attention", None))
        return self.fc(x)


def ResNetSE34L(nOut: int = 512, encoder_type: str = "SAP", n_mels: int = 40, **kw) -> ResNetSE:
    return ResNetSE([3, 4, 6, 3], [16, 32, 64, 128], nOut=nOut, encoder_type=encoder_type, n_mels=n_mels, **kw)
