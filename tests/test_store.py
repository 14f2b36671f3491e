"""Feature store and embedding files: real HDF5 and Kaldi ark/scp, read back with h5py and kaldiio."""
from __future__ import annotations

import kaldiio
import numpy as np
import pytest

from pyspeaker.errors import DataError
from pyspeaker.fileio import atomic_dir
from pyspeaker.store import FeatureStore, FeatureStoreWriter, load_embeddings, merge_stores, write_embeddings, \
    write_kaldi_feats


def _write(path, utts):
    with FeatureStoreWriter(path, 3, {"feat_id": "x_1"}, block_frames=7) as w:
        for u, m in utts.items():
            w.add(u, m)


def test_store_roundtrip_crops_and_memory_mode(tmp_path):
    rng = np.random.default_rng(1)
    utts = {f"u{i}": rng.normal(size=(5 + i, 3)).astype(np.float32) for i in range(6)}
    _write(tmp_path / "feats.h5", utts)
    for in_memory in (False, True):
        s = FeatureStore(tmp_path, in_memory=in_memory)
        assert s.ids == sorted(utts) and s.dim == 3 and s.feat_id == "x_1"
        assert s.lengths.tolist() == [5, 6, 7, 8, 9, 10]
        for u, m in utts.items():
            np.testing.assert_array_equal(s[u], m)
        np.testing.assert_array_equal(s.read(3, 2, 4), utts["u3"][2:6])
    with pytest.raises(DataError, match="'nope' is not in the feature store"):
        s["nope"]


def test_store_refuses_unsorted_and_wrong_dim(tmp_path):
    with FeatureStoreWriter(tmp_path / "a.h5", 3) as w:
        w.add("b", np.zeros((2, 3)))
        with pytest.raises(ValueError, match="sorted order: a after b"):
            w.add("a", np.zeros((2, 3)))
        with pytest.raises(ValueError, match=r"expected \[frames, 3\]"):
            w.add("c", np.zeros((2, 4)))


def test_missing_store_error_names_path(tmp_path):
    with pytest.raises(DataError, match="missing feats.h5"):
        FeatureStore(tmp_path)


def test_merge_keeps_order(tmp_path):
    a = {"a1": np.ones((2, 3)), "a2": np.zeros((3, 3))}
    b = {"b1": np.full((4, 3), 2.0)}
    _write(tmp_path / "p1.h5", a)
    _write(tmp_path / "p2.h5", b)
    n, frames = merge_stores([tmp_path / "p1.h5", tmp_path / "p2.h5"], tmp_path / "all.h5")
    assert (n, frames) == (3, 9)
    s = FeatureStore(tmp_path / "all.h5")
    assert s.ids == ["a1", "a2", "b1"]
    np.testing.assert_array_equal(s["b1"], b["b1"])


@pytest.mark.parametrize("compress", [False, True])
def test_kaldi_feats_ark_scp_point_at_final_location(tmp_path, compress):
    rng = np.random.default_rng(2)
    utts = {f"u{i}": rng.normal(size=(20, 3)).astype(np.float32) for i in range(3)}
    _write(tmp_path / "feats.h5", utts)
    final = tmp_path / "store"
    with atomic_dir(final) as tmp:
        write_kaldi_feats(FeatureStore(tmp_path / "feats.h5"), tmp, final, compress=compress)
    scp = (final / "feats.scp").read_text().splitlines()
    assert len(scp) == 3 and all(str(final / "feats.ark") in line for line in scp)
    back = dict(kaldiio.load_scp(str(final / "feats.scp")).items())
    for u, m in utts.items():
        np.testing.assert_allclose(back[u], m, atol=0.05 if compress else 0)


def test_embeddings_h5_and_ark_agree_and_failed_write_keeps_old(tmp_path):
    ids = ["b", "a", "c"]
    emb = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = tmp_path / "emb"
    write_embeddings(out, ids, emb)
    h5_ids, h5_emb = load_embeddings(out)
    assert h5_ids == ["a", "b", "c"]
    np.testing.assert_array_equal(h5_emb, emb[[1, 0, 2]])
    scp = dict(kaldiio.load_scp(str(out / "xvector.scp")).items())
    np.testing.assert_array_equal(scp["c"], emb[2])
    scp_ids, scp_emb = load_embeddings(out / "xvector.scp")
    assert scp_ids == h5_ids
    np.testing.assert_array_equal(scp_emb, h5_emb)
    with pytest.raises(ValueError):
        write_embeddings(out, ["x"], emb)  # mismatched: nothing replaced
    assert load_embeddings(out)[0] == ["a", "b", "c"]
    assert [p.name for p in tmp_path.iterdir()] == ["emb"]


def test_speaker_means_written_as_kaldi_ivector_mean(tmp_path):
    ids = ["a1", "a2", "b1"]
    emb = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.float32)
    write_embeddings(tmp_path / "e", ids, emb, utt2spk={"a1": "a", "a2": "a", "b1": "b"})
    spk = dict(kaldiio.load_scp(str(tmp_path / "e" / "spk_xvector.scp")).items())
    np.testing.assert_array_equal(spk["a"], [2, 3])
    np.testing.assert_array_equal(spk["b"], [5, 6])
    assert (tmp_path / "e" / "num_utts.ark").read_text() == "a    2\nb    1\n"  # padded: kaldiio reads it
    assert dict(kaldiio.load_ark(str(tmp_path / "e" / "num_utts.ark"))) == {"a": 2, "b": 1}
    assert (tmp_path / "e" / "utt2spk").read_text() == "a1 a\na2 a\nb1 b\n"
    with pytest.raises(DataError, match="1 embeddings have no speaker in utt2spk .first: b1."):
        write_embeddings(tmp_path / "e2", ids, emb, utt2spk={"a1": "a", "a2": "a"})
