"""VoxCeleb recipe stage 0 on a small fake VoxCeleb tree made of real FSDD recordings.

The trees have VoxCeleb's layout (``id1xxxx/<video>/00001.wav`` for VoxCeleb1,
``dev/aac/id0xxxx/<video>/00001.m4a`` for VoxCeleb2). With ffmpeg installed the m4a files are real
AAC made by ffmpeg; without it they hold WAV data and a stand-in ``ffmpeg`` script on PATH decodes
them, so the ``ffmpeg ... |`` pipes of wav.scp are still run by validate-data and make-features.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from conftest import REPO, load_local, run_local

from pyspeaker.errors import ConfigError, DataError

vox = load_local("local/prepare_voxceleb.py")
VOX1_LISTS, convert_m4a_tree, convert_trials = vox.VOX1_LISTS, vox.convert_m4a_tree, vox.convert_trials
path_to_utt, prepare_voxceleb1, scan_tree = vox.path_to_utt, vox.prepare_voxceleb1, vox.scan_tree

FSDD = REPO.parent / "shared/corpora/fsdd/recordings"
FFMPEG = shutil.which("ffmpeg")
pytestmark = pytest.mark.skipif(not FSDD.is_dir(), reason=f"FSDD recordings not found at {FSDD}")

# VoxCeleb1: two dev speakers and two of the test split (id10270-id10309); VoxCeleb2: two speakers.
VOX1 = {"id10001": "george", "id10002": "jackson", "id10270": "lucas", "id10271": "nicolas"}
VOX2 = {"id00012": "theo", "id00015": "yweweler"}
VIDEOS = ("8jEAjG6SegY", "x6uY-qm_31kE")  # YouTube ids hold '-' and '_' and both cases
FILES = ("00001", "00002")

# A stand-in for ffmpeg: decodes the input with soundfile, resamples to -ar, writes 16-bit WAV. On a
# pipe ('-') it writes what ffmpeg writes to unseekable output: 0xFFFFFFFF sizes and a LIST chunk.
SHIM = '''#!{python}
import struct, sys
import numpy as np, soundfile as sf
args = sys.argv[1:]
src, out = args[args.index("-i") + 1], args[-1]
if "BROKEN" in src:
    sys.stderr.write(src + ": Invalid data found when processing input\\n")
    sys.exit(1)
x, rate = sf.read(src, dtype="float64")
new = int(args[args.index("-ar") + 1]) if "-ar" in args else rate
if new != rate:  # linear interpolation: a stand-in, not a good resampler
    x = np.interp(np.arange(round(len(x) * new / rate)) * rate / new, np.arange(len(x)), x)
y = np.clip(np.round(x * 32768), -32768, 32767).astype("<i2")
if out == "-":
    info = b"INFO" + b"ISFT" + struct.pack("<I", 14) + b"Lavf59.27.100\\0"
    fmt = struct.pack("<HHIIHH", 1, 1, new, 2 * new, 2, 16)
    sys.stdout.buffer.write(b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
                            + b"LIST" + struct.pack("<I", len(info)) + info + b"data"
                            + struct.pack("<I", 0xFFFFFFFF) + y.tobytes())
else:
    sf.write(out, y, new, subtype="PCM_16", format="WAV")
'''


def fsdd_files(speaker: str, n: int) -> list[Path]:
    return [FSDD / f"{digit}_{speaker}_{rep}.wav" for digit, rep in zip(range(n), range(n))]


def env_with_ffmpeg(tmp_path: Path) -> dict:
    """The environment for subprocesses: the stand-in ffmpeg first on PATH when there is no real one."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if FFMPEG is None:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        shim = bin_dir / "ffmpeg"
        shim.write_text(SHIM.format(python=sys.executable))
        shim.chmod(0o755)
        env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return env


def pyspeaker(env: dict, *args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyspeaker", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True)


def prepare(env: dict, *args) -> subprocess.CompletedProcess:
    """``python local/prepare_voxceleb.py ARGS``, as local/voxceleb/*.sh run it."""
    return run_local("local/prepare_voxceleb.py", *args, env=env)


def make_m4a(src: Path, dst: Path) -> None:
    if FFMPEG:
        subprocess.run([FFMPEG, "-nostdin", "-v", "8", "-y", "-i", str(src), "-c:a", "aac", "-b:a", "64k", str(dst)],
                       check=True)
    else:  # WAV data under the m4a name: the stand-in ffmpeg decodes it
        shutil.copy(src, dst)


def make_fake_vox(root: Path) -> dict:
    """vox1/wav/..., vox2/dev/aac/..., the six lists; returns the pieces for the assertions."""
    vox1, vox2 = root / "VoxCeleb1", root / "VoxCeleb2"
    sources = {}
    for spk, name in VOX1.items():
        recordings = iter(fsdd_files(name, 4))
        for video in VIDEOS:
            for f in FILES:
                dst = vox1 / "wav" / spk / video / f"{f}.wav"
                dst.parent.mkdir(parents=True, exist_ok=True)
                src = next(recordings)
                shutil.copy(src, dst)
                sources[f"{spk}-{video}-{f}"] = src
    for spk, name in VOX2.items():
        recordings = iter(fsdd_files(name, 4))
        for video in VIDEOS:
            for f in FILES:
                dst = vox2 / "dev" / "aac" / spk / video / f"{f}.m4a"
                dst.parent.mkdir(parents=True, exist_ok=True)
                src = next(recordings)
                make_m4a(src, dst)
                sources[f"{spk}-{video}-{f}"] = src
    # What a real download also holds: an interrupted copy, a macOS folder, a stray file.
    (vox2 / "dev" / "aac" / "id00012" / VIDEOS[0] / ".00003.m4a.tmp").write_bytes(b"partial")
    (vox1 / "wav" / "__MACOSX").mkdir()
    (vox1 / "wav" / "id10001" / VIDEOS[0] / "notes.txt").write_text("not audio\n")
    lists = make_lists(vox1)
    return {"vox1": vox1, "vox2": vox2, "sources": sources, "lists": lists}


def vox1_paths(speakers) -> list[str]:
    return [f"{s}/{v}/{f}.wav" for s in speakers for v in VIDEOS for f in FILES]


def make_lists(vox1: Path) -> dict[str, list[str]]:
    """The six lists in VoxCeleb's form: O over the test speakers, E and H over all of VoxCeleb1."""
    def pairs(paths):
        return [f"{int(a.split('/')[0] == b.split('/')[0])} {a} {b}"
                for i, a in enumerate(paths) for b in paths[i + 1:]]

    o = pairs(vox1_paths(["id10270", "id10271"]))           # 28 trials
    e = pairs(vox1_paths(VOX1))                              # 120 trials
    h = [line for line in e if line.split()[1][:7] != "id10001"]  # 'hard': some subset
    lists = {"veri_test.txt": o, "veri_test2.txt": o[3:], "list_test_all.txt": e,
             "list_test_all2.txt": e[:-5], "list_test_hard.txt": h, "list_test_hard2.txt": h[2:]}
    for name, lines in lists.items():
        (vox1 / name).write_text("".join(line + "\n" for line in lines))
    return lists


def read_kv(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split(" ", 1)) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def fake_vox(tmp_path_factory) -> dict:
    return make_fake_vox(tmp_path_factory.mktemp("vox"))


# ------------------------------------------------------------------------------------------------


def test_scan_tree_finds_the_files_and_skips_the_rest(fake_vox, tmp_path):
    scan = scan_tree(fake_vox["vox1"] / "wav")
    assert len(scan.files) == 16 and scan.speakers() == set(VOX1)
    assert scan.files["id10270-x6uY-qm_31kE-00002"] == str(fake_vox["vox1"] / "wav/id10270/x6uY-qm_31kE/00002.wav")
    assert scan.skipped == [str(fake_vox["vox1"] / "wav/__MACOSX")]
    vox2 = scan_tree(fake_vox["vox2"] / "dev/aac")
    assert len(vox2.files) == 8 and all(p.endswith(".m4a") for p in vox2.files.values())  # no .tmp file
    # a tree converted in place: the wav wins over the m4a of the same name
    tree = tmp_path / "id00001" / "v"
    tree.mkdir(parents=True)
    for name in ("00001.m4a", "00001.wav", "00002.m4a"):
        (tree / name).write_bytes(b"x")
    assert scan_tree(tmp_path).files == {"id00001-v-00001": str(tree / "00001.wav"),
                                         "id00001-v-00002": str(tree / "00002.m4a")}


def test_path_to_utt():
    assert path_to_utt("id10270/x6uYqmx31kE/00001.wav") == "id10270-x6uYqmx31kE-00001"
    assert path_to_utt("wav/id10270/x6uY-qm_31kE/00008.wav") == "id10270-x6uY-qm_31kE-00008"
    assert path_to_utt("id10270-x6uYqmx31kE-00001") == "id10270-x6uYqmx31kE-00001"
    with pytest.raises(ValueError):
        path_to_utt("x6uYqmx31kE/00001.wav")


def test_data_dirs_trials_and_validation(fake_vox, tmp_path):
    env = env_with_ffmpeg(tmp_path)
    data = tmp_path / "data"
    proc = prepare(env, "data", "--vox1-dir", fake_vox["vox1"], "--vox2-dir", fake_vox["vox2"], "--out", data)
    assert proc.returncode == 0, proc.stderr
    for line in (f"{data}/voxceleb1: 16 utterances, 4 speakers", f"{data}/voxceleb1_dev: 8 utterances, 2 speakers",
                 f"{data}/voxceleb1_test: 8 utterances, 2 speakers",
                 f"{data}/voxceleb2_dev: 8 utterances, 2 speakers"):
        assert line in proc.stdout

    # wav.scp: sorted utterance ids <spk>-<video>-<file>; wav paths for VoxCeleb1, ffmpeg pipes for m4a
    vox1_test = read_kv(data / "voxceleb1_test/wav.scp")
    assert [k for k, _ in vox1_test] == sorted(f"{s}-{v}-{f}" for s in ("id10270", "id10271")
                                               for v in VIDEOS for f in FILES)
    assert dict(vox1_test)["id10270-8jEAjG6SegY-00001"] == str(fake_vox["vox1"] / "wav/id10270/8jEAjG6SegY/00001.wav")
    vox2 = dict(read_kv(data / "voxceleb2_dev/wav.scp"))
    m4a = fake_vox["vox2"] / "dev/aac/id00015/x6uY-qm_31kE/00002.m4a"
    assert vox2["id00015-x6uY-qm_31kE-00002"] == f"ffmpeg -v 8 -i {m4a} -f wav -acodec pcm_s16le -ar 16000 - |"
    assert read_kv(data / "voxceleb2_dev/utt2spk")[0] == ("id00012-8jEAjG6SegY-00001", "id00012")
    spk2utt = (data / "voxceleb1/spk2utt").read_text().splitlines()
    assert [line.split()[0] for line in spk2utt] == sorted(VOX1)
    assert spk2utt[0].split()[1:] == sorted(f"id10001-{v}-{f}" for v in VIDEOS for f in FILES)

    # every data dir passes validate-data, audio included (the m4a pipes decode at 16 kHz)
    for name, counts in (("voxceleb1", "16 utterances, 4 speakers"), ("voxceleb1_test", "8 utterances, 2 speakers"),
                         ("voxceleb1_dev", "8 utterances, 2 speakers")):
        v = pyspeaker(env, "validate-data", data / name)
        assert v.returncode == 0, v.stderr
        assert v.stdout.strip() == f"{data / name}: OK ({counts})"
    v = pyspeaker(env, "validate-data", "--sample-rate", "16000", data / "voxceleb2_dev")
    assert v.returncode == 0, v.stderr
    assert v.stdout.strip() == f"{data / 'voxceleb2_dev'}: OK (8 utterances, 2 speakers)"

    # the six lists as Kaldi trials, next to the data dir that holds their utterances
    outputs = {"veri_test.txt": data / "voxceleb1_test/trials_O", "veri_test2.txt": data / "voxceleb1_test/trials_O_clean",
               "list_test_all.txt": data / "voxceleb1/trials_E", "list_test_all2.txt": data / "voxceleb1/trials_E_clean",
               "list_test_hard.txt": data / "voxceleb1/trials_H", "list_test_hard2.txt": data / "voxceleb1/trials_H_clean"}
    for name, out in outputs.items():
        src = fake_vox["lists"][name]
        got = out.read_text().splitlines()
        assert len(got) == len(src)
        for vline, kline in zip(src, got):
            label, a, b = vline.split()
            assert kline == f"{path_to_utt(a)} {path_to_utt(b)} {'target' if label == '1' else 'nontarget'}"
        targets = sum(line.startswith("1") for line in src)
        assert f"{out}: {len(src)} trials ({targets} target) from {fake_vox['vox1'] / name}" in proc.stdout
        # the fake lists are short: each count warning names the file, the published and the actual count
        assert (f"{fake_vox['vox1'] / name}: expected {VOX1_LISTS[name].expected} trials, "
                f"found {len(src)} (an incomplete or different download?)") in proc.stderr
    assert (data / "voxceleb1_test/trials_O").read_text().splitlines()[0] == (
        "id10270-8jEAjG6SegY-00001 id10270-8jEAjG6SegY-00002 target")
    assert "not in" not in proc.stderr  # every trial's utterances are in its data dir


def test_features_through_ffmpeg_pipes(fake_vox, tmp_path):
    """make-features reads the m4a pipes: 16 kHz audio, as many frames as the resampled recording gives."""
    env = env_with_ffmpeg(tmp_path)
    data = tmp_path / "data"
    assert prepare(env, "data", "--vox2-dir", fake_vox["vox2"], "--out", data).returncode == 0
    proc = pyspeaker(env, "make-features", "--data-dir", data / "voxceleb2_dev", "--conf", REPO / "conf/fbank.conf",
                     "--features-root", tmp_path / "features", "--format", "ark", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    import kaldiio

    feats = dict(kaldiio.load_scp(str(Path(proc.stdout.strip()) / "feats.scp")).items())
    assert len(feats) == 8
    utt = "id00012-8jEAjG6SegY-00001"
    samples = 2 * sf.info(str(fake_vox["sources"][utt])).frames  # 8 kHz -> 16 kHz
    expected_frames = 1 + (samples - 400) // 160
    assert feats[utt].shape[1] == 80
    assert abs(feats[utt].shape[0] - expected_frames) <= (2 if FFMPEG else 0)  # AAC adds priming samples


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed: no real m4a files can be made "
                                           "(the ffmpeg pipe path is tested with a stand-in ffmpeg)")
def test_real_m4a_through_the_wav_scp_pipe(tmp_path):
    from pyspeaker.audio import load_audio

    src = FSDD / "3_theo_7.wav"
    m4a = tmp_path / "00001.m4a"
    make_m4a(src, m4a)
    assert m4a.read_bytes()[4:8] == b"ftyp"  # an MP4 container
    samples, rate = load_audio(vox.wav_scp_entry(str(m4a)))
    original, orig_rate = sf.read(str(src), dtype="float32")
    assert rate == 16000 and orig_rate == 8000
    assert abs(len(samples) - 2 * len(original)) < 0.1 * rate  # AAC adds a few priming/padding samples


def test_convert_m4a_is_resumable(fake_vox, tmp_path):
    env = env_with_ffmpeg(tmp_path)
    src = tmp_path / "vox2"
    shutil.copytree(fake_vox["vox2"], src)
    broken = src / "dev/aac/id00015" / VIDEOS[1] / "BROKEN.m4a"
    if FFMPEG:
        broken.write_bytes(b"not an m4a file")
    else:
        broken.write_bytes(b"")  # the stand-in fails on BROKEN files
    dst = tmp_path / "vox2_wav"

    def convert():
        return prepare(env, "convert", "--src", src, "--dst", dst, "--nj", "2")

    first = convert()
    assert first.returncode == 1
    assert f"{dst}: converted 8, already there 0, failed 1" in first.stdout
    assert f"failed: {broken}" in first.stderr and "run again to retry" in first.stderr
    wavs = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file())
    assert len(wavs) == 8 and "id00012/8jEAjG6SegY/00001.wav" in wavs  # no temporary or partial file left
    info = sf.info(str(dst / "id00012/8jEAjG6SegY/00001.wav"))
    assert info.samplerate == 16000 and info.subtype == "PCM_16"

    broken.unlink()
    again = convert()
    assert again.returncode == 0, again.stderr
    assert f"{dst}: converted 0, already there 8, failed 0" in again.stdout

    # a lost file and a leftover temporary: only that file is converted again
    (dst / "id00015/8jEAjG6SegY/00002.wav").unlink()
    (dst / "id00015/8jEAjG6SegY/.00002.wav.tmp").write_bytes(b"half")
    third = convert()
    assert third.returncode == 0 and "converted 1, already there 7, failed 0" in third.stdout
    assert not (dst / "id00015/8jEAjG6SegY/.00002.wav.tmp").exists()

    # the converted tree makes a data dir of plain wav paths
    data = tmp_path / "data"
    proc = prepare(env, "data", "--vox2-dir", dst, "--out", data)
    assert proc.returncode == 0, proc.stderr
    wav = dict(read_kv(data / "voxceleb2_dev/wav.scp"))
    assert wav["id00015-8jEAjG6SegY-00002"] == str(dst / "id00015/8jEAjG6SegY/00002.wav")
    assert pyspeaker(env, "validate-data", "--sample-rate", "16000", data / "voxceleb2_dev").returncode == 0


def test_convert_without_ffmpeg_says_so(fake_vox, tmp_path):
    with pytest.raises(ConfigError) as e:
        convert_m4a_tree(fake_vox["vox2"], tmp_path / "out", ffmpeg=str(tmp_path / "no-ffmpeg"))
    assert e.value.message.startswith(f"cannot run '{tmp_path / 'no-ffmpeg'}': No such file or directory")


def test_convert_trials_checks_and_warnings(tmp_path):
    lst = tmp_path / "veri_test2.txt"
    lst.write_text("1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n"
                   "0 id10270/x6uYqmx31kE/00001.wav id10300/ize_eiCFEg0/00003.wav\n")
    out = tmp_path / "trials"
    known = {"id10270-x6uYqmx31kE-00001", "id10270-8jEAjG6SegY-00008"}
    report = convert_trials(lst, out, expected=37_611, known_utts=known, data_dir="data/voxceleb1_test")
    assert out.read_text() == ("id10270-x6uYqmx31kE-00001 id10270-8jEAjG6SegY-00008 target\n"
                               "id10270-x6uYqmx31kE-00001 id10300-ize_eiCFEg0-00003 nontarget\n")
    assert (report.num_trials, report.num_target) == (2, 1)
    assert report.warnings == [
        f"{lst}: expected 37611 trials, found 2 (an incomplete or different download?)",
        f"{lst}:2: 1 trials name utterances that are not in data/voxceleb1_test (first: 'id10300-ize_eiCFEg0-00003')"]
    assert convert_trials(lst, out, expected=2).warnings == []

    bad = tmp_path / "bad.txt"
    bad.write_text("1 id10270/a/00001.wav id10270/b/00002.wav\n2 id10270/a/00001.wav id10270/b/00003.wav\n")
    with pytest.raises(DataError) as e:
        convert_trials(bad, tmp_path / "t2")
    assert e.value.line == 2 and "unknown label '2'" in e.value.message
    assert not (tmp_path / "t2").exists()
    odd = tmp_path / "odd.txt"
    odd.write_text("1 id10270/a/00001.wav id10270/b/00002.wav\n0 a/00001.wav id10270/b/00003.wav\n")
    with pytest.raises(DataError) as e:
        convert_trials(odd, tmp_path / "t3")
    assert e.value.line == 2 and "'a/00001.wav'" in e.value.message


def test_trials_command_uses_the_published_count(tmp_path):
    env = dict(os.environ)
    lst = tmp_path / "list_test_hard2.txt"
    lst.write_text("1 id10001/v/00001.wav id10001/w/00002.wav\n")
    proc = prepare(env, "trials", lst, tmp_path / "trials_H_clean")
    assert proc.returncode == 0
    assert f"[WARNING] pyspeaker.local.prepare_voxceleb: {lst}: expected 550894 trials, found 1" in proc.stderr
    ok = prepare(env, "trials", "--expected", "1", lst, tmp_path / "t")
    assert ok.returncode == 0 and "WARNING" not in ok.stderr
    assert (tmp_path / "t").read_text() == "id10001-v-00001 id10001-w-00002 target\n"


def test_vox1_split_with_kaldi_layout(fake_vox, tmp_path):
    """Kaldi keeps VoxCeleb1 as dev/wav and test/wav; both are read."""
    vox1 = tmp_path / "vox1"
    shutil.copytree(fake_vox["vox1"] / "wav/id10001", vox1 / "dev/wav/id10001")
    shutil.copytree(fake_vox["vox1"] / "wav/id10270", vox1 / "test/wav/id10270")
    sets = {s.name: (s.num_utts, s.num_speakers) for s in prepare_voxceleb1(vox1, tmp_path / "data")}
    assert sets == {"voxceleb1": (8, 2), "voxceleb1_dev": (4, 1), "voxceleb1_test": (4, 1)}


def make_musan_rirs(root: Path) -> tuple[Path, Path]:
    rec = iter(sorted(FSDD.glob("*_theo_*.wav"))[:12])
    musan = root / "musan"
    for kind, source in (("music", "fma"), ("speech", "librivox"), ("noise", "free-sound")):
        for i in range(2):
            p = musan / kind / source / f"{kind}-{source}-{i:04d}.wav"
            p.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(next(rec), p)
    rirs = root / "RIRS_NOISES"
    for room in ("smallroom", "mediumroom", "largeroom"):
        lines = []
        for r in (1, 2):
            p = rirs / "simulated_rirs" / room / f"Room{r:03d}" / f"Room{r:03d}-00001.wav"
            p.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(next(iter(sorted(FSDD.glob("*_lucas_*.wav")))), p)
            lines.append(f"--rir-id {room}-Room{r:03d}-00001 --room-id {room}-Room{r:03d} "
                         f"RIRS_NOISES/simulated_rirs/{room}/Room{r:03d}/Room{r:03d}-00001.wav")
        (rirs / "simulated_rirs" / room / "rir_list").write_text("\n".join(lines) + "\n")
    real = rirs / "real_rirs_isotropic_noises"
    real.mkdir(parents=True)
    shutil.copy(FSDD / "1_lucas_1.wav", real / "air_type1_air_binaural_aula_carolina_1_1_3_0_1.wav")
    (real / "rir_list").write_text(
        "--rir-id air_type1_air_binaural_aula_carolina_1_1_3_0_1 --room-id air_type1_air_binaural_aula_carolina_1 "
        "RIRS_NOISES/real_rirs_isotropic_noises/air_type1_air_binaural_aula_carolina_1_1_3_0_1.wav\n")
    return musan, rirs


def test_musan_and_rir_data_dirs(tmp_path):
    musan, rirs = make_musan_rirs(tmp_path)
    data = tmp_path / "data"
    env = dict(os.environ)
    proc = prepare(env, "augment", "--musan-dir", musan, "--rirs-dir", rirs, "--out", data)
    assert proc.returncode == 0, proc.stderr
    expected = {"musan_music": 2, "musan_speech": 2, "musan_noise": 2, "musan": 6, "rirs_simulated": 4, "rirs_real": 1}
    for name, n in expected.items():
        assert f"{data / name}: {n} utterances, {n} speakers" in proc.stdout
        v = pyspeaker(env, "validate-data", data / name)
        assert v.returncode == 0, v.stderr
    assert [k for k, _ in read_kv(data / "musan/wav.scp")] == [
        "music-fma-0000", "music-fma-0001", "noise-free-sound-0000", "noise-free-sound-0001",
        "speech-librivox-0000", "speech-librivox-0001"]
    rir = dict(read_kv(data / "rirs_simulated/wav.scp"))
    assert sorted(rir) == ["mediumroom-Room001-00001", "mediumroom-Room002-00001",
                           "smallroom-Room001-00001", "smallroom-Room002-00001"]  # largeroom not chosen
    assert rir["smallroom-Room002-00001"] == str(rirs / "simulated_rirs/smallroom/Room002/Room002-00001.wav")
    dur = dict(read_kv(data / "rirs_real/utt2dur"))
    assert float(dur["air_type1_air_binaural_aula_carolina_1_1_3_0_1"]) == pytest.approx(
        sf.info(str(FSDD / "1_lucas_1.wav")).duration, abs=1e-3)
    bad = prepare(env, "augment", "--rirs-dir", rirs, "--rir-rooms", "hall", "--out", data)
    assert bad.returncode == 1 and "no simulated room set 'hall' (have: largeroom, mediumroom, smallroom)" in bad.stderr


def test_download_step_says_where_to_get_missing_data(fake_vox, tmp_path):
    env = dict(os.environ)
    missing = prepare(env, "check", "--vox1-dir", tmp_path / "nowhere",
                      "--vox2-dir", fake_vox["vox2"], "--musan-dir", tmp_path / "musan")
    assert missing.returncode == 1
    assert f"VoxCeleb1 not found in {tmp_path / 'nowhere'}" in missing.stderr
    assert "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/vox1.html" in missing.stderr
    assert "https://www.openslr.org/17/" in missing.stderr and "VoxCeleb2" not in missing.stderr
    script = subprocess.run([str(REPO / "local/voxceleb/download.sh"), "--vox1-dir", str(fake_vox["vox1"]),
                             "--vox2-dir", str(fake_vox["vox2"])], env=env, capture_output=True, text=True)
    assert script.returncode == 0 and script.stdout.strip() == "all corpora present"


@pytest.fixture
def recipe_copy(tmp_path) -> Path:
    d = tmp_path / "recipe"
    d.mkdir()
    for name in ("run.sh", "path.sh", "utils", "steps", "local", "recipes", "conf", "pyproject.toml",
                 "requirements.txt"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, d / name)
    return d


def test_run_sh_stage0_voxceleb_recipe(fake_vox, tmp_path, recipe_copy):
    env = env_with_ffmpeg(tmp_path)
    musan, rirs = make_musan_rirs(tmp_path)
    args = ["--vox1-dir", str(fake_vox["vox1"]), "--vox2-dir", str(fake_vox["vox2"]),
            "--musan-dir", str(musan), "--rirs-dir", str(rirs)]
    proc = subprocess.run(["./run.sh", "--recipe", "voxceleb", "--stop-stage", "0", *args], cwd=recipe_copy, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = recipe_copy / "data"
    for name in ("voxceleb1", "voxceleb1_dev", "voxceleb1_test", "voxceleb2_dev", "musan", "musan_noise",
                 "rirs_simulated", "rirs_real"):
        assert (data / name / "wav.scp").is_file(), name
    assert len((data / "voxceleb1_test/trials_O_clean").read_text().splitlines()) == 25
    assert "data/voxceleb2_dev: OK (8 utterances, 2 speakers)" in proc.stdout + proc.stderr
    again = subprocess.run(["./run.sh", "--recipe", "voxceleb", "--stop-stage", "0", *args], cwd=recipe_copy, env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "data/ is up to date, skipping" in again.stderr

    # the download step: without the corpora stage 0 stops, saying where to get them
    gone = subprocess.run(["./run.sh", "--recipe", "voxceleb", "--stop-stage", "0", "--vox1-dir", str(tmp_path / "x"),
                           "--vox2-dir", str(tmp_path / "y")], cwd=recipe_copy, env=env, capture_output=True,
                          text=True, timeout=600)
    assert gone.returncode != 0
    assert "VoxCeleb1 not found" in gone.stderr and "VoxCeleb2 not found" in gone.stderr
    assert "registration" in gone.stderr


def test_run_sh_help_lists_the_voxceleb_settings():
    proc = subprocess.run(["./run.sh", "--recipe", "voxceleb", "--help"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0
    for setting in ('--vox1-dir ""', '--vox2-dir ""', "--vox2-audio pipe", '--musan-dir ""',
                    "--train-set voxceleb2_dev", "--trials data/voxceleb1_test/trials_O_clean"):
        assert setting in proc.stdout
