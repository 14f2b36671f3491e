"""ECAPA-TDNN (Desplanques et al., Interspeech 2020), laid out as in WeSpeaker.

    layer1    Conv1d(n_mels -> C, kernel 5) + ReLU + BN
    layer2-4  SE-Res2Blocks with dilation 2, 3, 4: 1x1 conv, Res2Net 3-tap convs in 8 groups,
              1x1 conv (each + ReLU + BN), squeeze-excitation (bottleneck 128), residual add
    mfa       multi-layer feature aggregation: the three blocks' outputs concatenated (3C) ->
              Conv1d(3C -> 1536, 1x1) + ReLU
    pooling   ASP (default): attentive statistics pooling with global context -- the attention
              network sees each frame together with the utterance's mean and std, and gives one
              weight per channel and frame (tanh bottleneck of 128) -> weighted mean and std (3072)
              SAP: the same weights, weighted mean only; TAP, MAX, STATS: plain poolings
    bn_pool   BN over the pooled vector, ``fc`` to nOut, ``bn_emb`` BN of the embedding

``channels`` C is 512 (the paper's small model, ~6.2 M parameters with 80 mel bins and nOut 192)
or 1024 (~14.7 M).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pyspeaker.models.frontend import MelSpec, check_input_norm, normalize_input
from pyspeaker.models.pooling import POOLING_TYPES, pool

MFA_CHANNELS = 1536


class Conv1dReluBn(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, kernel: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size=kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
        self.bn = nn.BatchNorm1d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class Res2Conv1d(nn.Module):
    """Res2Net: channel groups convolved in a chain (group i also sees group i-1's output); the last group passes through."""

    def __init__(self, channels: int, kernel: int, dilation: int, scale: int = 8):
        super().__init__()
        if channels % scale:
            raise ValueError(f"ECAPA-TDNN channels ({channels}) must be divisible by the Res2Net scale {scale}")
        self.width = channels // scale
        self.convs = nn.ModuleList(Conv1dReluBn(self.width, self.width, kernel, dilation) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = torch.split(x, self.width, dim=1)
        out, prev = [], None
        for conv, g in zip(self.convs, groups):
            prev = conv(g if prev is None else g + prev)
            out.append(prev)
        out.append(groups[-1])
        return torch.cat(out, dim=1)


class SEModule(nn.Module):
    def __init__(self, channels: int, bottleneck: int = 128):
        super().__init__()
        self.fc1 = nn.Conv1d(channels, bottleneck, kernel_size=1)
        self.fc2 = nn.Conv1d(bottleneck, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=2, keepdim=True)))))
        return x * w


class SERes2Block(nn.Module):
    def __init__(self, channels: int, kernel: int, dilation: int, scale: int = 8):
        super().__init__()
        self.conv1 = Conv1dReluBn(channels, channels)
        self.res2 = Res2Conv1d(channels, kernel, dilation, scale)
        self.conv3 = Conv1dReluBn(channels, channels)
        self.se = SEModule(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.se(self.conv3(self.res2(self.conv1(x))))


class ContextAttention(nn.Module):
    """Channel- and frame-wise attention weights from [frame, utterance mean, utterance std]."""

    def __init__(self, channels: int, bottleneck: int = 128):
        super().__init__()
        self.linear1 = nn.Conv1d(channels * 3, bottleneck, kernel_size=1)
        self.linear2 = nn.Conv1d(bottleneck, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, T] -> weights [B, C, T] summing to 1 over time."""
        mean = x.mean(dim=2, keepdim=True).expand_as(x)
        std = torch.sqrt(x.var(dim=2, keepdim=True, unbiased=False).clamp(min=1e-7)).expand_as(x)
        alpha = torch.tanh(self.linear1(torch.cat((x, mean, std), dim=1)))
        return torch.softmax(self.linear2(alpha), dim=2)


class ECAPA_TDNN(nn.Module):
    model_name = "ECAPA-TDNN"
    frontend_spec = MelSpec(preemphasis=True)

    def __init__(self, nOut: int = 192, encoder_type: str = "ASP", n_mels: int = 80, input_norm: str = "instance",
                 channels: int = 512, scale: int = 8):
        super().__init__()
        if encoder_type not in POOLING_TYPES:
            raise ValueError(f"unknown encoder_type {encoder_type!r} for ECAPA-TDNN; valid: {', '.join(POOLING_TYPES)}")
        self.encoder_type = encoder_type
        self.n_mels = int(n_mels)
        self.channels = int(channels)
        self.input_norm = check_input_norm(input_norm)
        self.layer1 = Conv1dReluBn(self.n_mels, channels, kernel=5)
        self.layer2 = SERes2Block(channels, 3, 2, scale)
        self.layer3 = SERes2Block(channels, 3, 3, scale)
        self.layer4 = SERes2Block(channels, 3, 4, scale)
        self.mfa = nn.Conv1d(channels * 3, MFA_CHANNELS, kernel_size=1)
        if encoder_type in ("SAP", "ASP"):
            self.attention = ContextAttention(MFA_CHANNELS)
        pooled = MFA_CHANNELS * (2 if encoder_type in ("ASP", "STATS") else 1)
        self.bn_pool = nn.BatchNorm1d(pooled)
        self.fc = nn.Linear(pooled, nOut)
        self.bn_emb = nn.BatchNorm1d(nOut)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: [batch, time, n_mels] -> embeddings [batch, nOut]."""
        x = self.layer1(normalize_input(feats, self.input_norm))
        out2 = self.layer2(x)
        out3 = self.layer3(out2)
        out4 = self.layer4(out3)
        x = F.relu(self.mfa(torch.cat((out2, out3, out4), dim=1)))  # [B, 1536, T]
        if self.encoder_type in ("SAP", "ASP"):
            w = self.attention(x)
            mu = torch.sum(x * w, dim=2)
            if self.encoder_type == "SAP":
                x = mu
            else:
                sigma = torch.sqrt((torch.sum(x * x * w, dim=2) - mu * mu).clamp(min=1e-7))
                x = torch.cat((mu, sigma), dim=1)
        else:
            x = pool(self.encoder_type, x.transpose(1, 2))
        return self.bn_emb(self.fc(self.bn_pool(x)))
