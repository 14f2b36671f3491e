"""On-disk stores: the HDF5 feature store (+ Kaldi feats.scp/ark) and embedding files."""
from pyspeaker.store.embeddings import load_embeddings, write_embeddings
from pyspeaker.store.features import FeatureStore, FeatureStoreWriter, merge_stores, write_kaldi_feats

__all__ = ["FeatureStore", "FeatureStoreWriter", "merge_stores", "write_kaldi_feats",
           "load_embeddings", "write_embeddings"]
