"""Kaldi's x-vector TDNN (Snyder et al. 2018; egs/voxceleb/v2 ``run_xvector.sh``).

Frame level, each an affine layer over spliced frames followed by ReLU and batch norm (Kaldi's
``relu-batchnorm-layer``), implemented as dilated 1-D convolutions without padding:

    tdnn1  context [-2, -1, 0, 1, 2]  -> 512
    tdnn2  context {-2, 0, 2}         -> 512
    tdnn3  context {-3, 0, 3}         -> 512
    tdnn4  context {0}                -> 512
    tdnn5  context {0}                -> 1500

then statistics pooling (mean and standard deviation over time, 3000 values; other poolings are
options) and the segment layer ``segment6`` whose affine output is the x-vector (``nOut``, 512 in
Kaldi). Kaldi's second segment layer and its output layer form the classifier, which here is the
loss function. The frame layers see 15 frames of context; shorter crops are padded by repeating
their edge frames.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pyspeaker.models.frontend import MelSpec, check_input_norm, normalize_input
from pyspeaker.models.pooling import POOLING_TYPES, pool, pooled_dim

# (kernel size, dilation) for each frame layer: contiguous [-2, 2], {-2, 0, 2}, {-3, 0, 3}, {0}, {0}
CONTEXTS = ((5, 1), (3, 2), (3, 3), (1, 1), (1, 1))
CONTEXT_FRAMES = 1 + sum((k - 1) * d for k, d in CONTEXTS)  # 15


class TDNNLayer(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, kernel: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size=kernel, dilation=dilation)
        self.bn = nn.BatchNorm1d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class TDNN(nn.Module):
    model_name = "TDNN"
    frontend_spec = MelSpec(preemphasis=True)

    def __init__(self, nOut: int = 512, encoder_type: str = "STATS", n_mels: int = 40, input_norm: str = "instance",
                 hidden: int = 512, stats_dim: int = 1500):
        super().__init__()
        if encoder_type not in POOLING_TYPES:
            raise ValueError(f"unknown encoder_type {encoder_type!r} for TDNN; valid: {', '.join(POOLING_TYPES)}")
        self.encoder_type = encoder_type
        self.n_mels = int(n_mels)
        self.input_norm = check_input_norm(input_norm)
        dims = [self.n_mels, hidden, hidden, hidden, hidden, stats_dim]
        for i, (kernel, dilation) in enumerate(CONTEXTS):
            setattr(self, f"tdnn{i + 1}", TDNNLayer(dims[i], dims[i + 1], kernel, dilation))
        if encoder_type in ("SAP", "ASP"):
            self.sap_linear = nn.Linear(stats_dim, stats_dim)
            self.attention = nn.Parameter(torch.empty(stats_dim, 1))
            nn.init.xavier_normal_(self.attention)
        self.segment6 = nn.Linear(pooled_dim(encoder_type, stats_dim), nOut)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: [batch, time, n_mels] -> x-vectors [batch, nOut]."""
        x = normalize_input(feats, self.input_norm)
        short = CONTEXT_FRAMES - x.shape[2]
        if short > 0:
            x = F.pad(x, (short // 2, short - short // 2), mode="replicate")
        for i in range(1, 6):
            x = getattr(self, f"tdnn{i}")(x)
        x = pool(self.encoder_type, x.transpose(1, 2), getattr(self, "sap_linear", None),
                 getattr(self, "attention", None))
        return self.segment6(x)
