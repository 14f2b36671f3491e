#!/usr/bin/env python3
"""VoxCeleb, MUSAN and RIRS_NOISES as downloaded -> Kaldi data dirs and trials (the voxceleb recipe's stage 0).

    python local/prepare_voxceleb.py check|convert|data|trials|augment ...   (--help: every option)

Sub-commands (local/voxceleb/download.sh and prepare_data.sh run them): ``check`` (the download
step: says what is missing and where to get it), ``convert`` (VoxCeleb2 m4a -> wav once,
resumable), ``data`` (data dirs + trials), ``trials`` (one list), ``augment`` (MUSAN and RIR data
dirs).

Layouts read as they are unpacked:

- VoxCeleb1: ``<vox1>/wav/idXXXXX/<video>/00001.wav`` (dev and test zips unpacked into one ``wav/``),
  or Kaldi's ``<vox1>/dev/wav`` + ``<vox1>/test/wav``. The test split is the 40 speakers
  id10270-id10309 (``VOX1_TEST_SPEAKERS``).
- VoxCeleb2 dev: ``<vox2>/dev/aac/idXXXXX/<video>/00001.m4a`` (or ``<vox2>/aac``, or a tree of
  ``.wav`` made by ``convert_m4a_tree``). m4a files go into wav.scp as ``ffmpeg ... |`` pipes.
- Verification lists (``veri_test.txt`` ...): ``<1|0> id10270/x6uYqmx31kE/00001.wav id10270/...``.
- MUSAN: ``<musan>/{music,speech,noise}/<source>/*.wav``.
- RIRS_NOISES: ``<rirs>/simulated_rirs/<room>/rir_list`` and ``<rirs>/real_rirs_isotropic_noises/rir_list``.

Utterance ids are ``<speaker>-<video>-<file stem>`` (Kaldi's make_voxceleb{1_v2,2}.pl), so sorting
the utterances keeps each speaker's together. Directory trees are walked with ``os.scandir`` (one
``readdir`` per folder, file types from the directory entries): a million files take seconds.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

# Lets the script run as `python local/prepare_voxceleb.py` without installing the package.
_REPO_ROOT = Path(__file__).resolve().parent.parent
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

import click  # noqa: E402

from pyspeaker.data import Trials, read_table, read_trials, write_data_dir, write_trials  # noqa: E402
from pyspeaker.errors import ConfigError, DataError  # noqa: E402
from pyspeaker.fileio import refuse_overlap  # noqa: E402
from pyspeaker.log import get_logger  # noqa: E402

log = get_logger("local.prepare_voxceleb")

VOX1_TEST_SPEAKERS = frozenset(f"id{n}" for n in range(10270, 10310))
SPEAKER_DIR = re.compile(r"id\d+")
_SPACE = re.compile(r"\s")
AUDIO_EXTS = (".wav", ".m4a")


@dataclass(frozen=True)
class VoxList:
    """A published VoxCeleb1 verification list: where its Kaldi trials go and its line count."""

    trials_name: str
    data_set: str
    expected: int


# The lists of the VoxCeleb website (and openslr's copies of the O lists, as Kaldi downloads them).
VOX1_LISTS: dict[str, VoxList] = {
    "veri_test.txt": VoxList("trials_O", "voxceleb1_test", 37_720),
    "veri_test2.txt": VoxList("trials_O_clean", "voxceleb1_test", 37_611),
    "list_test_all.txt": VoxList("trials_E", "voxceleb1", 581_480),
    "list_test_all2.txt": VoxList("trials_E_clean", "voxceleb1", 579_818),
    "list_test_hard.txt": VoxList("trials_H", "voxceleb1", 552_536),
    "list_test_hard2.txt": VoxList("trials_H_clean", "voxceleb1", 550_894),
}
LIST_ALIASES = {"voxceleb1_test.txt": "veri_test.txt", "voxceleb1_test_v2.txt": "veri_test2.txt"}

SOURCES = {
    "VoxCeleb1": "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/vox1.html (registration form; "
                 "vox1_dev_wav.zip + vox1_test_wav.zip, unpack both into <vox1-dir>, giving <vox1-dir>/wav/id1xxxx/...)",
    "VoxCeleb2": "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/vox2.html (registration form; "
                 "vox2_dev_aac.zip, unpacked into <vox2-dir>, giving <vox2-dir>/dev/aac/id0xxxx/...)",
    "lists": "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/ (veri_test.txt, veri_test2.txt, "
             "list_test_all.txt, list_test_all2.txt, list_test_hard.txt, list_test_hard2.txt; "
             "also https://www.openslr.org/resources/49/voxceleb1_test_v2.txt = veri_test2.txt)",
    "MUSAN": "https://www.openslr.org/17/ (musan.tar.gz: music/ speech/ noise/)",
    "RIRS_NOISES": "https://www.openslr.org/28/ (rirs_noises.zip: RIRS_NOISES/simulated_rirs, "
                   "RIRS_NOISES/real_rirs_isotropic_noises)",
}


# ---------------------------------------------------------------------------------------------
# Walking VoxCeleb trees


@dataclass
class Scan:
    """Audio files of a ``<speaker>/<video>/<file>`` tree: utt id -> path, plus what was skipped."""

    files: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # entries that are not <idNNNNN>/<video>/<file.ext>

    def speakers(self) -> set[str]:
        return {utt.split("-", 1)[0] for utt in self.files}


def utt_id(speaker: str, video: str, name: str) -> str:
    """``id10270`` + ``x6uYqmx31kE`` + ``00001.wav`` -> ``id10270-x6uYqmx31kE-00001``."""
    return f"{speaker}-{video}-{name.rsplit('.', 1)[0]}"


def _subdirs(path: str) -> list[os.DirEntry]:
    with os.scandir(path) as it:
        return [e for e in it if not e.name.startswith(".") and e.is_dir()]


def scan_tree(root: str | os.PathLike, exts: Iterable[str] = AUDIO_EXTS, scan: Scan | None = None) -> Scan:
    """Every ``<root>/idNNNNN/<video>/<name><ext>`` file (hidden and temporary files left out).

    Where both ``x.wav`` and ``x.m4a`` exist (a tree converted in place) the wav is used.
    """
    scan = scan if scan is not None else Scan()
    exts = tuple(exts)
    files = scan.files
    for spk in _subdirs(os.path.abspath(root)):  # absolute paths for wav.scp
        if not SPEAKER_DIR.fullmatch(spk.name):
            scan.skipped.append(spk.path)
            continue
        for video in _subdirs(spk.path):
            if _SPACE.search(video.name):
                scan.skipped.append(video.path)
                continue
            prefix = f"{spk.name}-{video.name}-"
            with os.scandir(video.path) as it:
                for f in it:
                    name = f.name
                    if name.startswith(".") or not name.endswith(exts):
                        continue
                    if _SPACE.search(name) or not f.is_file():
                        scan.skipped.append(f.path)
                        continue
                    utt = prefix + name.rsplit(".", 1)[0]
                    if utt in files and not name.endswith(".wav"):
                        continue
                    files[utt] = f.path
    return scan


def vox1_roots(vox1_dir: str | os.PathLike) -> list[Path]:
    """The folders holding VoxCeleb1's speaker folders: wav/, or dev/wav and test/wav (Kaldi)."""
    d = Path(vox1_dir)
    roots = [d / sub for sub in ("wav", "dev/wav", "test/wav") if (d / sub).is_dir()]
    return roots or [d]


def vox2_root(vox2_dir: str | os.PathLike) -> Path:
    """The folder holding VoxCeleb2 dev's speaker folders: dev/aac, aac, dev/wav, wav, or itself."""
    d = Path(vox2_dir)
    return next((d / sub for sub in ("dev/aac", "aac", "dev/wav", "wav") if (d / sub).is_dir()), d)


def _scan_roots(roots: list[Path], what: str) -> Scan:
    scan = Scan()
    for root in roots:
        if not root.is_dir():
            raise DataError(f"{what} folder does not exist", path=root)
        scan_tree(root, scan=scan)
    if scan.skipped:
        log.warning("%s: skipped %d entries that are not <idNNNNN>/<video>/<file.wav|m4a> (first: %s)",
                    what, len(scan.skipped), scan.skipped[0])
    if not scan.files:
        raise DataError(f"no {what} audio found (expected <idNNNNN>/<video>/<file>.wav or .m4a under "
                        f"{', '.join(map(str, roots))})", path=roots[0])
    return scan


def wav_scp_entry(path: str, ffmpeg: str = "ffmpeg", sample_rate: int = 16000) -> str:
    """A wav.scp value: the path of a wav file, an ffmpeg pipe for anything else (m4a)."""
    if not os.path.isabs(path):
        path = os.path.abspath(path)
    if path.endswith(".wav"):
        return path
    return f"{ffmpeg} -v 8 -i {shlex.quote(path)} -f wav -acodec pcm_s16le -ar {sample_rate} - |"


@dataclass
class SetSummary:
    name: str
    path: str
    num_utts: int
    num_speakers: int


def write_vox_data_dir(out_dir: str | os.PathLike, files: dict[str, str], *, ffmpeg: str = "ffmpeg",
                       sample_rate: int = 16000) -> SetSummary:
    """A data dir of ``utt -> audio path`` (speaker = the utterance id's prefix), sorted."""
    wav_scp = {utt: wav_scp_entry(p, ffmpeg, sample_rate) for utt, p in files.items()}
    utt2spk = {utt: utt.split("-", 1)[0] for utt in files}
    write_data_dir(out_dir, wav_scp, utt2spk)
    return SetSummary(Path(out_dir).name, os.fspath(out_dir), len(utt2spk), len(set(utt2spk.values())))


def prepare_voxceleb1(vox1_dir: str | os.PathLike, data_root: str | os.PathLike,
                      test_speakers: frozenset[str] = VOX1_TEST_SPEAKERS) -> list[SetSummary]:
    """``voxceleb1`` (all speakers, for the E and H lists), ``voxceleb1_dev`` and ``voxceleb1_test``."""
    scan = _scan_roots(vox1_roots(vox1_dir), "VoxCeleb1")
    data_root = Path(data_root)
    test = {u: p for u, p in scan.files.items() if u.split("-", 1)[0] in test_speakers}
    dev = {u: p for u, p in scan.files.items() if u not in test}
    sets = [write_vox_data_dir(data_root / "voxceleb1", scan.files)]
    for name, files in (("voxceleb1_dev", dev), ("voxceleb1_test", test)):
        if files:
            sets.append(write_vox_data_dir(data_root / name, files))
        else:
            log.warning("VoxCeleb1 has no %s speakers here; %s not written", name.split("_")[1], data_root / name)
    return sets


def prepare_voxceleb2(vox2_dir: str | os.PathLike, data_root: str | os.PathLike, name: str = "voxceleb2_dev",
                      ffmpeg: str = "ffmpeg", sample_rate: int = 16000) -> SetSummary:
    """The VoxCeleb2 dev training set; m4a files are decoded by ffmpeg pipes in wav.scp."""
    root = vox2_root(vox2_dir)
    scan = _scan_roots([root], "VoxCeleb2")
    pipes = sum(not p.endswith(".wav") for p in scan.files.values())
    if pipes:
        log.info("VoxCeleb2: %d of %d files are m4a, read through '%s' pipes", pipes, len(scan.files), ffmpeg)
    return write_vox_data_dir(Path(data_root) / name, scan.files, ffmpeg=ffmpeg, sample_rate=sample_rate)


# ---------------------------------------------------------------------------------------------
# Verification lists -> Kaldi trials


def path_to_utt(path: str) -> str:
    """``id10270/x6uYqmx31kE/00001.wav`` (any leading folders) -> ``id10270-x6uYqmx31kE-00001``;
    a name without ``/`` is taken to be an utterance id already."""
    parts = path.rsplit("/", 3)
    if len(parts) == 1:
        return path
    if len(parts) < 3:
        raise ValueError(path)
    return utt_id(parts[-3], parts[-2], parts[-1])


@dataclass
class TrialsReport:
    source: str
    out: str
    num_trials: int
    num_target: int
    warnings: list[str] = field(default_factory=list)


def convert_trials(list_path: str | os.PathLike, out_path: str | os.PathLike, *, expected: int | None = None,
                   known_utts: Iterable[str] | None = None, data_dir: str | None = None) -> TrialsReport:
    """A VoxCeleb list (``<1|0> <path1> <path2>``) -> Kaldi trials (``<enroll> <test> target|nontarget``).

    ``expected``: the list's published line count; another count is a warning (logged and
    returned), not an error. ``known_utts`` (the data dir's utterances, ``data_dir`` names it in
    messages): trials naming other utterances are a warning too.
    """
    trials = read_trials(list_path)
    if trials.labels is None:
        raise DataError("expected a labelled list ('<1|0> <path1> <path2>')", path=list_path, line=1)
    cache: dict[str, str] = {}

    def convert(paths: list[str]) -> list[str]:
        out = []
        for i, p in enumerate(paths):
            utt = cache.get(p)
            if utt is None:
                try:
                    utt = cache[p] = path_to_utt(p)
                except ValueError:
                    raise DataError(f"cannot make an utterance id of {p!r}: expected <speaker>/<video>/<file>",
                                    path=list_path, line=i + 1) from None
            out.append(utt)
        return out

    enroll, test = convert(trials.enroll), convert(trials.test)
    write_trials(out_path, Trials(enroll, test, trials.labels))
    report = TrialsReport(os.fspath(list_path), os.fspath(out_path), len(enroll), int(trials.labels.sum()))
    if expected is not None and len(enroll) != expected:
        report.warnings.append(f"{list_path}: expected {expected} trials, found {len(enroll)} "
                               "(an incomplete or different download?)")
    if known_utts is not None:
        known = known_utts if isinstance(known_utts, (set, frozenset, dict)) else set(known_utts)
        missing = [i for i, (e, t) in enumerate(zip(enroll, test)) if e not in known or t not in known]
        if missing:
            i = missing[0]
            utt = enroll[i] if enroll[i] not in known else test[i]
            report.warnings.append(f"{list_path}:{i + 1}: {len(missing)} trials name utterances that are not in "
                                   f"{data_dir or 'the data dir'} (first: {utt!r})")
    for w in report.warnings:
        log.warning("%s", w)
    return report


def find_lists(lists_dir: str | os.PathLike) -> dict[str, Path]:
    """The published lists present in ``lists_dir``: canonical name -> file (aliases resolved)."""
    d = Path(lists_dir)
    found = {name: d / name for name in VOX1_LISTS if (d / name).is_file()}
    for alias, name in LIST_ALIASES.items():
        if name not in found and (d / alias).is_file():
            found[name] = d / alias
    return found


def convert_vox1_lists(lists_dir: str | os.PathLike, data_root: str | os.PathLike,
                       check_counts: bool = True) -> list[TrialsReport]:
    """Convert every published list found in ``lists_dir`` to ``<data_root>/<set>/trials_<O|E|H>[_clean]``."""
    found = find_lists(lists_dir)
    if not found:
        raise DataError(f"none of the VoxCeleb1 lists ({', '.join(VOX1_LISTS)}) is here; get them from "
                        f"{SOURCES['lists']}", path=lists_dir)
    reports = []
    utts_of: dict[str, set[str] | None] = {}
    for name, path in found.items():
        spec = VOX1_LISTS[name]
        set_dir = Path(data_root) / spec.data_set
        if spec.data_set not in utts_of:
            utt2spk = set_dir / "utt2spk"
            utts_of[spec.data_set] = ({key for _, key, _ in read_table(utt2spk)} if utt2spk.is_file() else None)
        reports.append(convert_trials(path, set_dir / spec.trials_name, data_dir=str(set_dir),
                                      expected=spec.expected if check_counts else None,
                                      known_utts=utts_of[spec.data_set]))
    for name in VOX1_LISTS:
        if name not in found:
            log.info("%s not in %s: no %s", name, lists_dir, VOX1_LISTS[name].trials_name)
    return reports


# ---------------------------------------------------------------------------------------------
# VoxCeleb2 m4a -> wav, once, resumable


@dataclass
class ConvertReport:
    converted: int = 0
    skipped: int = 0  # already converted by an earlier run
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)


def convert_m4a_tree(src_dir: str | os.PathLike, dst_dir: str | os.PathLike, *, nj: int = 4,
                     ffmpeg: str = "ffmpeg", sample_rate: int = 16000, progress: bool = False) -> ConvertReport:
    """Decode every ``<src>/idNNNNN/<video>/<name>.m4a`` to ``<dst>/idNNNNN/<video>/<name>.wav``.

    Resumable: files already in ``dst`` are skipped; each file is written to a hidden temporary
    name and renamed when ffmpeg succeeded, so an interrupted run never leaves a truncated wav
    under its final name. Failures are collected (and retried by the next run).
    """
    from tqdm import tqdm

    src_root = vox2_root(src_dir) if Path(src_dir).is_dir() else Path(src_dir)
    if not src_root.is_dir():
        raise DataError("VoxCeleb2 folder does not exist", path=src_dir)
    todo_scan = scan_tree(src_root, exts=(".m4a",))
    dst_root = Path(dst_dir)
    done = scan_tree(dst_root, exts=(".wav",)).files if dst_root.is_dir() else {}
    report = ConvertReport(skipped=sum(utt in done for utt in todo_scan.files))
    todo = sorted((utt, p) for utt, p in todo_scan.files.items() if utt not in done)
    log.info("converting %d m4a files to %s (%d already there) with %d jobs", len(todo), dst_root,
             report.skipped, nj)
    lock = threading.Lock()

    def one(item: tuple[str, str]) -> None:
        utt, src = item
        rel = Path(src).relative_to(src_root).with_suffix(".wav")
        dst = dst_root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp")
        cmd = [ffmpeg, "-nostdin", "-v", "8", "-y", "-i", src, "-f", "wav", "-acodec", "pcm_s16le",
               "-ar", str(sample_rate), str(tmp)]
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as e:  # ffmpeg missing: every file would fail the same way
            raise ConfigError(f"cannot run {ffmpeg!r}: {e.strerror}; install ffmpeg or give its path") from None
        if proc.returncode == 0 and tmp.is_file() and tmp.stat().st_size > 44:
            os.replace(tmp, dst)
            with lock:
                report.converted += 1
        else:
            tmp.unlink(missing_ok=True)
            reason = proc.stderr.decode("utf-8", "replace").strip()[-300:] or f"exit code {proc.returncode}"
            with lock:
                report.failed.append((src, reason))

    with ThreadPoolExecutor(max_workers=max(1, nj)) as pool:
        for _ in tqdm(pool.map(one, todo), total=len(todo), desc="m4a->wav", unit="file", disable=not progress):
            pass
    report.failed.sort()
    return report


# ---------------------------------------------------------------------------------------------
# MUSAN and RIRS_NOISES


MUSAN_KINDS = ("music", "speech", "noise")
RIR_SETS = {"simulated": "simulated_rirs", "real": "real_rirs_isotropic_noises"}


def _wav_files(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / f for f in filenames if f.endswith(".wav") and not f.startswith(".")]
    return sorted(out)


def _durations(paths: dict[str, str]) -> dict[str, float]:
    import soundfile

    out = {}
    for key, path in paths.items():
        try:
            info = soundfile.info(path)
        except (RuntimeError, OSError) as e:
            raise DataError(f"cannot read the header: {getattr(e, 'error_string', e)}", path=path) from None
        out[key] = info.frames / info.samplerate
    return out


def _write_recording_dir(out_dir: Path, wav: dict[str, str]) -> SetSummary:
    """Augmentation sources: each recording its own 'speaker' (utt2spk maps an id to itself)."""
    write_data_dir(out_dir, wav, {k: k for k in wav}, utt2dur=_durations(wav))
    return SetSummary(out_dir.name, str(out_dir), len(wav), len(wav))


def prepare_musan(musan_dir: str | os.PathLike, data_root: str | os.PathLike) -> list[SetSummary]:
    """``musan_music``, ``musan_speech``, ``musan_noise`` and ``musan`` (all three; ids keep MUSAN's
    ``music-``/``speech-``/``noise-`` file names, so a data dir still tells the kinds apart)."""
    d, data_root = Path(musan_dir), Path(data_root)
    missing = [k for k in MUSAN_KINDS if not (d / k).is_dir()]
    if missing:
        raise DataError(f"not MUSAN: no {', '.join(f'{k}/' for k in missing)} folder (get it from {SOURCES['MUSAN']})",
                        path=d)
    sets, everything = [], {}
    for kind in MUSAN_KINDS:
        wav = {}
        for p in _wav_files(d / kind):
            key = p.stem if p.stem.startswith(kind) else f"{kind}-{p.stem}"
            if key in wav or key in everything:
                raise DataError(f"two MUSAN files are named {p.stem!r}", path=p)
            wav[key] = str(p.resolve())
        if not wav:
            raise DataError(f"no .wav files in MUSAN's {kind}/", path=d / kind)
        sets.append(_write_recording_dir(data_root / f"musan_{kind}", wav))
        everything.update(wav)
    sets.append(_write_recording_dir(data_root / "musan", everything))
    return sets


def _rir_list(list_path: Path, rirs_dir: Path, subdir: str) -> dict[str, str]:
    """``--rir-id ID ... <path>`` lines -> id -> file (path resolved inside ``rirs_dir``)."""
    out = {}
    for n, line in enumerate(list_path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if "--rir-id" not in fields[:-2]:
            raise DataError(f"expected '--rir-id <id> ... <wav>', got {line.strip()!r}", path=list_path, line=n)
        rir_id = fields[fields.index("--rir-id") + 1]
        parts = Path(fields[-1]).parts
        rel = Path(*parts[parts.index(subdir):]) if subdir in parts else Path(fields[-1])
        path = rirs_dir / rel
        if not path.is_file():
            raise DataError(f"RIR file {fields[-1]!r} not found (looked at {path})", path=list_path, line=n)
        out[rir_id] = str(path.resolve())
    return out


def prepare_rirs(rirs_dir: str | os.PathLike, data_root: str | os.PathLike,
                 rooms: Iterable[str] = ("smallroom", "mediumroom")) -> list[SetSummary]:
    """``rirs_simulated`` (the chosen simulated rooms, Kaldi's VoxCeleb recipe uses small and
    medium) and ``rirs_real`` (real_rirs_isotropic_noises), from their ``rir_list`` files (or every
    wav of the folder when there is no list)."""
    d, data_root = Path(rirs_dir), Path(data_root)
    if not any((d / sub).is_dir() for sub in RIR_SETS.values()):
        raise DataError(f"not RIRS_NOISES: no simulated_rirs/ or real_rirs_isotropic_noises/ "
                        f"(get it from {SOURCES['RIRS_NOISES']})", path=d)
    simulated: dict[str, str] = {}
    for room in rooms:
        folder = d / RIR_SETS["simulated"] / room
        if not folder.is_dir():
            raise DataError(f"no simulated room set {room!r} (have: "
                            f"{', '.join(sorted(p.name for p in (d / RIR_SETS['simulated']).glob('*') if p.is_dir()))})",
                            path=folder)
        simulated.update(_rir_folder(folder, d, RIR_SETS["simulated"], prefix=room))
    sets = []
    if simulated:
        sets.append(_write_recording_dir(data_root / "rirs_simulated", simulated))
    real = d / RIR_SETS["real"]
    if real.is_dir():
        sets.append(_write_recording_dir(data_root / "rirs_real", _rir_folder(real, d, RIR_SETS["real"], prefix="")))
    return sets


def _rir_folder(folder: Path, rirs_dir: Path, subdir: str, prefix: str) -> dict[str, str]:
    if (folder / "rir_list").is_file():
        return _rir_list(folder / "rir_list", rirs_dir, subdir)
    files = _wav_files(folder)
    ids = ["-".join(([prefix] if prefix else []) + list(p.relative_to(folder).with_suffix("").parts)) for p in files]
    return {i: str(p.resolve()) for i, p in zip(ids, files) if not any(c.isspace() for c in i)}


# ---------------------------------------------------------------------------------------------
# The download step: what is missing and where to get it


def missing_corpora(vox1_dir: str | None = None, vox2_dir: str | None = None, lists_dir: str | None = None,
                    musan_dir: str | None = None, rirs_dir: str | None = None) -> list[str]:
    """One line per corpus that is asked for (a non-empty path) but not there, with where to get it."""
    problems = []

    def has_speakers(root: Path) -> bool:
        try:
            return any(SPEAKER_DIR.fullmatch(e.name) for e in _subdirs(str(root)))
        except OSError:
            return False

    if vox1_dir and not any(has_speakers(r) for r in vox1_roots(vox1_dir)):
        problems.append(f"VoxCeleb1 not found in {vox1_dir} (no wav/idNNNNN folders): {SOURCES['VoxCeleb1']}")
    if vox2_dir and not has_speakers(vox2_root(vox2_dir)):
        problems.append(f"VoxCeleb2 not found in {vox2_dir} (no dev/aac/idNNNNN folders): {SOURCES['VoxCeleb2']}")
    if lists_dir and not find_lists(lists_dir):
        problems.append(f"no VoxCeleb1 verification list in {lists_dir}: {SOURCES['lists']}")
    if musan_dir and not all((Path(musan_dir) / k).is_dir() for k in MUSAN_KINDS):
        problems.append(f"MUSAN not found in {musan_dir} (no music/ speech/ noise/): {SOURCES['MUSAN']}")
    if rirs_dir and not any((Path(rirs_dir) / s).is_dir() for s in RIR_SETS.values()):
        problems.append(f"RIRS_NOISES not found in {rirs_dir} (no simulated_rirs/): {SOURCES['RIRS_NOISES']}")
    return problems

# ---------------------------------------------------------------------------------------------
# The command line


_DIR = click.Path(file_okay=False)


def _print_sets(sets) -> None:
    for s in sets:
        click.echo(f"{s.path}: {s.num_utts} utterances, {s.num_speakers} speakers")


def _print_trials(reports) -> None:
    # count and missing-utterance warnings were logged (stderr) as they were found
    for r in reports:
        click.echo(f"{r.out}: {r.num_trials} trials ({r.num_target} target) from {r.source}")


@click.group(name="prepare_voxceleb.py", context_settings={"help_option_names": ["-h", "--help"],
                                                            "max_content_width": 100})
def main() -> None:
    """Prepare VoxCeleb1/2 (+ MUSAN, RIRS_NOISES) as Kaldi data dirs and trials."""
    from pyspeaker.log import setup_logging

    setup_logging()


def _refuse_overlap(data_root, set_names, inputs) -> None:
    """The data dirs this command writes under --out must not be (or hold) a corpus it reads."""
    refuse_overlap({f"--out ({name})": Path(data_root) / name for name in set_names}, inputs)


@main.command(name="check")
@click.option("--vox1-dir", type=_DIR, default=None, help="VoxCeleb1 (wav/idNNNNN/<video>/NNNNN.wav).")
@click.option("--vox2-dir", type=_DIR, default=None, help="VoxCeleb2 dev (dev/aac/idNNNNN/<video>/NNNNN.m4a).")
@click.option("--lists-dir", type=_DIR, default=None, help="Folder of the verification lists (veri_test2.txt, ...).")
@click.option("--musan-dir", type=_DIR, default=None, help="MUSAN (music/ speech/ noise/).")
@click.option("--rirs-dir", type=_DIR, default=None, help="RIRS_NOISES (simulated_rirs/, real_rirs_isotropic_noises/).")
def check(vox1_dir, vox2_dir, lists_dir, musan_dir, rirs_dir) -> None:
    """The download step: the corpora need registration, so this only checks what is there.

    For each corpus given but missing it prints where to get it, and then exits 1.
    """
    problems = missing_corpora(vox1_dir, vox2_dir, lists_dir, musan_dir, rirs_dir)
    if not any((vox1_dir, vox2_dir, lists_dir, musan_dir, rirs_dir)):
        problems = [f"{name}: {url}" for name, url in SOURCES.items()]
        problems.insert(0, "no corpus location given; the data comes from:")
    if problems:
        for p in problems:
            click.echo(p, err=True)
        sys.exit(1)
    click.echo("all corpora present")


@main.command(name="convert")
@click.option("--src", "src_dir", required=True, type=_DIR, help="VoxCeleb2 dev as downloaded (m4a files).")
@click.option("--dst", "dst_dir", required=True, type=_DIR, help="Where the wav tree goes (same idNNNNN/<video>/ layout).")
@click.option("--nj", type=click.IntRange(min=1), default=4, show_default=True, help="ffmpeg processes at a time.")
@click.option("--ffmpeg", default="ffmpeg", show_default=True, help="The ffmpeg program.")
@click.option("--sample-rate", type=click.IntRange(min=1), default=16000, show_default=True, help="Output rate in Hz.")
def convert(src_dir, dst_dir, nj, ffmpeg, sample_rate) -> None:
    """Convert VoxCeleb2's m4a to 16-bit wav once (resumable: converted files are skipped).

    Exits 1 if any file failed (the next run retries only those).
    """
    report = convert_m4a_tree(src_dir, dst_dir, nj=nj, ffmpeg=ffmpeg, sample_rate=sample_rate,
                              progress=sys.stderr.isatty())
    click.echo(f"{dst_dir}: converted {report.converted}, already there {report.skipped}, "
               f"failed {len(report.failed)}")
    for src, reason in report.failed[:10]:
        click.echo(f"failed: {src}: {reason}", err=True)
    if report.failed:
        click.echo(f"{len(report.failed)} file(s) failed; run again to retry them", err=True)
        sys.exit(1)


@main.command(name="data")
@click.option("--vox1-dir", type=_DIR, default=None, help="VoxCeleb1: voxceleb1, voxceleb1_dev, voxceleb1_test.")
@click.option("--vox2-dir", type=_DIR, default=None,
              help="VoxCeleb2 dev (m4a as downloaded, or the wav tree of 'convert'): voxceleb2_dev.")
@click.option("--lists-dir", type=_DIR, default=None,
              help="Verification lists to convert to Kaldi trials (default: --vox1-dir).")
@click.option("--out", "data_root", default="data", show_default=True, type=_DIR, help="Where the data dirs go.")
@click.option("--ffmpeg", default="ffmpeg", show_default=True, help="The ffmpeg program named in wav.scp pipes.")
@click.option("--check-counts/--no-check-counts", default=True, show_default=True,
              help="Warn when a list's line count differs from the published one.")
def data(vox1_dir, vox2_dir, lists_dir, data_root, ffmpeg, check_counts) -> None:
    """Make the VoxCeleb data dirs (sorted, ids idNNNNN-<video>-NNNNN) and trials under OUT.

    Trials: <OUT>/voxceleb1_test/trials_O[_clean] (veri_test[2].txt), <OUT>/voxceleb1/trials_E[_clean]
    (list_test_all[2].txt) and trials_H[_clean] (list_test_hard[2].txt), for the lists present.
    """
    if not vox1_dir and not vox2_dir:
        raise ConfigError("give --vox1-dir and/or --vox2-dir")
    _refuse_overlap(data_root, ("voxceleb1", "voxceleb1_dev", "voxceleb1_test", "voxceleb2_dev"),
                    {"--vox1-dir": vox1_dir, "--vox2-dir": vox2_dir, "--lists-dir": lists_dir})
    if vox1_dir:
        _print_sets(prepare_voxceleb1(vox1_dir, data_root))
        _print_trials(convert_vox1_lists(lists_dir or vox1_dir, data_root, check_counts=check_counts))
    if vox2_dir:
        _print_sets([prepare_voxceleb2(vox2_dir, data_root, ffmpeg=ffmpeg)])


@main.command(name="trials")
@click.argument("list_file", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--data-dir", type=_DIR, default=None, help="Warn about trials whose utterances are not in this data dir.")
@click.option("--expected", type=click.IntRange(min=0), default=None,
              help="Expected line count (default: the published count for a known list name).")
def trials(list_file, out, data_dir, expected) -> None:
    """Convert one VoxCeleb list (<1|0> <path1> <path2>) to Kaldi trials (<enroll> <test> target|nontarget)."""
    refuse_overlap({"OUT": out}, {"LIST_FILE": list_file, "--data-dir": data_dir})
    name = LIST_ALIASES.get(Path(list_file).name, Path(list_file).name)
    if expected is None and name in VOX1_LISTS:
        expected = VOX1_LISTS[name].expected
    known = None
    if data_dir:
        known = {key for _, key, _ in read_table(Path(data_dir) / "utt2spk")}
    _print_trials([convert_trials(list_file, out, expected=expected, known_utts=known, data_dir=data_dir)])


@main.command(name="augment")
@click.option("--musan-dir", type=_DIR, default=None, help="MUSAN: musan, musan_music, musan_speech, musan_noise.")
@click.option("--rirs-dir", type=_DIR, default=None, help="RIRS_NOISES: rirs_simulated, rirs_real.")
@click.option("--rir-rooms", default="smallroom mediumroom", show_default=True,
              help="Simulated room sets in rirs_simulated (space-separated; '' for none).")
@click.option("--out", "data_root", default="data", show_default=True, type=_DIR, help="Where the data dirs go.")
def augment(musan_dir, rirs_dir, rir_rooms, data_root) -> None:
    """Data dirs of augmentation sources (wav.scp, utt2spk mapping each id to itself, utt2dur)."""
    if not musan_dir and not rirs_dir:
        raise ConfigError("give --musan-dir and/or --rirs-dir")
    _refuse_overlap(data_root, ("musan", "musan_music", "musan_speech", "musan_noise", "rirs_simulated", "rirs_real"),
                    {"--musan-dir": musan_dir, "--rirs-dir": rirs_dir})
    if musan_dir:
        _print_sets(prepare_musan(musan_dir, data_root))
    if rirs_dir:
        _print_sets(prepare_rirs(rirs_dir, data_root, rooms=rir_rooms.split()))


if __name__ == "__main__":
    from pyspeaker.cli import run_script

    run_script(main)
