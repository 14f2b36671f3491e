"""CAM++ (Wang et al., Interspeech 2023) as WeSpeaker has it (``CAMPPlus``), tensor for tensor.

The same computation and module names as WeSpeaker's ``wespeaker/models/campplus.py`` (itself
3D-Speaker's), so its state dicts load as they are (``pyspeaker import-model --from
wespeaker``).
Input: Kaldi fbank [batch, frames, feat_dim] with the utterance mean subtracted.

    head        FCM: a 2-D ResNet front (32 channels; two stages of two blocks that stride the
                frequency axis only, then a (2, 1)-strided conv): feat_dim / 8 bins x 32 maps
    xvector     tdnn (kernel 5, stride 2 in time) to init_channels; three densely connected
                CAM blocks (12, 24, 16 layers, growth 32, dilation 1, 2, 2), each followed by a
                transit layer halving the channels; out_nonlinear; stats (``pooling_func``,
                TSTP); dense (1x1 to embed_dim, BatchNorm without affine)

Each CAM layer's 3-tap conv is masked by a context-aware gate computed from the utterance mean
plus 100-frame segment means.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from pyspeaker.models.wespeaker_resnet import BasicBlock, check_alias, make_pooling, make_stage

SEG_LEN = 100  # frames per segment of CAM's segment pooling


def get_nonlinear(config_str: str, channels: int) -> nn.Sequential:
    """The ``-``-joined layers of ``config_str`` (relu, prelu, batchnorm, batchnorm_ = no affine)."""
    nonlinear = nn.Sequential()
    for name in config_str.split("-"):
        if name == "relu":
            nonlinear.add_module("relu", nn.ReLU(inplace=True))
        elif name == "prelu":
            nonlinear.add_module("prelu", nn.PReLU(channels))
        elif name == "batchnorm":
            nonlinear.add_module("batchnorm", nn.BatchNorm1d(channels))
        elif name == "batchnorm_":
            nonlinear.add_module("batchnorm", nn.BatchNorm1d(channels, affine=False))
        else:
            raise ValueError(f"unexpected layer {name!r} in config_str {config_str!r}")
    return nonlinear


class TDNNLayer(nn.Module):
    """Conv1d then the nonlinearity; ``padding < 0``: 'same' padding for an odd kernel."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, bias: bool = False, config_str: str = "batchnorm-relu"):
        super().__init__()
        if padding < 0:
            if kernel_size % 2 != 1:
                raise ValueError(f"'same' padding needs an odd kernel, got {kernel_size}")
            padding = (kernel_size - 1) // 2 * dilation
        self.linear = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                dilation=dilation, bias=bias)
        self.nonlinear = get_nonlinear(config_str, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


class CAMLayer(nn.Module):
    """The local conv, times a sigmoid mask from (utterance mean + segment means) context."""

    def __init__(self, bn_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int,
                 dilation: int, bias: bool, reduction: int = 2):
        super().__init__()
        self.linear_local = nn.Conv1d(bn_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                      dilation=dilation, bias=bias)
        self.linear1 = nn.Conv1d(bn_channels, bn_channels // reduction, 1)
        self.relu = nn.ReLU(inplace=True)
        self.linear2 = nn.Conv1d(bn_channels // reduction, out_channels, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear_local(x)
        context = x.mean(-1, keepdim=True) + self.seg_pooling(x)
        m = self.sigmoid(self.linear2(self.relu(self.linear1(context))))
        return y * m

    @staticmethod
    def seg_pooling(x: torch.Tensor, seg_len: int = SEG_LEN) -> torch.Tensor:
        """Each frame gets the mean of its ``seg_len``-frame segment (the last one may be shorter)."""
        seg = F.avg_pool1d(x, kernel_size=seg_len, stride=seg_len, ceil_mode=True)
        b, c, n = seg.shape
        seg = seg.unsqueeze(-1).expand(b, c, n, seg_len).reshape(b, c, -1)
        return seg[..., :x.shape[-1]]


class CAMDenseTDNNLayer(nn.Module):
    """nonlinear1 -> 1x1 bottleneck (linear1) -> nonlinear2 -> CAM layer."""

    def __init__(self, in_channels: int, out_channels: int, bn_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, bias: bool = False, config_str: str = "batchnorm-relu"):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"CAM layers need an odd kernel, got {kernel_size}")
        padding = (kernel_size - 1) // 2 * dilation
        self.nonlinear1 = get_nonlinear(config_str, in_channels)
        self.linear1 = nn.Conv1d(in_channels, bn_channels, 1, bias=False)
        self.nonlinear2 = get_nonlinear(config_str, bn_channels)
        self.cam_layer = CAMLayer(bn_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                  dilation=dilation, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class CAMDenseTDNNBlock(nn.ModuleList):
    """Dense connectivity: each layer's output is appended to its input (``tdnnd1`` ... ``tdnndN``)."""

    def __init__(self, num_layers: int, in_channels: int, out_channels: int, bn_channels: int, kernel_size: int,
                 stride: int = 1, dilation: int = 1, bias: bool = False, config_str: str = "batchnorm-relu"):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"tdnnd{i + 1}", CAMDenseTDNNLayer(
                in_channels + i * out_channels, out_channels, bn_channels, kernel_size, stride=stride,
                dilation=dilation, bias=bias, config_str=config_str))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class TransitLayer(nn.Module):
    """Nonlinearity then a 1x1 conv (halving the channels in CAM++)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, config_str: str = "batchnorm-relu"):
        super().__init__()
        self.nonlinear = get_nonlinear(config_str, in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class DenseLayer(nn.Module):
    """A 1x1 conv (on [B, C] or [B, C, T]) then the nonlinearity: the embedding layer."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False, config_str: str = "batchnorm-relu"):
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=bias)
        self.nonlinear = get_nonlinear(config_str, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = self.linear(x.unsqueeze(dim=-1)).squeeze(dim=-1)
        else:
            x = self.linear(x)
        return self.nonlinear(x)


class FrequencyBlock(BasicBlock):
    """A ResNet basic block whose stride applies to the frequency axis only."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__(in_planes, planes, stride, frequency_only=True)


class FCM(nn.Module):
    """The 2-D front of CAM++: [B, F, T] -> [B, m_channels * F/8, T]."""

    def __init__(self, block=FrequencyBlock, num_blocks=(2, 2), m_channels: int = 32, feat_dim: int = 80):
        super().__init__()
        self.in_planes = m_channels
        self.conv1 = nn.Conv2d(1, m_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        self.layer1 = self._make_layer(block, m_channels, num_blocks[0], stride=2)
        self.layer2 = self._make_layer(block, m_channels, num_blocks[1], stride=2)
        self.conv2 = nn.Conv2d(m_channels, m_channels, kernel_size=3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(m_channels)
        self.out_channels = m_channels * (feat_dim // 8)

    def _make_layer(self, block, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        stage, self.in_planes = make_stage(block, self.in_planes, planes, num_blocks, stride)
        return stage

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = self.layer2(self.layer1(out))
        out = F.relu(self.bn2(self.conv2(out)))
        b, c, f, t = out.shape
        return out.reshape(b, c * f, t)


class CAMPPlus(nn.Module):
    """WeSpeaker's CAMPPlus (see the module doc). Keywords are WeSpeaker's ``model_args``;
    ``n_mels`` / ``nOut`` (pyspeaker's names) may be given too and must equal ``feat_dim`` /
    ``embed_dim``."""

    def __init__(self, feat_dim: int = 80, embed_dim: int = 512, pooling_func: str = "TSTP", growth_rate: int = 32,
                 bn_size: int = 4, init_channels: int = 128, config_str: str = "batchnorm-relu",
                 n_mels: int | None = None, nOut: int | None = None):
        super().__init__()
        check_alias("feat_dim", feat_dim, "n_mels", n_mels)
        check_alias("embed_dim", embed_dim, "nOut", nOut)
        self.feat_dim = self.n_mels = int(feat_dim)
        self.embed_dim = int(embed_dim)
        self.head = FCM(block=FrequencyBlock, num_blocks=[2, 2], feat_dim=feat_dim)
        channels = self.head.out_channels
        self.xvector = nn.Sequential(OrderedDict([
            ("tdnn", TDNNLayer(channels, init_channels, 5, stride=2, dilation=1, padding=-1, config_str=config_str)),
        ]))
        channels = init_channels
        for i, (num_layers, kernel_size, dilation) in enumerate(zip((12, 24, 16), (3, 3, 3), (1, 2, 2))):
            self.xvector.add_module(f"block{i + 1}", CAMDenseTDNNBlock(
                num_layers, channels, growth_rate, bn_size * growth_rate, kernel_size, dilation=dilation,
                config_str=config_str))
            channels += num_layers * growth_rate
            self.xvector.add_module(f"transit{i + 1}",
                                    TransitLayer(channels, channels // 2, bias=False, config_str=config_str))
            channels //= 2
        self.xvector.add_module("out_nonlinear", get_nonlinear(config_str, channels))
        # the pooling is both ``pool`` and ``xvector.stats`` (as in WeSpeaker: same state dict keys)
        self.pool = make_pooling(pooling_func, channels)
        self.pool_out_dim = self.pool.get_out_dim()
        self.xvector.add_module("stats", self.pool)
        self.xvector.add_module("dense", DenseLayer(self.pool_out_dim, embed_dim, config_str="batchnorm_"))
        # WeSpeaker's initialisation, for a network trained from scratch here
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight.data)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, feat_dim] -> [B, embed_dim]."""
        return self.xvector(self.head(x.permute(0, 2, 1)))
