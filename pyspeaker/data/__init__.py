"""Kaldi data directories, trial lists and VoxCeleb lists: read, write, validate, split."""
from pyspeaker.data.kaldi_dir import (
    DataDir,
    Problem,
    read_table,
    read_utt2spk,
    read_voxceleb_train_list,
    split_data_dir,
    validate_data_dir,
    write_data_dir,
)
from pyspeaker.data.trials import Trials, read_trials, write_trials

__all__ = [
    "DataDir",
    "Problem",
    "Trials",
    "read_table",
    "read_utt2spk",
    "read_trials",
    "read_voxceleb_train_list",
    "split_data_dir",
    "validate_data_dir",
    "write_data_dir",
    "write_trials",
]
