"""WeSpeaker's ResNet family (``ResNet18/34/221/293``) and its temporal pooling layers.

The networks compute exactly what WeSpeaker's ``wespeaker/models/resnet.py`` computes and have
the same module names, so a WeSpeaker state dict loads as it is (``pyspeaker import-model --from
wespeaker``). Input: Kaldi fbank [batch, frames, feat_dim] with the utterance mean subtracted.

    conv1/bn1   3x3 conv, 1 -> m_channels (32), over the (feat_dim x frames) plane
    layer1-4    residual stages at 32, 64, 128, 256 channels (x4 for bottleneck blocks), the
                last three with stride 2 in frequency and time: feat_dim / 8 bins remain
    pool        ``pooling_func`` over time of the (channels x bins) maps (TSTP: mean and std)
    seg_1       Linear to embed_dim: the embedding, or with ``two_emb_layer`` ReLU, seg_bn_1
                (BatchNorm without affine), seg_2 -- whose output is then the embedding

ResNet18/34 use basic blocks ([2,2,2,2] and [3,4,6,3]), ResNet221/293 bottleneck blocks
([6,16,48,3] and [10,20,64,3]). WeSpeaker's forward returns a pair (first and last embedding
layer); these return the last, which is what WeSpeaker's extraction keeps (``outputs[-1]``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# --------------------------------------------------------------------------- pooling (WeSpeaker's)
# Each takes [B, C, T] or [B, C, F, T] (time last) and returns [B, out_dim]; ``in_dim`` is C (x F).
# Extra keywords are accepted and ignored, as WeSpeaker's do (ECAPA passes global_context_att to all).
STD_EPS = 1e-7  # added to the variance (TSTP, TSDP) or its floor (attentive poolings), as WeSpeaker


class TAP(nn.Module):
    """Temporal average pooling: the mean over time."""

    def __init__(self, in_dim: int = 0, **kwargs):
        super().__init__()
        self.in_dim = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=-1).flatten(start_dim=1)

    def get_out_dim(self) -> int:
        return self.in_dim


class TSDP(nn.Module):
    """Temporal standard-deviation pooling (unbiased variance, as torch.var)."""

    def __init__(self, in_dim: int = 0, **kwargs):
        super().__init__()
        self.in_dim = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.var(x, dim=-1) + STD_EPS).flatten(start_dim=1)

    def get_out_dim(self) -> int:
        return self.in_dim


class TSTP(nn.Module):
    """Temporal statistics pooling: mean and (unbiased) standard deviation over time, concatenated."""

    def __init__(self, in_dim: int = 0, **kwargs):
        super().__init__()
        self.in_dim = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1).flatten(start_dim=1)
        std = torch.sqrt(torch.var(x, dim=-1) + STD_EPS).flatten(start_dim=1)
        return torch.cat((mean, std), 1)

    def get_out_dim(self) -> int:
        return self.in_dim * 2


def _as_3d(x: torch.Tensor) -> torch.Tensor:
    """[B, C, F, T] -> [B, C*F, T] (ResNet maps); [B, C, T] unchanged."""
    return x.reshape(x.shape[0], x.shape[1] * x.shape[2], x.shape[3]) if x.dim() == 4 else x


class ASTP(nn.Module):
    """Attentive statistics pooling (ECAPA-TDNN's): a tanh bottleneck gives per-channel frame
    weights; the weighted mean and std. ``global_context_att``: the attention also sees the
    utterance's mean and std beside each frame."""

    def __init__(self, in_dim: int, bottleneck_dim: int = 128, global_context_att: bool = False, **kwargs):
        super().__init__()
        self.in_dim = in_dim
        self.global_context_att = global_context_att
        # 1x1 convolutions rather than Linear: no transposes (and WeSpeaker's tensor shapes)
        self.linear1 = nn.Conv1d(in_dim * 3 if global_context_att else in_dim, bottleneck_dim, kernel_size=1)
        self.linear2 = nn.Conv1d(bottleneck_dim, in_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_3d(x)
        if self.global_context_att:
            mean = torch.mean(x, dim=-1, keepdim=True).expand_as(x)
            std = torch.sqrt(torch.var(x, dim=-1, keepdim=True) + STD_EPS).expand_as(x)
            x_in = torch.cat((x, mean, std), dim=1)
        else:
            x_in = x
        alpha = torch.softmax(self.linear2(torch.tanh(self.linear1(x_in))), dim=2)
        mean = torch.sum(alpha * x, dim=2)
        var = torch.sum(alpha * (x ** 2), dim=2) - mean ** 2
        return torch.cat([mean, torch.sqrt(var.clamp(min=STD_EPS))], dim=1)

    def get_out_dim(self) -> int:
        return 2 * self.in_dim


class MHASTP(nn.Module):
    """Multi-head attentive statistics pooling: the channels split into ``head_num`` heads, each
    with its own attention (``layer_num`` 1x1 convs, tanh between) and weighted mean and std."""

    def __init__(self, in_dim: int, layer_num: int = 2, head_num: int = 2, d_s: int = 1,
                 bottleneck_dim: int = 64, **kwargs):
        super().__init__()
        if in_dim % head_num:
            raise ValueError(f"MHASTP: in_dim {in_dim} is not divisible by head_num {head_num}")
        self.in_dim = in_dim
        self.head_num = head_num
        d_model = in_dim // head_num
        self.d_s = d_model if d_s > 1 else 1  # WeSpeaker: d_s > 1 means one weight per channel
        dims = [bottleneck_dim] * (layer_num + 1)
        dims[0], dims[-1] = d_model, self.d_s
        heads = []
        for _ in range(head_num):
            att = nn.Sequential()
            for i in range(layer_num - 1):
                att.add_module(f"att_{i}", nn.Conv1d(dims[i], dims[i + 1], 1, 1))
                att.add_module(f"tanh{i}", nn.Tanh())
            att.add_module(f"att_{layer_num - 1}", nn.Conv1d(dims[layer_num - 1], dims[layer_num], 1, 1))
            heads.append(att)
        self.heads_att_trans = nn.ModuleList(heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_3d(x)
        out = []
        for chunk, att in zip(torch.chunk(x, self.head_num, 1), self.heads_att_trans):
            alpha = F.softmax(att(chunk), dim=-1)
            mean = torch.sum(alpha * chunk, dim=2)
            var = torch.sum(alpha * chunk ** 2, dim=2) - mean ** 2
            out.append(torch.cat((mean, torch.sqrt(var.clamp(min=STD_EPS))), dim=1))
        return torch.cat(out, dim=1)

    def get_out_dim(self) -> int:
        return 2 * self.in_dim


class MQMHASTP(nn.Module):
    """Multi-query multi-head attentive statistics pooling: ``query_num`` MHASTPs, concatenated."""

    def __init__(self, in_dim: int, layer_num: int = 2, query_num: int = 2, head_num: int = 8, d_s: int = 2,
                 bottleneck_dim: int = 64, **kwargs):
        super().__init__()
        self.n_query = nn.ModuleList(MHASTP(in_dim, layer_num=layer_num, head_num=head_num, d_s=d_s,
                                            bottleneck_dim=bottleneck_dim) for _ in range(query_num))
        self.query_num = query_num
        self.in_dim = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_3d(x)
        return torch.cat([q(x) for q in self.n_query], dim=-1)

    def get_out_dim(self) -> int:
        return self.in_dim * 2 * self.query_num


POOLING = {"TAP": TAP, "TSDP": TSDP, "TSTP": TSTP, "ASTP": ASTP, "MHASTP": MHASTP, "MQMHASTP": MQMHASTP}


def make_pooling(pooling_func: str, in_dim: int, **kwargs) -> nn.Module:
    """WeSpeaker's ``getattr(pooling_layers, pooling_func)(in_dim=..., **kwargs)``."""
    if pooling_func not in POOLING:
        raise ValueError(f"unknown pooling_func {pooling_func!r}; supported: {', '.join(POOLING)}")
    return POOLING[pooling_func](in_dim=in_dim, **kwargs)


def check_alias(name: str, value, alias: str, alias_value) -> None:
    """pyspeaker's option names (n_mels, nOut) may be given beside WeSpeaker's; they must agree."""
    if alias_value is not None and int(alias_value) != int(value):
        raise ValueError(f"{alias}={alias_value} differs from {name}={value}")


# --------------------------------------------------------------------------- ResNet
class BasicBlock(nn.Module):
    """Two 3x3 convs with BN; 1x1 conv + BN shortcut when the shape changes. ``stride`` strides
    both axes, or only the first (frequency) one with ``frequency_only`` (CAM++'s front)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, frequency_only: bool = False):
        super().__init__()
        conv_stride = (stride, 1) if frequency_only else stride
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=conv_stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=conv_stride, bias=False),
                nn.BatchNorm2d(self.expansion * planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def make_stage(block, in_planes: int, planes: int, num_blocks: int, stride: int) -> tuple[nn.Sequential, int]:
    """A ResNet stage of ``num_blocks`` blocks, the first with ``stride``; returns it and its output
    channels (the next stage's ``in_planes``)."""
    layers = []
    for s in [stride] + [1] * (num_blocks - 1):
        layers.append(block(in_planes, planes, s))
        in_planes = planes * block.expansion
    return nn.Sequential(*layers), in_planes


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (with the stride), 1x1 expand to 4x planes, each with BN; shortcut as BasicBlock."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, self.expansion * planes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(self.expansion * planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(self.expansion * planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class WeSpeakerResNet(nn.Module):
    """WeSpeaker's ResNet (see the module doc); ``block`` and ``num_blocks`` choose the depth.

    Keywords are WeSpeaker's ``model_args``; ``n_mels`` / ``nOut`` (pyspeaker's names) may be
    given too and must then equal ``feat_dim`` / ``embed_dim``.
    """

    def __init__(self, block: type[nn.Module], num_blocks: list[int], *, feat_dim: int = 80,
                 embed_dim: int = 256, pooling_func: str = "TSTP", two_emb_layer: bool = False,
                 m_channels: int = 32, n_mels: int | None = None, nOut: int | None = None):
        super().__init__()
        check_alias("feat_dim", feat_dim, "n_mels", n_mels)
        check_alias("embed_dim", embed_dim, "nOut", nOut)
        self.feat_dim = self.n_mels = int(feat_dim)
        self.embed_dim = int(embed_dim)
        self.two_emb_layer = bool(two_emb_layer)
        # three stride-2 stages leave feat_dim / 8 frequency bins of m_channels * 8 (* expansion) maps
        self.stats_dim = int(feat_dim / 8) * m_channels * 8
        self.in_planes = m_channels
        self.conv1 = nn.Conv2d(1, m_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        self.layer1 = self._make_layer(block, m_channels, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, m_channels * 2, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, m_channels * 4, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, m_channels * 8, num_blocks[3], stride=2)
        self.pool = make_pooling(pooling_func, self.stats_dim * block.expansion)
        self.pool_out_dim = self.pool.get_out_dim()
        self.seg_1 = nn.Linear(self.pool_out_dim, embed_dim)
        if self.two_emb_layer:
            self.seg_bn_1 = nn.BatchNorm1d(embed_dim, affine=False)
            self.seg_2 = nn.Linear(embed_dim, embed_dim)
        else:
            self.seg_bn_1 = nn.Identity()
            self.seg_2 = nn.Identity()

    def _make_layer(self, block, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        stage, self.in_planes = make_stage(block, self.in_planes, planes, num_blocks, stride)
        return stage

    def frame_level(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, F] features -> the last stage's maps [B, C, F/8, T/8]."""
        out = x.permute(0, 2, 1).unsqueeze(1)  # (B, T, F) -> (B, 1, F, T)
        out = F.relu(self.bn1(self.conv1(out)))
        return self.layer4(self.layer3(self.layer2(self.layer1(out))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, feat_dim] -> [B, embed_dim] (the last embedding layer's output)."""
        embed_a = self.seg_1(self.pool(self.frame_level(x)))
        if not self.two_emb_layer:
            return embed_a
        return self.seg_2(self.seg_bn_1(F.relu(embed_a)))


class ResNet18(WeSpeakerResNet):
    """WeSpeaker ResNet18: basic blocks [2, 2, 2, 2]."""

    def __init__(self, **model_args):
        super().__init__(BasicBlock, [2, 2, 2, 2], **model_args)


class ResNet34(WeSpeakerResNet):
    """WeSpeaker ResNet34: basic blocks [3, 4, 6, 3] (~6.6 M parameters at 80 bins, embed 256)."""

    def __init__(self, **model_args):
        super().__init__(BasicBlock, [3, 4, 6, 3], **model_args)


class ResNet221(WeSpeakerResNet):
    """WeSpeaker ResNet221: bottleneck blocks [6, 16, 48, 3]."""

    def __init__(self, **model_args):
        super().__init__(Bottleneck, [6, 16, 48, 3], **model_args)


class ResNet293(WeSpeakerResNet):
    """WeSpeaker ResNet293: bottleneck blocks [10, 20, 64, 3]."""

    def __init__(self, **model_args):
        super().__init__(Bottleneck, [10, 20, 64, 3], **model_args)
