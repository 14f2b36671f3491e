"""Kaldi files both ways: written by kaldiio and read by pyspeaker, written by pyspeaker and read by kaldiio.

Covers xvector.scp/ark, spk_xvector.scp/ark, num_utts.ark (Kaldi's binary tables), feats.scp/ark
(plain and compressed matrices), and wav.scp pipes (``cat ... |``, ``python -c ... |``, ``sox ... |``
where sox is installed), ``file.ark:offset`` audio and segments through ``pyspeaker make-features``.
"""
from __future__ import annotations

import shlex
import shutil
import struct
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, run_cli

from pyspeaker.features import FeatureExtractor, load_feature_config
from pyspeaker.store import FeatureStore
from pyspeaker.store.embeddings import load_embeddings, write_embeddings
from pyspeaker.store.kaldi_vectors import read_num_utts, write_num_utts, write_speaker_vectors

FBANK = REPO / "conf" / "fbank.conf"
FSDD = REPO.parent / "shared/corpora/fsdd/recordings"


def vectors(n: int = 7, dim: int = 16, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = [f"spk{i % 3}-utt{i:02d}" for i in range(n)]
    return ids, rng.normal(size=(n, dim)).astype(np.float32)


# ------------------------------------------------------------------------------ embeddings


@pytest.mark.parametrize("spec", ["ark,scp", "ark,scp,t"])
def test_load_embeddings_reads_kaldiio_xvectors(tmp_path: Path, spec: str):
    """xvector.scp/ark as Kaldi's extract-xvectors.sh leaves them (binary, or text with ',t')."""
    ids, x = vectors()
    d = tmp_path / "xvectors_test"
    d.mkdir()
    text = spec.endswith(",t")
    with kaldiio.WriteHelper(f"{spec.removesuffix(',t')}{',t' if text else ''}:{d / 'xvector.ark'},{d / 'xvector.scp'}") as w:
        for key, vec in zip(ids, x):
            w(key, vec)
    for path in (d, d / "xvector.scp", d / "xvector.ark"):
        got_ids, got = load_embeddings(path)
        assert got_ids == ids
        np.testing.assert_allclose(got, x, rtol=1e-6 if text else 0, atol=1e-6 if text else 0)
        assert got.dtype == np.float32


def test_load_embeddings_reads_double_vectors(tmp_path: Path):
    ids, x = vectors()
    kaldiio.save_ark(str(tmp_path / "xvector.ark"), {k: v.astype(np.float64) for k, v in zip(ids, x)},
                     scp=str(tmp_path / "xvector.scp"))
    assert (tmp_path / "xvector.ark").read_bytes()[len(ids[0]) + 1:len(ids[0]) + 6] == b"\0BDV "
    got_ids, got = load_embeddings(tmp_path / "xvector.scp")
    assert got_ids == ids and got.dtype == np.float32
    np.testing.assert_array_equal(got, x)


def _kaldi_float_vector(key: str, vec: np.ndarray) -> bytes:
    """One binary FloatVector table entry exactly as Kaldi writes it."""
    return key.encode() + b" \0BFV \x04" + struct.pack("<i", len(vec)) + vec.astype("<f4").tobytes()


def test_our_xvectors_are_kaldi_binary(tmp_path: Path):
    ids, x = vectors()
    out = tmp_path / "emb"
    write_embeddings(out, ids, x)
    order = np.argsort(ids)  # written sorted, as Kaldi tables are
    ids, x = [ids[i] for i in order], x[order]
    ark = (out / "xvector.ark").read_bytes()
    assert ark == b"".join(_kaldi_float_vector(k, v) for k, v in zip(ids, x))
    scp = dict(kaldiio.load_scp(str(out / "xvector.scp")).items())
    assert list(scp) == ids
    for k, v in zip(ids, x):
        np.testing.assert_array_equal(scp[k], v)
    loaded = dict(kaldiio.load_ark(str(out / "xvector.ark")))
    np.testing.assert_array_equal(np.stack([loaded[k] for k in ids]), x)
    # scp lines name the ark's final absolute path with byte offsets
    first = (out / "xvector.scp").read_text().splitlines()[0]
    assert first == f"{ids[0]} {(out / 'xvector.ark').resolve()}:{len(ids[0]) + 1}"


def test_spk_xvector_and_num_utts_as_ivector_mean_writes_them(tmp_path: Path):
    ids, x = vectors(n=8)
    utt2spk = {u: u.split("-")[0] for u in ids}
    out = tmp_path / "emb"
    write_embeddings(out, ids, x)
    speakers, counts = write_speaker_vectors(out, ids, x, utt2spk)
    assert speakers == ["spk0", "spk1", "spk2"] and counts == [3, 3, 2]

    spk = dict(kaldiio.load_scp(str(out / "spk_xvector.scp")).items())
    assert list(spk) == speakers
    for s in speakers:
        rows = [i for i, u in enumerate(ids) if utt2spk[u] == s]
        np.testing.assert_allclose(spk[s], x[rows].astype(np.float64).mean(axis=0), rtol=1e-6, atol=1e-7)
        assert spk[s].dtype == np.float32
    ark = (out / "spk_xvector.ark").read_bytes()
    assert ark == b"".join(_kaldi_float_vector(s, spk[s]) for s in speakers)
    assert (out / "xvector.scp").is_file() and not any(p.name.startswith(".") for p in out.iterdir())

    # num_utts.ark in text, as ivector-mean writes it (ark,t), counts right-aligned: kaldiio,
    # pyspeaker score --num-utts and ours read it
    assert (out / "num_utts.ark").read_text() == "spk0    3\nspk1    3\nspk2    2\n"
    assert {k: v.tolist() for k, v in kaldiio.load_ark(str(out / "num_utts.ark"))} == {
        "spk0": [3], "spk1": [3], "spk2": [2]}
    from pyspeaker.scoring.pipeline import utterance_counts

    assert utterance_counts(out / "num_utts.ark", ["spk2", "spk0", "other"]).tolist() == [2, 3, 1]
    assert read_num_utts(out / "num_utts.ark") == {"spk0": 3, "spk1": 3, "spk2": 2}

    # load_embeddings picks the speaker vectors when they are all there is
    only = tmp_path / "spk_only"
    only.mkdir()
    for name in ("spk_xvector.scp", "spk_xvector.ark"):
        shutil.copy(out / name, only / name)
    (only / "spk_xvector.scp").write_text((out / "spk_xvector.scp").read_text().replace(
        str((out / "spk_xvector.ark").resolve()), str((only / "spk_xvector.ark").resolve())))
    got_ids, got = load_embeddings(only)
    assert got_ids == speakers
    np.testing.assert_array_equal(got, np.stack([spk[s] for s in speakers]))


def test_num_utts_binary_int32_table(tmp_path: Path):
    path = tmp_path / "num_utts.ark"
    write_num_utts(path, {"b": 7, "a": 300}, binary=True)
    # Kaldi's binary Int32 table: "<key> \0B" then the int32 as <size byte 4><little-endian value>
    assert path.read_bytes() == b"a \0B\x04" + struct.pack("<i", 300) + b"b \0B\x04" + struct.pack("<i", 7)
    assert read_num_utts(path) == {"a": 300, "b": 7}


def test_speaker_vectors_leave_out_unlabelled_vectors(tmp_path: Path, caplog):
    ids, x = vectors(n=4)
    speakers, counts = write_speaker_vectors(tmp_path, ids, x, {ids[0]: "A", ids[2]: "A", ids[3]: "B"})
    assert speakers == ["A", "B"] and counts == [2, 1]
    spk = dict(kaldiio.load_scp(str(tmp_path / "spk_xvector.scp")).items())
    np.testing.assert_allclose(spk["A"], (x[0] + x[2]) / 2, rtol=1e-6)
    assert "1 of 4 vectors have no speaker in utt2spk" in caplog.text


def test_extract_style_speaker_means_read_by_kaldiio(tmp_path: Path):
    """write_embeddings(utt2spk=...) (what pyspeaker extract writes): spk_xvector in Kaldi's binary form."""
    ids, x = vectors(n=6)
    utt2spk = {u: u.split("-")[0] for u in ids}
    out = tmp_path / "emb"
    write_embeddings(out, ids, x, utt2spk=utt2spk)
    spk = dict(kaldiio.load_scp(str(out / "spk_xvector.scp")).items())
    assert list(spk) == ["spk0", "spk1", "spk2"]
    for s, v in spk.items():
        np.testing.assert_allclose(v, x[[i for i, u in enumerate(ids) if utt2spk[u] == s]].mean(axis=0), rtol=1e-5)
    assert (out / "spk_xvector.ark").read_bytes() == b"".join(_kaldi_float_vector(s, v) for s, v in spk.items())
    assert read_num_utts(out / "num_utts.ark") == {"spk0": 2, "spk1": 2, "spk2": 2}


# ------------------------------------------------------------------------------ features


def speech_16k(tmp_path: Path, names=("3_theo_7", "5_jackson_2", "8_nicolas_11")) -> list[Path]:
    """Real recordings (FSDD, 8 kHz) upsampled to 16 kHz 16-bit WAV; synthetic audio without FSDD."""
    from scipy.signal import resample_poly

    out = []
    rng = np.random.default_rng(1)
    for i, name in enumerate(names):
        src = FSDD / f"{name}.wav"
        if src.is_file():
            x, rate = sf.read(str(src), dtype="float64")
            x = resample_poly(np.tile(x, 2), 2, 1)  # 16 kHz, twice as long (room for segments)
        else:
            t = np.arange(16000 + 4000 * i) / 16000
            x = 0.3 * np.sin(2 * np.pi * (120 + 50 * i) * t * (1 + 0.1 * t)) + 0.01 * rng.normal(size=t.size)
        p = tmp_path / "wav" / f"rec{i}.wav"
        p.parent.mkdir(exist_ok=True)
        sf.write(str(p), np.clip(x, -1, 1), 16000, subtype="PCM_16")
        out.append(p)
    return out


def make_store(tmp_path: Path, data: Path, *extra: str) -> Path:
    proc = run_cli("make-features", "--data-dir", data, "--conf", FBANK, "--features-root", tmp_path / "features",
                   "--no-progress", *extra)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def test_make_features_ark_compressed_read_by_kaldiio(tmp_path: Path):
    wavs = speech_16k(tmp_path)
    data = tmp_path / "data" / "set"
    data.mkdir(parents=True)
    (data / "wav.scp").write_text("".join(f"u{i} {p}\n" for i, p in enumerate(wavs)))
    (data / "utt2spk").write_text("".join(f"u{i} u{i}\n" for i in range(len(wavs))))
    store = make_store(tmp_path, data, "--format", "ark", "--compress")
    feats = FeatureStore(store / "feats.h5")
    ark = dict(kaldiio.load_scp(str(store / "feats.scp")).items())
    assert sorted(ark) == feats.ids == ["u0", "u1", "u2"]
    raw = (store / "feats.ark").read_bytes()
    assert raw.startswith(b"u0 \0BCM ")  # Kaldi's kSpeechFeature compression (copy-feats --compress)
    for utt in feats.ids:
        exact = feats[utt]
        assert ark[utt].shape == exact.shape and ark[utt].dtype == np.float32
        # 8-bit per-column quantiles: the error is a small fraction of each column's range
        span = exact.max(axis=0) - exact.min(axis=0)
        assert np.all(np.abs(ark[utt] - exact) <= span / 100 + 1e-3)


def test_kaldiio_feats_read_by_pyspeaker_training_input(tmp_path: Path):
    """feats.scp as Kaldi's make_fbank.sh leaves it (plain and compressed), read by the training input."""
    data_mod = pytest.importorskip("pyspeaker.training.data")
    if not hasattr(data_mod, "open_features"):
        pytest.skip("pyspeaker.training.data.open_features (feats.scp training input) is not there yet")
    rng = np.random.default_rng(0)
    mats = {f"spk{s}-u{u}": (rng.normal(size=(50 + 7 * u, 20)) * 3 + 10).astype(np.float32)
            for s in range(2) for u in range(3)}
    for method in (None, 2, 3, 5):
        d = tmp_path / f"m{method}"
        d.mkdir()
        with kaldiio.WriteHelper(f"ark,scp:{d / 'raw_fbank.1.ark'},{d / 'feats.scp'}", compression_method=method) as w:
            for key, mat in mats.items():
                w(key, mat)
        (d / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in mats))
        store = data_mod.open_features(d)
        assert list(store.ids) == sorted(mats) and store.dim == 20
        for i, utt in enumerate(store.ids):
            decoded = kaldiio.load_mat((d / "feats.scp").read_text().splitlines()[i].split(" ", 1)[1])
            np.testing.assert_array_equal(store.read(i), decoded)  # what Kaldi's readers give
            tol = 0 if method is None else 0.05 * float(np.ptp(mats[utt]))
            np.testing.assert_allclose(store.read(i), mats[utt], atol=tol, rtol=0)


def _pipe_entries(wavs: list[Path]) -> list[str]:
    """wav.scp values that decode through pipes: cat, python -c, and sox when it is installed."""
    py = f"{shlex.quote(sys.executable)} -c 'import sys; sys.stdout.buffer.write(open(sys.argv[1], \"rb\").read())'"
    entries = [f"cat {shlex.quote(str(wavs[0]))} |", f"{py} {shlex.quote(str(wavs[1]))} |"]
    if shutil.which("sox"):
        entries.append(f"sox {shlex.quote(str(wavs[2]))} -t wav - |")
    else:  # what `sox in.wav -t wav - |` does, done by soundfile in a python pipe
        entries.append(f"{shlex.quote(sys.executable)} -c 'import io, sys, soundfile as sf; x, r = sf.read(sys.argv[1], "
                       f"dtype=\"int16\"); b = io.BytesIO(); sf.write(b, x, r, format=\"WAV\", subtype=\"PCM_16\"); "
                       f"sys.stdout.buffer.write(b.getvalue())' {shlex.quote(str(wavs[2]))} |")
    return entries


def test_pipes_and_segments_through_make_features(tmp_path: Path):
    """A segment's features equal those of the same slice of the recording computed directly."""
    wavs = speech_16k(tmp_path)
    data = tmp_path / "data" / "segs"
    data.mkdir(parents=True)
    (data / "wav.scp").write_text("".join(f"rec{i} {e}\n" for i, e in enumerate(_pipe_entries(wavs))))
    durations = [sf.info(str(p)).duration for p in wavs]
    d0, d2 = durations[0], durations[2]
    segments = {  # utt -> (rec, start, end); end -1 = to the end (Kaldi); overlapping, odd sample offsets
        "spkA-rec0-0000": (0, 0.0, round(0.6 * d0, 4)), "spkA-rec0-0001": (0, round(0.3 * d0, 4), round(d0 - 0.01, 4)),
        "spkB-rec1-0000": (1, 0.0513, -1), "spkC-rec2-0000": (2, round(0.2 * d2, 4), round(0.8 * d2, 4)),
    }
    (data / "segments").write_text("".join(f"{u} rec{r} {s} {e}\n" for u, (r, s, e) in sorted(segments.items())))
    (data / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in sorted(segments)))
    assert run_cli("validate-data", data).returncode == 0
    store = FeatureStore(make_store(tmp_path, data) / "feats.h5")
    assert store.ids == sorted(segments)
    extract = FeatureExtractor(load_feature_config(str(FBANK)))
    for utt, (rec, start, end) in segments.items():
        x, rate = sf.read(str(wavs[rec]), dtype="float32")
        piece = x[int(start * rate):(len(x) if end == -1 else int(end * rate))]
        np.testing.assert_array_equal(store[utt], extract(piece, rate))
        assert store[utt].shape[0] == 1 + (len(piece) - 400) // 160


def test_ark_audio_entries_through_make_features(tmp_path: Path):
    """wav.scp entries ``file.ark:offset`` (Kaldi's wav-copy / kaldiio ark of audio)."""
    wavs = speech_16k(tmp_path)
    audio = {f"rec{i}": sf.read(str(p), dtype="int16") for i, p in enumerate(wavs)}
    ark_dir = tmp_path / "ark"
    ark_dir.mkdir()
    kaldiio.save_ark(str(ark_dir / "wav.ark"), {k: (rate, x) for k, (x, rate) in audio.items()},
                     scp=str(ark_dir / "wav.scp"))
    data = tmp_path / "data" / "arkwav"
    data.mkdir(parents=True)
    shutil.copy(ark_dir / "wav.scp", data / "wav.scp")
    (data / "utt2spk").write_text("".join(f"{k} {k}\n" for k in audio))
    store = FeatureStore(make_store(tmp_path, data) / "feats.h5")
    extract = FeatureExtractor(load_feature_config(str(FBANK)))
    for rec, (x, rate) in audio.items():
        np.testing.assert_array_equal(store[rec], extract(x.astype(np.float32) / 32768, rate))
