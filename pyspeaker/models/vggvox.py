"""VGGVox (VGG-M-40), as voxceleb_trainer's ``VGGVox``.

Five conv layers (96-256-384-256-256 channels) with BN, ReLU and max pooling collapse 40 mel bins
to one; a (4 x 1) conv gives 512 channels per frame, which are pooled over time and projected to
``nOut`` by ``fc``. The ``netcnn.N`` indices and ``sap_linear``/``attention``/``fc`` are
voxceleb_trainer's parameter names. voxceleb_trainer fixes 40 mel bins; here other sizes (>= 39)
work too: whatever mel bins remain after the last conv are averaged (with 40 there is exactly one,
so the result is the same).

Time axis: a crop needs at least 63 frames (the stride-2 conv and three max-pools).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from pyspeaker.models.frontend import MelSpec, check_input_norm, normalize_input
from pyspeaker.models.pooling import POOLING_TYPES, pool, pooled_dim

MIN_MELS = 39
MIN_FRAMES = 63


class VGGVox(nn.Module):
    model_name = "VGGVox"
    # voxceleb_trainer's VGGVox front-end: Hann window and an explicit f_max of 8 kHz
    frontend_spec = MelSpec(window="hann", f_max=8000.0)

    def __init__(self, nOut: int = 512, encoder_type: str = "SAP", n_mels: int = 40, input_norm: str = "instance"):
        super().__init__()
        if encoder_type not in POOLING_TYPES:
            raise ValueError(f"unknown encoder_type {encoder_type!r} for VGGVox; valid: {', '.join(POOLING_TYPES)}")
        if n_mels < MIN_MELS:
            raise ValueError(f"VGGVox needs n_mels >= {MIN_MELS} (its pooling collapses 40 mel bins), got {n_mels}")
        self.encoder_type = encoder_type
        self.n_mels = int(n_mels)
        self.input_norm = check_input_norm(input_norm)
        self.netcnn = nn.Sequential(
            nn.Conv2d(1, 96, kernel_size=(5, 7), stride=(1, 2), padding=(2, 2)),    # 0
            nn.BatchNorm2d(96),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(1, 3), stride=(1, 2)),
            nn.Conv2d(96, 256, kernel_size=(5, 5), stride=(2, 2), padding=(1, 1)),  # 4
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
            nn.Conv2d(256, 384, kernel_size=(3, 3), padding=(1, 1)),                # 8
            nn.BatchNorm2d(384),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=(3, 3), padding=(1, 1)),                # 11
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=(3, 3), padding=(1, 1)),                # 14
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
            nn.Conv2d(256, 512, kernel_size=(4, 1), padding=(0, 0)),                # 18
            nn.BatchNorm2d(512),
            nn.ReLU(inplace=True),
        )
        if encoder_type in ("SAP", "ASP"):
            self.sap_linear = nn.Linear(512, 512)
            self.attention = nn.Parameter(torch.empty(512, 1))
            nn.init.xavier_normal_(self.attention)
        self.fc = nn.Linear(pooled_dim(encoder_type, 512), nOut)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: [batch, time, n_mels] -> embeddings [batch, nOut]."""
        if feats.shape[1] < MIN_FRAMES:
            raise ValueError(f"VGGVox needs crops of at least {MIN_FRAMES} frames, got {feats.shape[1]}")
        x = self.netcnn(normalize_input(feats, self.input_norm).unsqueeze(1))  # [B, 512, F', T']
        x = x.mean(dim=2).transpose(1, 2)  # [B, T', 512]
        x = pool(self.encoder_type, x, getattr(self, "sap_linear", None), getattr(self, "attention", None))
        return self.fc(x)
