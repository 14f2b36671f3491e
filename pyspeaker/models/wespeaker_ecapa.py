"""WeSpeaker's ECAPA-TDNN (``ECAPA_TDNN_GLOB_c512``, ``ECAPA_TDNN_GLOB_c1024``), tensor for tensor.

The same computation and module names as WeSpeaker's ``wespeaker/models/ecapa_tdnn.py``, so
its state dicts load as they are (``pyspeaker import-model --from wespeaker``). It differs from
pyspeaker's own ``ECAPA-TDNN`` in layout and details (1-D SE with Linear layers, WeSpeaker's
ASTP pooling, BN before the embedding layer), hence a class of its own. Input: Kaldi fbank
[batch, frames, feat_dim] with the utterance mean subtracted.

    layer1      Conv1d(feat_dim -> C, kernel 5) + ReLU + BN
    layer2-4    SE-Res2Blocks, dilation 2, 3, 4 (1x1 conv, Res2Net 3-tap convs in 8 groups,
                1x1 conv, each + ReLU + BN; squeeze-excitation of bottleneck 128; residual)
    conv        the three blocks' outputs (3C) -> 1536 channels (1x1), ReLU
    pool        ``pooling_func`` (ASTP: attentive statistics, with global context for GLOB)
    bn, linear  BN of the pooled vector, Linear to embed_dim; ``emb_bn``: BN of the embedding

C is 512 or 1024. ``global_context_att=False`` gives WeSpeaker's ``ECAPA_TDNN_c512/c1024``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pyspeaker.models.wespeaker_resnet import check_alias, make_pooling

MFA_CHANNELS = 512 * 3  # fixed in WeSpeaker whatever C is


class Conv1dReluBn(nn.Module):
    """Conv1d, then ReLU, then BN (WeSpeaker's order)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 padding: int = 0, dilation: int = 1, bias: bool = True):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=bias)
        self.bn = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class Res2Conv1dReluBn(nn.Module):
    """Res2Net: ``scale`` channel groups, each but the last convolved after adding the previous
    group's output; the last group passes through."""

    def __init__(self, channels: int, kernel_size: int = 1, stride: int = 1, padding: int = 0,
                 dilation: int = 1, bias: bool = True, scale: int = 4):
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels {channels} are not divisible by the Res2Net scale {scale}")
        self.scale = scale
        self.width = channels // scale
        self.nums = scale if scale == 1 else scale - 1
        self.convs = nn.ModuleList(nn.Conv1d(self.width, self.width, kernel_size, stride, padding, dilation,
                                             bias=bias) for _ in range(self.nums))
        self.bns = nn.ModuleList(nn.BatchNorm1d(self.width) for _ in range(self.nums))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spx = torch.split(x, self.width, 1)
        out = []
        sp = spx[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            if i >= 1:
                sp = sp + spx[i]
            sp = bn(F.relu(conv(sp)))
            out.append(sp)
        if self.scale != 1:
            out.append(spx[self.nums])
        return torch.cat(out, dim=1)


class SE_Connect(nn.Module):
    """Squeeze-excitation over channels: time mean -> Linear, ReLU -> Linear, sigmoid -> scale."""

    def __init__(self, channels: int, se_bottleneck_dim: int = 128):
        super().__init__()
        self.linear1 = nn.Linear(channels, se_bottleneck_dim)
        self.linear2 = nn.Linear(se_bottleneck_dim, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.linear2(F.relu(self.linear1(x.mean(dim=2)))))
        return x * w.unsqueeze(2)


class SE_Res2Block(nn.Module):
    """1x1 Conv1dReluBn, Res2Conv1dReluBn, 1x1 Conv1dReluBn, SE; plus the input."""

    def __init__(self, channels: int, kernel_size: int, stride: int, padding: int, dilation: int, scale: int):
        super().__init__()
        self.se_res2block = nn.Sequential(
            Conv1dReluBn(channels, channels, kernel_size=1, stride=1, padding=0),
            Res2Conv1dReluBn(channels, kernel_size, stride, padding, dilation, scale=scale),
            Conv1dReluBn(channels, channels, kernel_size=1, stride=1, padding=0),
            SE_Connect(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.se_res2block(x)


class WeSpeakerECAPA(nn.Module):
    """WeSpeaker's ECAPA_TDNN (see the module doc). Keywords are WeSpeaker's; ``n_mels`` /
    ``nOut`` (pyspeaker's names) may be given too and must equal ``feat_dim`` / ``embed_dim``."""

    def __init__(self, channels: int = 512, *, feat_dim: int = 80, embed_dim: int = 192,
                 pooling_func: str = "ASTP", global_context_att: bool = True, emb_bn: bool = False,
                 n_mels: int | None = None, nOut: int | None = None):
        super().__init__()
        check_alias("feat_dim", feat_dim, "n_mels", n_mels)
        check_alias("embed_dim", embed_dim, "nOut", nOut)
        self.feat_dim = self.n_mels = int(feat_dim)
        self.embed_dim = int(embed_dim)
        self.layer1 = Conv1dReluBn(feat_dim, channels, kernel_size=5, padding=2)
        self.layer2 = SE_Res2Block(channels, kernel_size=3, stride=1, padding=2, dilation=2, scale=8)
        self.layer3 = SE_Res2Block(channels, kernel_size=3, stride=1, padding=3, dilation=3, scale=8)
        self.layer4 = SE_Res2Block(channels, kernel_size=3, stride=1, padding=4, dilation=4, scale=8)
        self.conv = nn.Conv1d(channels * 3, MFA_CHANNELS, kernel_size=1)
        self.pool = make_pooling(pooling_func, MFA_CHANNELS, global_context_att=global_context_att)
        self.pool_out_dim = self.pool.get_out_dim()
        self.bn = nn.BatchNorm1d(self.pool_out_dim)
        self.linear = nn.Linear(self.pool_out_dim, embed_dim)
        self.emb_bn = bool(emb_bn)
        self.bn2 = nn.BatchNorm1d(embed_dim) if emb_bn else nn.Identity()

    def frame_level(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, F] features -> the aggregated frame features [B, 1536, T] (before the ReLU)."""
        out1 = self.layer1(x.permute(0, 2, 1))
        out2 = self.layer2(out1)
        out3 = self.layer3(out2)
        out4 = self.layer4(out3)
        return self.conv(torch.cat([out2, out3, out4], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, feat_dim] -> [B, embed_dim]."""
        out = self.linear(self.bn(self.pool(F.relu(self.frame_level(x)))))
        return self.bn2(out)


class ECAPA_TDNN_GLOB_c512(WeSpeakerECAPA):
    """WeSpeaker ECAPA_TDNN_GLOB_c512: 512 channels, ASTP with global context."""

    def __init__(self, **model_args):
        super().__init__(512, **model_args)


class ECAPA_TDNN_GLOB_c1024(WeSpeakerECAPA):
    """WeSpeaker ECAPA_TDNN_GLOB_c1024: 1024 channels, ASTP with global context."""

    def __init__(self, **model_args):
        super().__init__(1024, **model_args)
