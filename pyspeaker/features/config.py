"""Feature settings: Kaldi option files (``conf/fbank.conf`` ...) parsed into a frozen FeatureConfig.

A conf file holds one ``--name=value`` per line, ``#`` starts a comment, blank lines are skipped,
exactly like the files Kaldi's ``compute-fbank-feats --config=...`` reads, so a Kaldi recipe's conf
can be used as it is.  Option names are Kaldi's with ``-`` turned into ``_``.  Defaults are Kaldi's
(per feature kind) except ``dither``, which is 0 here so a feature store is reproducible.

Besides the front-end options a FeatureConfig carries pyspeaker's post-processing: energy VAD
(Kaldi ``compute-vad`` options, usually from ``conf/vad.conf``) and mean normalisation
(none / per utterance / Kaldi ``apply-cmvn-sliding``).

``feat_id()`` names a feature store: ``<kind>_<8 hex>`` where the hash covers every option that
changes the numbers, so two experiments with equal features share a store and a changed option
never silently reuses stale features.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspeaker.errors import ConfigError, DataError

# Bump when the computation changes in a way that alters stored numbers (new feat ids for all).
FEATURE_VERSION = 1

KINDS = ("fbank", "mfcc", "logmel")
CMN_MODES = ("none", "utterance", "sliding")
KALDI_WINDOWS = ("hamming", "hanning", "povey", "rectangular", "blackman")
# logmel uses torch's periodic windows, as voxceleb_trainer's MelSpectrogram does.
LOGMEL_WINDOWS = ("hamming", "hanning", "rectangular")

_FRAME_OPTS = ("sample_frequency", "frame_length", "frame_shift", "dither", "preemphasis_coefficient",
               "remove_dc_offset", "window_type", "round_to_power_of_two", "blackman_coeff", "snip_edges")
_MEL_OPTS = ("num_mel_bins", "low_freq", "high_freq")
_ENERGY_OPTS = ("use_energy", "energy_floor", "raw_energy", "htk_compat")
# Options a conf file of each kind may set (Kaldi's compute-*-feats options we implement).
KIND_OPTIONS: dict[str, tuple[str, ...]] = {
    "fbank": _FRAME_OPTS + _MEL_OPTS + _ENERGY_OPTS + ("use_log_fbank", "use_power"),
    "mfcc": _FRAME_OPTS + _MEL_OPTS + _ENERGY_OPTS + ("num_ceps", "cepstral_lifter"),
    "logmel": ("sample_frequency", "frame_length", "frame_shift", "preemphasis_coefficient", "window_type",
               "round_to_power_of_two", "snip_edges") + _MEL_OPTS + ("use_log_fbank", "use_power"),
}
VAD_OPTIONS = ("vad_energy_threshold", "vad_energy_mean_scale", "vad_frames_context", "vad_proportion_threshold")

# Kaldi's defaults (FrameExtractionOptions, MelBanksOptions, FbankOptions, MfccOptions), except
# dither (Kaldi: 1.0) which is off so stored features are reproducible.
_KALDI_DEFAULTS: dict[str, Any] = dict(
    sample_frequency=16000.0, frame_length=25.0, frame_shift=10.0, dither=0.0,
    preemphasis_coefficient=0.97, remove_dc_offset=True, window_type="povey", round_to_power_of_two=True,
    blackman_coeff=0.42, snip_edges=True, num_mel_bins=23, low_freq=20.0, high_freq=0.0,
    use_energy=False, energy_floor=0.0, raw_energy=True, htk_compat=False, use_log_fbank=True,
    use_power=True, num_ceps=13, cepstral_lifter=22.0,
)
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "fbank": dict(_KALDI_DEFAULTS),
    "mfcc": dict(_KALDI_DEFAULTS, use_energy=True),  # compute-mfcc-feats: --use-energy=true
    # voxceleb_trainer's MelSpectrogram: 40 mel, hamming (periodic), f_min 0, f_max Nyquist,
    # centre (reflect) padding, no pre-emphasis; the Kaldi-only options keep inert values.
    "logmel": dict(_KALDI_DEFAULTS, num_mel_bins=40, window_type="hamming", preemphasis_coefficient=0.0,
                   low_freq=0.0, high_freq=0.0, snip_edges=False, remove_dc_offset=False),
}
VAD_DEFAULTS: dict[str, Any] = dict(  # Kaldi compute-vad defaults
    vad_energy_threshold=5.0, vad_energy_mean_scale=0.5, vad_frames_context=0, vad_proportion_threshold=0.6)


@dataclass(frozen=True)
class FeatureConfig:
    """All settings of one feature front-end + post-processing.  ``None`` means "kind default"."""

    kind: str = "fbank"
    # framing (Kaldi FrameExtractionOptions)
    sample_frequency: float | None = None
    frame_length: float | None = None  # ms
    frame_shift: float | None = None  # ms
    dither: float | None = None
    preemphasis_coefficient: float | None = None
    remove_dc_offset: bool | None = None
    window_type: str | None = None
    round_to_power_of_two: bool | None = None
    blackman_coeff: float | None = None
    snip_edges: bool | None = None
    # mel banks
    num_mel_bins: int | None = None
    low_freq: float | None = None
    high_freq: float | None = None  # <= 0: offset from Nyquist
    # energy / fbank / mfcc
    use_energy: bool | None = None
    energy_floor: float | None = None
    raw_energy: bool | None = None
    htk_compat: bool | None = None
    use_log_fbank: bool | None = None
    use_power: bool | None = None
    num_ceps: int | None = None
    cepstral_lifter: float | None = None
    # post-processing (pyspeaker): VAD on raw energies, then CMN, then unvoiced frames dropped
    vad: bool = False
    vad_energy_threshold: float = VAD_DEFAULTS["vad_energy_threshold"]
    vad_energy_mean_scale: float = VAD_DEFAULTS["vad_energy_mean_scale"]
    vad_frames_context: int = VAD_DEFAULTS["vad_frames_context"]
    vad_proportion_threshold: float = VAD_DEFAULTS["vad_proportion_threshold"]
    cmn: str = "none"
    cmn_window: int = 300
    norm_vars: bool = False
    # where the options came from (for messages only; not part of the identity)
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown feature type {self.kind!r}; choose one of {', '.join(KINDS)}")
        for name, value in KIND_DEFAULTS[self.kind].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        for name in _FLOAT_FIELDS:
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in _INT_FIELDS:
            object.__setattr__(self, name, int(getattr(self, name)))
        self._validate()

    # ---- derived sizes -------------------------------------------------------------------
    @property
    def window_size(self) -> int:
        """Frame length in samples (Kaldi's WindowSize())."""
        return int(self.sample_frequency * 0.001 * self.frame_length)

    @property
    def window_shift(self) -> int:
        return int(self.sample_frequency * 0.001 * self.frame_shift)

    @property
    def padded_window_size(self) -> int:
        """FFT size: next power of two of the frame length when round_to_power_of_two."""
        n = self.window_size
        return 1 << (n - 1).bit_length() if self.round_to_power_of_two else n

    @property
    def effective_high_freq(self) -> float:
        nyquist = 0.5 * self.sample_frequency
        return self.high_freq + nyquist if self.high_freq <= 0.0 else self.high_freq

    @property
    def dim(self) -> int:
        """Output feature dimension."""
        if self.kind == "mfcc":
            return self.num_ceps
        if self.kind == "fbank":
            return self.num_mel_bins + int(self.use_energy)
        return self.num_mel_bins

    # ---- identity ------------------------------------------------------------------------
    def output_options(self) -> dict[str, Any]:
        """The options that change the output numbers, canonicalised (used by feat_id)."""
        names = list(KIND_OPTIONS[self.kind])
        d = {n: getattr(self, n) for n in names}
        d["high_freq"] = self.effective_high_freq  # -400 and 7600 are the same at 16 kHz
        if self.window_type != "blackman":
            d.pop("blackman_coeff", None)
        if self.kind != "logmel" and not (self.use_energy or self.vad):
            for n in ("energy_floor", "raw_energy"):  # energy unused
                d.pop(n)
        if self.kind == "fbank" and not self.use_energy:
            d.pop("htk_compat")  # it only moves the energy column
        d["kind"] = self.kind
        d["vad"] = self.vad
        if self.vad:
            d.update({n: getattr(self, n) for n in VAD_OPTIONS})
        d["cmn"] = self.cmn
        if self.cmn == "sliding":
            d["cmn_window"] = self.cmn_window
        if self.cmn != "none":
            d["norm_vars"] = self.norm_vars
        d["feature_version"] = FEATURE_VERSION
        return d

    def feat_id(self) -> str:
        """``<kind>_<8 hex of sha1 of the canonical JSON of the output-affecting options>``."""
        blob = json.dumps(self.output_options(), sort_keys=True, separators=(",", ":"))
        return f"{self.kind}_{hashlib.sha1(blob.encode()).hexdigest()[:8]}"

    def to_dict(self) -> dict[str, Any]:
        """Every setting (defaults resolved), plus the feature version, for a store manifest."""
        d = dataclasses.asdict(self)
        d["feature_version"] = FEATURE_VERSION
        d["feat_id"] = self.feat_id()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureConfig":
        d = dict(d)
        d.pop("feat_id", None)
        version = d.pop("feature_version", FEATURE_VERSION)
        if version != FEATURE_VERSION:
            raise ConfigError(f"features were made by feature version {version}, this pyspeaker computes "
                              f"version {FEATURE_VERSION}; recompute them")
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown feature setting(s) {', '.join(unknown)}")
        return cls(**d)

    def replace(self, **changes: Any) -> "FeatureConfig":
        return dataclasses.replace(self, **changes)

    def describe(self, name: str, with_source: bool = True) -> str:
        """``--sample-frequency=16000 of conf/fbank.conf`` style text for error messages."""
        value = _format_value(getattr(self, name))
        where = f" of {self.source}" if self.source and with_source else ""
        return f"--{name.replace('_', '-')}={value}{where}"

    # ---- checks --------------------------------------------------------------------------
    def _validate(self) -> None:
        def bad(msg: str) -> ConfigError:
            return ConfigError(msg, path=self.source)

        windows = LOGMEL_WINDOWS if self.kind == "logmel" else KALDI_WINDOWS
        if self.window_type not in windows:
            raise bad(f"--window-type={self.window_type} is not one of {', '.join(windows)} (for {self.kind})")
        if self.sample_frequency <= 0:
            raise bad("--sample-frequency must be > 0")
        if self.frame_length <= 0 or self.frame_shift <= 0:
            raise bad("--frame-length and --frame-shift must be > 0 (milliseconds)")
        if self.window_size < 2 or self.window_shift < 1:
            raise bad(f"frame of {self.window_size} samples / shift of {self.window_shift} samples is too small")
        if self.kind != "logmel" and self.padded_window_size % 2:
            raise bad("the FFT size must be even: use --round-to-power-of-two=true or change --frame-length")
        if not 0.0 <= self.preemphasis_coefficient <= 1.0:
            raise bad("--preemphasis-coefficient must be in [0, 1]")
        if self.dither < 0:
            raise bad("--dither must be >= 0")
        if self.num_mel_bins < 3:
            raise bad("--num-mel-bins must be at least 3")
        nyquist = 0.5 * self.sample_frequency
        hi = self.effective_high_freq
        if not (0.0 <= self.low_freq < nyquist and 0.0 < hi <= nyquist and self.low_freq < hi):
            raise bad(f"bad mel range: --low-freq={_format_value(self.low_freq)}, "
                      f"--high-freq={_format_value(self.high_freq)} with Nyquist {_format_value(nyquist)}")
        if self.kind == "mfcc" and not 1 <= self.num_ceps <= self.num_mel_bins:
            raise bad(f"--num-ceps={self.num_ceps} must be between 1 and --num-mel-bins={self.num_mel_bins}")
        if self.energy_floor < 0 or self.cepstral_lifter < 0:
            raise bad("--energy-floor and --cepstral-lifter must be >= 0")
        if self.cmn not in CMN_MODES:
            raise bad(f"unknown cmn {self.cmn!r}; choose one of {', '.join(CMN_MODES)}")
        if self.cmn_window < 1:
            raise bad("cmn window must be >= 1 frame")
        if not 0.0 < self.vad_proportion_threshold < 1.0:
            raise bad("--vad-proportion-threshold must be in (0, 1)")
        if self.vad_frames_context < 0 or self.vad_energy_mean_scale < 0:
            raise bad("--vad-frames-context and --vad-energy-mean-scale must be >= 0")


_TYPES: dict[str, type] = {
    "sample_frequency": float, "frame_length": float, "frame_shift": float, "dither": float,
    "preemphasis_coefficient": float, "remove_dc_offset": bool, "window_type": str,
    "round_to_power_of_two": bool, "blackman_coeff": float, "snip_edges": bool, "num_mel_bins": int,
    "low_freq": float, "high_freq": float, "use_energy": bool, "energy_floor": float, "raw_energy": bool,
    "htk_compat": bool, "use_log_fbank": bool, "use_power": bool, "num_ceps": int, "cepstral_lifter": float,
    "vad_energy_threshold": float, "vad_energy_mean_scale": float, "vad_frames_context": int,
    "vad_proportion_threshold": float,
}
_FLOAT_FIELDS = tuple(n for n, t in _TYPES.items() if t is float)
_INT_FIELDS = tuple(n for n, t in _TYPES.items() if t is int) + ("cmn_window",)


def _format_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _parse_value(name: str, text: str) -> Any:
    """Convert like Kaldi's ParseOptions (bools: true/false/t/f/1/0, empty = true)."""
    kind = _TYPES[name]
    if kind is bool:
        low = text.lower()
        if low in ("true", "t", "1", ""):
            return True
        if low in ("false", "f", "0"):
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def parse_kaldi_conf(path: str | os.PathLike, allowed: tuple[str, ...]) -> dict[str, Any]:
    """Read a Kaldi option file; return {normalised_name: value} for the ``allowed`` options.

    Raises DataError(path, line) for a line that is not ``--name=value``, an unknown option
    (the message lists the valid ones) or a value of the wrong type.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise DataError(f"cannot read feature config: {e.strerror or e}", path=path) from None
    out: dict[str, Any] = {}
    valid = ", ".join("--" + n.replace("_", "-") for n in allowed)
    for lineno, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not line.startswith("--") or len(line) == 2 or " " in line.split("=", 1)[0]:
            raise DataError(f"expected a Kaldi option line '--name=value', got {raw.strip()!r}",
                            path=path, line=lineno)
        key, sep, value = line[2:].partition("=")
        name = key.replace("-", "_")
        if name not in allowed:
            raise DataError(f"unknown option --{key}; valid options here: {valid}", path=path, line=lineno)
        if not sep and _TYPES[name] is not bool:
            raise DataError(f"option --{key} needs a value (--{key}=...)", path=path, line=lineno)
        try:
            out[name] = _parse_value(name, value.strip())
        except ValueError as e:
            raise DataError(f"bad value for --{key}: {e}", path=path, line=lineno) from None
    return out


def kind_from_path(conf_path: str | os.PathLike) -> str | None:
    stem = Path(conf_path).stem.lower()
    for kind in KINDS:
        if stem.startswith(kind):
            return kind
    return None


def load_feature_config(conf_path: str | os.PathLike, kind: str | None = None,
                        vad_conf: str | os.PathLike | None = None, vad: bool = False,
                        cmn: str = "none", cmn_window: int = 300, norm_vars: bool = False) -> FeatureConfig:
    """Build a FeatureConfig from a Kaldi conf file (+ optional VAD conf and post-processing).

    ``kind`` defaults from the file name (``fbank*.conf``, ``mfcc*.conf``, ``logmel*.conf``).
    A ``vad_conf`` alone does not switch VAD on; ``vad=True`` does (with Kaldi's defaults when
    no ``vad_conf`` is given).
    """
    if not Path(conf_path).is_file():
        raise ConfigError("feature config file not found", path=conf_path)
    if vad_conf is not None and not Path(vad_conf).is_file():
        raise ConfigError("VAD config file not found", path=vad_conf)
    if kind is None:
        kind = kind_from_path(conf_path)
        if kind is None:
            raise ConfigError(f"cannot tell the feature type from the file name {Path(conf_path).name!r}; "
                              f"give --type ({'|'.join(KINDS)})", path=conf_path)
    if kind not in KINDS:
        raise ConfigError(f"unknown feature type {kind!r}; choose one of {', '.join(KINDS)}")
    opts = parse_kaldi_conf(conf_path, KIND_OPTIONS[kind])
    if vad_conf is not None:
        opts.update(parse_kaldi_conf(vad_conf, VAD_OPTIONS))
    return FeatureConfig(kind=kind, vad=vad, cmn=cmn, cmn_window=cmn_window, norm_vars=norm_vars,
                         source=os.fspath(conf_path), **opts)


def kaldi_conf_text(cfg: FeatureConfig) -> str:
    """``cfg``'s front-end as a Kaldi option file (every option of its kind, defaults resolved):
    ``load_feature_config`` (``make-features --conf``) reads it back into the same front-end."""
    lines = [f"# {cfg.kind} options of feature id {cfg.feat_id()} (VAD and CMN are make-features options)"]
    lines += [f"--{n.replace('_', '-')}={_format_value(getattr(cfg, n))}" for n in KIND_OPTIONS[cfg.kind]]
    return "\n".join(lines) + "\n"


def vad_conf_text(cfg: FeatureConfig) -> str:
    """``cfg``'s energy-VAD options as a Kaldi ``compute-vad`` option file (``make-features --vad-conf``)."""
    return "".join(f"--{n.replace('_', '-')}={_format_value(getattr(cfg, n))}\n" for n in VAD_OPTIONS)


def write_kaldi_confs(cfg: FeatureConfig, folder: str | os.PathLike, stem: str = "model") -> list[str] | None:
    """Write ``cfg`` as ``folder/<kind>_<stem>.conf`` (+ ``vad_<stem>.conf`` with VAD) and return the
    make-features options that recreate exactly its features (same feat_id); None when make-features
    cannot express them (variance normalisation)."""
    if cfg.norm_vars:
        return None
    folder = Path(folder)
    conf = folder / f"{cfg.kind}_{stem}.conf"
    conf.write_text(kaldi_conf_text(cfg))
    args = ["--conf", os.fspath(conf)]
    vad_conf = None
    if cfg.vad:
        vad_conf = folder / f"vad_{stem}.conf"
        vad_conf.write_text(vad_conf_text(cfg))
        args += ["--vad", "--vad-conf", os.fspath(vad_conf)]
    if cfg.cmn != "none":
        args += ["--cmn", cfg.cmn]
        if cfg.cmn == "sliding" and cfg.cmn_window != 300:
            args += ["--cmn-window", str(cfg.cmn_window)]
    again = load_feature_config(conf, vad_conf=vad_conf, vad=cfg.vad, cmn=cfg.cmn, cmn_window=cfg.cmn_window)
    if again.feat_id() != cfg.feat_id():  # a round trip that does not give the same features is no advice
        return None
    return args
