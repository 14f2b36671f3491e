"""Training examples: random fixed-length crops labelled by speaker, from features or from audio.

Sources (``load_train_data``):

- a feature store (``--features``): the HDF5 store of make-features, or a Kaldi ``feats.scp``
  (a data dir or store folder holding ``feats.scp`` + ``utt2spk``, or the scp file itself);
- audio (``--data-dir``): a Kaldi data dir, cropped at random and turned into features on the
  fly -- by a Kaldi feature config (``data.feat_conf``) or by the network's own waveform
  front-end (``model.waveform: true``) -- with optional waveform augmentation.

Datasets take a list of indices and return a whole batch (``feats``, ``labels``), so a DataLoader
used with ``batch_size=None`` pays Python overhead once per batch, not once per crop. Crop
positions and augmentation draws come from generators seeded by (seed, epoch, index): a crop
does not depend on the batch it is in, the worker that makes it, or on a resumed run.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pyspeaker.data.tables import read_utt2spk
from pyspeaker.errors import ConfigError, DataError
from pyspeaker.log import get_logger
from pyspeaker.store.features import FeatureStore

log = get_logger(__name__)



def crop_frames(feats: np.ndarray, length: int, start: int) -> np.ndarray:
    """``length`` frames from ``start``; shorter utterances are wrapped around (repeated) first."""
    if feats.shape[0] < length:
        feats = np.pad(feats, ((0, length - feats.shape[0]), (0, 0)), mode="wrap")
    return feats[start:start + length]


# ----------------------------------------------------------------------------- feature sources

class KaldiFeatures:
    """A Kaldi ``feats.scp`` read into memory, with the FeatureStore interface the trainer uses."""

    def __init__(self, scp: str | os.PathLike):
        import kaldiio

        self.h5_path = Path(scp)  # the file to name in messages
        self.dir = self.h5_path.parent
        from pyspeaker.data.kaldi_dir import read_table

        rows = read_table(self.h5_path, max_fields=None, rest_of_line=True, form="<utt> <ark:offset>")
        entries = dict(sorted((utt, value) for _, utt, value in rows))
        self.ids = list(entries)
        mats = []
        for utt, entry in entries.items():
            try:
                m = np.asarray(kaldiio.load_mat(entry), dtype=np.float32)
            except Exception as e:  # kaldiio raises many kinds for a bad offset or file
                raise DataError(f"cannot read features of {utt!r} ({entry}): {type(e).__name__}: {e}",
                                path=self.h5_path) from None
            if m.ndim != 2:
                raise DataError(f"features of {utt!r} are not a matrix (shape {m.shape})", path=self.h5_path)
            mats.append(m)
        if not mats:
            raise DataError("feats.scp is empty", path=self.h5_path)
        dims = {m.shape[1] for m in mats}
        if len(dims) > 1:
            raise DataError(f"features of different dimensions in one scp: {sorted(dims)}", path=self.h5_path)
        self.dim = dims.pop()
        self.lengths = np.array([m.shape[0] for m in mats], dtype=np.int64)
        self.offsets = np.r_[0, np.cumsum(self.lengths)]
        self._data = np.concatenate(mats)
        self.index = {u: i for i, u in enumerate(self.ids)}
        manifest = self.dir / "manifest.json"
        meta = {}
        if manifest.is_file():
            import json

            meta = json.loads(manifest.read_text())
        self.feat_id = str(meta.get("feat_id", "")) or "kaldi_" + hashlib.sha1(
            str(self.h5_path.resolve()).encode()).hexdigest()[:8]
        self.config = meta.get("config", {}) if isinstance(meta.get("config"), dict) else {}

    def __len__(self) -> int:
        return len(self.ids)

    def read(self, i: int, start: int = 0, length: int | None = None) -> np.ndarray:
        lo = int(self.offsets[i]) + start
        hi = int(self.offsets[i + 1]) if length is None else lo + length
        return self._data[lo:hi]


def open_features(path: str | os.PathLike, in_memory: bool = True):
    """A FeatureStore (``feats.h5``) or, where there is none, a Kaldi ``feats.scp`` (KaldiFeatures)."""
    path = Path(path)
    if path.is_file() and path.suffix == ".scp":
        return KaldiFeatures(path)
    if path.is_dir() and not (path / "feats.h5").is_file() and (path / "feats.scp").is_file():
        return KaldiFeatures(path / "feats.scp")
    return FeatureStore(path, in_memory=in_memory)


class CropDataset(torch.utils.data.Dataset):
    """Random crops of stored features. Item ``i`` = (crop of utterance i, speaker label); a list of
    indices gives a batch ([n, crop, dim] tensor, [n] labels). Crops are seeded by (seed, epoch, i)."""

    def __init__(self, store, utt2spk: dict[str, str], crop: int, seed: int = 0):
        missing = [u for u in store.ids if u not in utt2spk]
        if missing:
            raise DataError(f"{len(missing)} utterances of the store have no speaker (first: {missing[0]})",
                            path=store.dir / "utt2spk")
        self.store = store
        self.speakers = sorted({utt2spk[u] for u in store.ids})
        spk_index = {s: i for i, s in enumerate(self.speakers)}
        self.labels = np.array([spk_index[utt2spk[u]] for u in store.ids], dtype=np.int64)
        self.crop = crop
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.store)

    def start(self, i: int) -> int:
        n = int(self.store.lengths[i])
        rng = np.random.default_rng((self.seed, self.epoch, i))
        return int(rng.integers(0, max(n - self.crop, 0) + 1))

    def _one(self, i: int) -> np.ndarray:
        if int(self.store.lengths[i]) >= self.crop:
            return self.store.read(i, self.start(i), self.crop)
        return crop_frames(self.store.read(i), self.crop, 0)

    def __getitem__(self, i):
        if isinstance(i, (list, tuple, np.ndarray)):
            return self.batch(i)
        return torch.from_numpy(np.ascontiguousarray(self._one(i))), int(self.labels[i])

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        indices = [int(i) for i in indices]
        data = getattr(self.store, "_data", None)
        long = [k for k, i in enumerate(indices) if int(self.store.lengths[i]) >= self.crop]
        if data is not None and len(long) == len(indices):
            # one gather for the whole batch instead of a slice per crop
            firsts = np.array([int(self.store.offsets[i]) + self.start(i) for i in indices], dtype=np.int64)
            feats = data[firsts[:, None] + np.arange(self.crop)]
        else:
            feats = np.stack([self._one(i) for i in indices])
        return torch.from_numpy(feats), torch.from_numpy(self.labels[indices])


# ----------------------------------------------------------------------------- audio

def samples_for_frames(extractor, frames: int) -> int:
    """The fewest samples from which ``extractor`` makes at least ``frames`` frames."""
    cfg = extractor.cfg
    lo, hi = max(1, (frames - 1) * cfg.window_shift), (frames + 1) * cfg.window_shift + cfg.padded_window_size
    while lo < hi:  # num_frames grows with the number of samples
        mid = (lo + hi) // 2
        if extractor.num_frames(mid) >= frames:
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass
class _Entry:
    wav: str                   # wav.scp entry of the recording
    line: int | None           # its wav.scp line (for messages)
    segment: tuple[float, float] | None = None


class AudioCropDataset(torch.utils.data.Dataset):
    """Random crops of audio from a Kaldi data dir, made into network inputs on the fly.

    ``feature_cfg`` given: Kaldi-style features [n, crop_frames, dim]; None: raw waveform crops
    [n, samples] of voxceleb_trainer's length (frames * 160 + 240) for a waveform model.
    ``speed_factors`` (e.g. 0.9, 1.0, 1.1): a copy of every utterance at each speed, each factor
    other than 1 making new speakers.
    """

    def __init__(self, datadir, crop: int, seed: int = 0, feature_cfg=None, augment=None,
                 speed_factors: tuple[float, ...] = (1.0,), sample_rate: int = 16000, specaugment: dict | None = None,
                 audio_bank: str | os.PathLike | bool | None = False):
        from pyspeaker.models.frontend import crop_samples

        self.datadir_path = datadir.path
        # SpecAugment bands drawn per crop (features only; a waveform model's are drawn in the network)
        self.specaugment = specaugment if feature_cfg is not None else None
        self.deferred = False  # True: items are RawBatches, finished on the device (TrainData.on_device)
        self.crop = int(crop)
        self.seed = int(seed)
        self.epoch = 0
        self.feature_cfg = feature_cfg
        self.augment = augment
        self.sample_rate = int(feature_cfg.sample_frequency) if feature_cfg is not None else int(sample_rate)
        self._extractor = None
        self._extractor_pid = None
        wav_path = datadir.file("wav.scp")
        self.entries: dict[str, _Entry] = {}
        for utt in datadir.utts:
            if datadir.segments is not None:
                if utt not in datadir.segments:
                    raise DataError(f"utterance {utt!r} has no audio: it is not in segments", path=datadir.file("segments"))
                rec, start, end = datadir.segments[utt]
                seg = (start, end)
            else:
                rec, seg = utt, None
            if rec not in datadir.wav_scp:
                raise DataError(f"no wav.scp entry for recording {rec!r}", path=wav_path)
            self.entries[utt] = _Entry(datadir.wav_scp[rec], datadir.line_of("wav.scp", rec), seg)
        # ``audio_bank`` (a cache dir, or None: in memory): the recordings decoded once into a
        # memory-mapped bank, crops sliced from it (no file opened per crop); the same draws give
        # the same crops as reading the files, at the model's rate
        self.bank, self.bank_spans = None, {}
        if audio_bank is not False:
            self._open_bank(datadir, None if audio_bank is None else audio_bank)
        self.items: list[tuple[str, float]] = [(u, float(f)) for f in speed_factors for u in datadir.utts]
        names = [self._speaker(datadir.utt2spk[u], f) for u, f in self.items]
        self.speakers = sorted(set(names))
        index = {s: i for i, s in enumerate(self.speakers)}
        self.labels = np.array([index[s] for s in names], dtype=np.int64)
        if feature_cfg is None:
            self.need = crop_samples(self.crop)
        else:
            self.need = samples_for_frames(self.extractor, self.crop)
        self._say_rate(datadir)
        from pyspeaker.training.augment import BatchAugmenter

        self.augmenter = BatchAugmenter(self.need, self.sample_rate, feature_cfg, self.crop)  # CPU, no masks

    def _open_bank(self, datadir, cache_dir) -> None:
        from pyspeaker.audio import segment_problem
        from pyspeaker.training.banks import build_bank

        recs = sorted({e.wav for e in self.entries.values()})
        self.bank = build_bank("audio", [("audio", r) for r in recs], self.sample_rate, datadir.file("wav.scp"),
                               cache_dir)
        where = {r: i for i, r in enumerate(self.bank.entries)}
        sr = self.sample_rate
        for utt, e in self.entries.items():
            i = where[e.wav]
            lo, total = int(self.bank.offsets[i]), self.bank.length(i)
            if e.segment is None:
                self.bank_spans[utt] = (lo, lo + total)
                continue
            start, end = e.segment
            message = segment_problem(start, -1 if end is None else end, total / sr)
            if message:
                raise DataError(message, path=datadir.file("segments"), line=datadir.line_of("segments", utt))
            stop = total if end in (None, -1) else min(total, int(end * sr))
            self.bank_spans[utt] = (lo + int(start * sr), lo + stop)

    def _say_rate(self, datadir) -> None:
        """One log line when the audio is at another rate than the model's (its crops are resampled)."""
        import soundfile

        first = next(iter(self.entries.values()), None)
        if first is None or not os.path.isfile(first.wav):
            return
        try:
            rate = soundfile.info(first.wav).samplerate
        except RuntimeError:
            return  # an undecodable file is reported, with its line, when it is read
        if rate != self.sample_rate:
            from pyspeaker.log import get_logger

            get_logger(__name__).info("audio of %s is at %d Hz: training crops are resampled to the model's %d Hz",
                                      datadir.path, rate, self.sample_rate)

    @staticmethod
    def _speaker(spk: str, factor: float) -> str:
        return spk if factor == 1.0 else f"sp{factor:g}-{spk}"  # Kaldi's perturb_data_dir_speed.sh names

    @property
    def extractor(self):
        """One FeatureExtractor per process (it is not thread-safe and holds work buffers)."""
        if self._extractor is None or self._extractor_pid != os.getpid():
            from pyspeaker.features import FeatureExtractor

            self._extractor = FeatureExtractor(self.feature_cfg)
            self._extractor_pid = os.getpid()
        return self._extractor

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_extractor"] = None
        return state

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def read_crop(self, utt: str, length: int, rng: np.random.Generator, out: np.ndarray | None = None) -> np.ndarray:
        """``length`` samples from a random point of ``utt`` (wrapped around when shorter), written
        into ``out`` when given (a row of the batch: no stacking copy)."""
        from pyspeaker.audio import read_random_span

        out = np.empty(length, dtype=np.float32) if out is None else out
        if self.bank is not None:  # as read_random_span draws and wraps
            lo, hi = self.bank_spans[utt]
            if hi - lo > length:
                lo += int(rng.integers(0, hi - lo - length + 1))
                out[:] = self.bank.samples[lo:lo + length]
            else:
                out[:] = np.resize(np.asarray(self.bank.samples[lo:hi], dtype=np.float32), length)
            return out
        e = self.entries[utt]
        start, end = e.segment if e.segment is not None else (0.0, None)
        out[:] = read_random_span(e.wav, length, rng, self.sample_rate, start=start, end=end,
                                  path_for_errors=os.path.join(self.datadir_path, "wav.scp"), line=e.line,
                                  resample_from_any=True)
        return out

    def raw_length(self, factor: float) -> int:
        """Samples read for a crop at speed ``factor``: ``need`` after speed perturbation, and 16 to spare."""
        return self.need if factor == 1.0 else int(math.ceil(self.need * factor)) + 16

    def draws(self, i: int, out: np.ndarray | None = None):
        """Item ``i``'s raw crop (``raw_length`` samples, into ``out`` when given), its speed factor,
        its CropDraw and SpecAugment bands: all from the generator seeded by (seed, epoch, i)."""
        from pyspeaker.training.augment import CropDraw, draw_masks

        utt, factor = self.items[i]
        rng = np.random.default_rng((self.seed, self.epoch, i, 7))
        wav = self.read_crop(utt, self.raw_length(factor), rng, out)
        draw = self.augment.draw(rng, self.need) if self.augment is not None else CropDraw()
        masks = None
        if self.specaugment is not None:
            sa = self.specaugment
            masks = (draw_masks(rng, sa["freq_masks"], sa["freq_width"], self.feature_cfg.dim),
                     draw_masks(rng, sa["time_masks"], sa["time_width"], self.crop))
        return wav, factor, draw, masks

    def waveform(self, i: int) -> np.ndarray:
        """The per-crop reference: item ``i``'s speed-perturbed, augmented crop of ``self.need`` samples."""
        from pyspeaker.training.augment import speed_perturb

        wav, factor, draw, _ = self.draws(i)
        if factor != 1.0:
            wav = speed_perturb(wav, factor, self.sample_rate)
            wav = np.resize(wav, self.need) if len(wav) < self.need else wav[:self.need]
        return self.augment.apply_draw(wav, draw) if self.augment is not None else wav

    def raw_batch(self, indices):
        """The RawBatch of ``indices``: raw crops grouped by speed factor, the draws' noise segments
        and RIRs gathered from the banks, SpecAugment bands."""
        from pyspeaker.training.augment import RawBatch, gather_draws

        indices = [int(i) for i in indices]
        groups: dict[float, list[int]] = {}
        for row, i in enumerate(indices):
            groups.setdefault(self.items[i][1], []).append(row)
        crops = {f: torch.empty(len(rows), self.raw_length(f)) for f, rows in groups.items()}
        slot = {row: crops[f][k].numpy() for f, rows in groups.items() for k, row in enumerate(rows)}
        made = [self.draws(i, out=slot[row]) for row, i in enumerate(indices)]  # each crop read into its row
        waves = [(torch.tensor(rows, dtype=torch.long), crops[f], f) for f, rows in sorted(groups.items())]
        noise = gather_draws(self.augment, [m[2] for m in made], self.need)
        sa = self.specaugment or {"freq_masks": 0, "time_masks": 0}
        freq = np.zeros((len(indices), sa["freq_masks"] if self.specaugment else 0, 2), dtype=np.int64)
        time = np.zeros((len(indices), sa["time_masks"] if self.specaugment else 0, 2), dtype=np.int64)
        for row, m in enumerate(made):
            if m[3] is not None:
                freq[row], time[row] = m[3]
        seed = int(np.random.default_rng((self.seed, self.epoch, indices[0], len(indices), 11)).integers(2 ** 62))
        return RawBatch(torch.from_numpy(self.labels[indices]), waves, *noise, torch.from_numpy(freq),
                        torch.from_numpy(time), seed)

    def __getitem__(self, i):
        if isinstance(i, (list, tuple, np.ndarray)):
            return self.raw_batch(i) if self.deferred else self.batch(i)
        feats, labels = self.batch([i])
        return feats[0], int(labels[0])

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Finished (inputs, labels) on the CPU, by the batched path (without SpecAugment bands)."""
        return self.augmenter.apply(self.raw_batch(indices), "cpu")


# ----------------------------------------------------------------------------- what the trainer gets

@dataclass
class TrainData:
    dataset: torch.utils.data.Dataset
    labels: np.ndarray           # speaker index of every item
    speakers: list[str]
    source: Path                 # the store or data dir (for messages)
    feat_dim: int | None         # None: raw waveform input
    feat_id: str
    feat_config: dict = field(default_factory=dict)
    description: str = ""

    @property
    def masks_in_loader(self) -> bool:
        """SpecAugment is drawn per crop by the data and applied by ``on_device`` (so not by the network)."""
        return getattr(self.dataset, "specaugment", None) is not None

    def on_device(self, loader, device):
        """``loader`` (over this dataset, not yet iterated) yielding (inputs, labels) made on ``device``:
        for audio, the workers hand over RawBatches and the batched augmentation, features and
        SpecAugment run on ``device``; other data pass through unchanged."""
        ds = self.dataset
        if not isinstance(ds, AudioCropDataset):
            return loader
        from pyspeaker.training.augment import BatchAugmenter, OnDevice

        ds.deferred = True
        aug = BatchAugmenter(ds.need, ds.sample_rate, ds.feature_cfg, ds.crop, device, masks=self.masks_in_loader)
        return OnDevice(loader, aug, device)


def feature_config_from(cfg: dict):
    from pyspeaker.features import load_feature_config

    d = cfg["data"]
    return load_feature_config(d["feat_conf"], vad_conf=d["vad_conf"], vad=bool(d["vad"]), cmn=d["cmn"])


def load_train_data(cfg: dict, features: str | os.PathLike | None = None,
                    data_dir: str | os.PathLike | None = None, feature_cfg=None) -> TrainData:
    """The training set as configured: crops of a feature store, or of audio made into features.

    ``feature_cfg`` (audio only): the FeatureConfig to compute the features with instead of
    ``data.feat_conf`` (``train --init-from`` a features model: the model's own front-end).
    """
    d, a = cfg["data"], cfg["augment"]
    seed, crop = int(cfg["train"]["seed"]), int(d["crop_frames"])
    waveform = bool(cfg["model"].get("waveform", False))
    wants_audio = [k for k in ("noise_dir", "rir_dir") if a[k]] + (["speed_perturb"] if a["speed_perturb"] else [])
    if (features is None) == (data_dir is None):
        raise ConfigError("give the training data as a feature store (--features) or as a data dir (--data-dir)")
    if features is not None:
        if waveform:
            raise ConfigError("model.waveform needs audio: train from a data dir (--data-dir) instead of "
                              f"the feature store {features}")
        if wants_audio:
            raise ConfigError(f"augment.{wants_audio[0]} changes the waveform: train from a data dir (--data-dir) "
                              f"instead of the feature store {features}")
        if d["feat_conf"]:
            raise ConfigError(f"data.feat_conf is for training from audio; the feature store {features} has its "
                              "features already")
        store = open_features(features, in_memory=bool(d["in_memory"]))
        utt2spk_path = store.dir / "utt2spk"
        if not utt2spk_path.is_file():
            raise DataError("feature store has no utt2spk (was it made by make-features?)", path=utt2spk_path)
        dataset = CropDataset(store, read_utt2spk(utt2spk_path), crop, seed)
        n_mels = cfg["model"].get("n_mels")
        if n_mels is not None and int(n_mels) != store.dim:
            raise ConfigError(f"model.n_mels is {n_mels} but the features in {features} have {store.dim} dimensions "
                              "(the feature dimension comes from the store: leave model.n_mels unset)")
        return TrainData(dataset, dataset.labels, dataset.speakers, Path(features), store.dim, store.feat_id,
                         dict(store.config), f"feature store {features}")

    from pyspeaker.data.kaldi_dir import DataDir
    from pyspeaker.training.augment import WaveAugment

    datadir = DataDir.load(data_dir)
    if not waveform and not d["feat_conf"] and feature_cfg is None:
        raise ConfigError("training from audio needs a feature config (--set data.feat_conf=conf/fbank.conf) or "
                          "the network's waveform front-end (--set model.waveform=true)")
    if waveform:
        feature_cfg = None
    elif feature_cfg is None:
        feature_cfg = feature_config_from(cfg)
    rate = 16000 if feature_cfg is None else int(feature_cfg.sample_frequency)
    if feature_cfg is None:
        from pyspeaker.models.frontend import crop_samples

        need = crop_samples(crop)
    else:
        from pyspeaker.features import FeatureExtractor

        need = samples_for_frames(FeatureExtractor(feature_cfg), crop)
    from pyspeaker.training.banks import default_cache_dir

    augment = WaveAugment(a, rate, need, a["bank_dir"] or default_cache_dir()) \
        if (a["noise_dir"] or a["rir_dir"]) else None
    factors = tuple(a["speed_factors"]) if a["speed_perturb"] else (1.0,)
    spec = {k: int(a[k]) for k in ("freq_masks", "freq_width", "time_masks", "time_width")} \
        if a["specaugment"] else None
    dataset = AudioCropDataset(datadir, crop, seed, feature_cfg, augment, factors, specaugment=spec,
                               audio_bank=(a["bank_dir"] or default_cache_dir()) if d["audio_bank"] else False)
    if feature_cfg is None:
        feat_dim, feat_id, feat_config = None, "waveform", {"waveform": True}
        what = "waveform front-end in the network"
    else:
        feat_dim, feat_id, feat_config = feature_cfg.dim, feature_cfg.feat_id(), feature_cfg.to_dict()
        what = f"features {feat_id} computed on the fly"
    extras = [augment.describe()] if augment is not None else []
    if a["speed_perturb"]:
        extras.append("speed perturbation " + "/".join(f"{f:g}" for f in factors))
    desc = f"audio of {data_dir} ({what}{'; ' + '; '.join(extras) if extras else ''})"
    return TrainData(dataset, dataset.labels, dataset.speakers, Path(data_dir), feat_dim, feat_id, feat_config, desc)
