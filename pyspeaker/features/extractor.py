"""FeatureExtractor: waveforms -> the features of one FeatureConfig (torch; see the package doc)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from pyspeaker.errors import DataError
from pyspeaker.features.config import FeatureConfig


def _as_tensor(waveform: np.ndarray | torch.Tensor) -> torch.Tensor:
    """1-D float32 samples in [-1, 1]; int16 input is scaled to that range."""
    if isinstance(waveform, torch.Tensor):
        x = waveform
    else:
        arr = np.asarray(waveform)
        if arr.dtype == np.int16:
            arr = arr.astype(np.float32) / 32768.0
        x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if x.dim() != 1:
        raise DataError(f"expected a 1-D (mono) waveform, got shape {tuple(x.shape)}")
    if x.dtype == torch.int16:
        return x.float() / 32768.0
    return x.float()


class FeatureExtractor:
    """Turns waveforms into the features of one FeatureConfig (not thread-safe: one per thread).

    ``device``: where the computation runs ("cpu", "cuda", ...); results are numpy arrays.
    ``seed``: seeds the dither noise (only used when --dither is non-zero).
    """

    def __init__(self, cfg: FeatureConfig, device: str | torch.device = "cpu", seed: int | None = None):
        from pyspeaker.features.kaldi import Workspace

        self.cfg = cfg
        self.device = torch.device(device)
        self._workspace = Workspace()
        self._generator = None
        if seed is not None:
            self._generator = torch.Generator(device=self.device).manual_seed(seed)

    @property
    def dim(self) -> int:
        return self.cfg.dim

    def num_frames(self, num_samples: int) -> int:
        """Frames (before VAD) that ``num_samples`` samples give; 0 = too short (DataError)."""
        cfg = self.cfg
        if cfg.kind != "logmel":
            from pyspeaker.features.kaldi import num_frames

            return num_frames(num_samples, cfg)
        n_fft, hop = cfg.padded_window_size, cfg.window_shift
        if cfg.snip_edges:
            return 0 if num_samples < n_fft else 1 + (num_samples - n_fft) // hop
        return 0 if num_samples <= n_fft // 2 else 1 + num_samples // hop

    def __call__(self, waveform: np.ndarray | torch.Tensor, sample_rate: int) -> np.ndarray:
        """Features [frames, dim] (float32) of one utterance, after CMN and VAD."""
        return self.batch([waveform], sample_rate)[0]

    def batch(self, waveforms: Sequence[np.ndarray | torch.Tensor], sample_rate: int) -> list[np.ndarray]:
        """Features of many utterances at once (one FFT / mel product for all their frames).

        Equals calling the extractor on each utterance.  An utterance with no voiced frame gives
        an empty [0, dim] array (Kaldi's select-voiced-frames skips those; the caller decides).
        One utterance too short for a frame fails the whole call (DataError "too short: ..."):
        screen with ``num_frames`` first to tell which.
        """
        return [np.ascontiguousarray(f.cpu().numpy(), dtype=np.float32) for f in self.batch_tensors(waveforms,
                                                                                                     sample_rate)]

    def batch_tensors(self, waveforms: Sequence[np.ndarray | torch.Tensor], sample_rate: int) -> list[torch.Tensor]:
        """``batch`` as float32 tensors left on the extractor's device (training on the fly)."""
        from pyspeaker.features import cmvn, kaldi, logmel, vad

        cfg = self.cfg
        if float(sample_rate) != cfg.sample_frequency:
            raise DataError(f"sample rate {sample_rate:g} Hz does not match {cfg.describe('sample_frequency')}")
        if not waveforms:
            return []
        tensors = [_as_tensor(w) for w in waveforms]
        if cfg.kind == "logmel":
            feats, energies = logmel.compute(tensors, cfg, self.device, self._workspace, need_energy=cfg.vad)
        else:
            feats, energies = kaldi.compute(tensors, cfg, self.device, self._generator, self._workspace)
        out = []
        for i, f in enumerate(feats):
            voiced = None
            if cfg.vad:
                if cfg.kind == "mfcc":  # Kaldi compute-vad reads the energy / C0 coefficient
                    e = f[:, -1] if cfg.htk_compat else f[:, 0]
                else:
                    e = energies[i]
                voiced = vad.vad_from_config(e.cpu().numpy(), cfg)
            f = cmvn.apply_cmn(f, cfg.cmn, cfg.cmn_window, cfg.norm_vars)
            if voiced is not None:
                f = f[torch.from_numpy(voiced).to(f.device)]
            out.append(f.float())
        return out
