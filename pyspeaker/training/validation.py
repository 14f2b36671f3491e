"""Validation during training: embeddings of a trial list's utterances, cosine scores, EER and minDCF.

The validation utterances come from a feature store (when training from a store) or a data dir
(when training from audio: features are computed as for training, without augmentation). Each
utterance is embedded whole, as at extraction time; scores are cosine similarities.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pyspeaker.errors import ConfigError


class Validator:
    def __init__(self, cfg: dict, training_from_audio: bool, feature_cfg=None):
        from pyspeaker.data.trials import read_trials

        v = cfg["valid"]
        self.trials = read_trials(v["trials"])
        if self.trials.labels is None:
            raise ConfigError("valid.trials has no target/nontarget labels", path=v["trials"])
        self.p_target = float(v["p_target"])
        self.utts = sorted(set(self.trials.enroll) | set(self.trials.test))
        self.store = self.datadir = None
        self.feature_cfg = feature_cfg
        if training_from_audio:
            if not v["data_dir"]:
                raise ConfigError("validation while training from audio needs the validation data dir "
                                  "(--set valid.data_dir=DIR)")
            from pyspeaker.data.kaldi_dir import DataDir

            self.datadir = DataDir.load(v["data_dir"])
            where, have = Path(v["data_dir"]) / "utt2spk", self.datadir.utt2spk
        else:
            if not v["features"]:
                raise ConfigError("validation needs the feature store of the validation utterances "
                                  "(--set valid.features=STORE)")
            from pyspeaker.training.data import open_features

            self.store = open_features(v["features"], in_memory=False)
            where, have = Path(v["features"]), self.store.index
        missing = [u for u in self.utts if u not in have]
        if missing:
            raise ConfigError(f"{len(missing)} utterances of valid.trials are not in {where} (first: {missing[0]})",
                              path=v["trials"])

    def describe(self) -> str:
        return f"{len(self.trials)} trials of {len(self.utts)} utterances from {self.trials.path}"

    @torch.no_grad()
    def embeddings(self, model: torch.nn.Module, device: torch.device) -> np.ndarray:
        if self.store is not None:
            return self._from_store(model, device)
        return self._from_audio(model, device)

    def _from_store(self, model, device, max_batch_frames: int = 20000) -> np.ndarray:
        from pyspeaker.extraction import embed_by_length

        rows = [self.store.index[u] for u in self.utts]
        return embed_by_length(model, lambda k: self.store.read(rows[k]), [self.store.lengths[i] for i in rows],
                               device, max_batch_frames)

    def _from_audio(self, model, device) -> np.ndarray:
        from pyspeaker.audio import iter_data_dir_audio

        extractor = None
        if self.feature_cfg is not None:
            from pyspeaker.features import FeatureExtractor

            extractor = FeatureExtractor(self.feature_cfg)
        out = []
        for _, samples, rate in iter_data_dir_audio(self.datadir, self.utts):
            x = samples if extractor is None else extractor(samples, rate)
            out.append(model(torch.from_numpy(np.ascontiguousarray(x))[None].to(device)).float().cpu().numpy()[0])
        return np.stack(out)

    def __call__(self, model: torch.nn.Module, device: torch.device) -> dict:
        from pyspeaker.metrics import compute_eer, compute_min_dcf
        from pyspeaker.scoring.pipeline import score_codes

        was_training = model.training
        model.eval()
        try:
            emb = self.embeddings(model, device)
        finally:
            model.train(was_training)
        scores = score_codes(self.trials, self.utts, emb)
        labels = np.asarray(self.trials.labels, dtype=bool)
        eer, _ = compute_eer(scores[labels], scores[~labels])
        min_dcf, _ = compute_min_dcf(scores[labels], scores[~labels], self.p_target)
        return {"eer": 100.0 * eer, "min_dcf": min_dcf, "trials": len(self.trials), "p_target": self.p_target}
