"""import-model --from speechbrain: SpeechBrain's ECAPA (spkrec-ecapa-voxceleb layout) as a pyspeaker model.

Parity is checked against SpeechBrain's own code (test-only dependency): its ECAPA_TDNN with seeded
random weights (BatchNorm statistics included) saved as embedding_model.ckpt, its Fbank and
InputNormalization, and its EncoderClassifier built from a hyperparams.yaml by HyperPyYAML, on
real speech (FSDD, resampled to 16 kHz).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli

from pyspeaker.compat.importing import build_imported, write_model_dir
from pyspeaker.compat.speechbrain import (
    SPKREC_ECAPA,
    import_speechbrain,
    options_from_hyperparams,
    read_hyperparams,
)
from pyspeaker.errors import ConfigError, DataError

FSDD = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "fsdd" / "recordings"
needs_fsdd = pytest.mark.skipif(not FSDD.is_dir(), reason="FSDD not available")
FILES = ("0_george_0.wav", "3_jackson_1.wav", "7_theo_2.wav")  # three speakers, 0.3 to 0.8 s

# spkrec-ecapa-voxceleb's hyperparams.yaml (its HuggingFace release), with the sizes as fields
SPKREC_YAML = """\
# ############################################################################
# Model: ECAPA big for Speaker verification
# ############################################################################

# Feature parameters
n_mels: 80

# Pretrain folder (HuggingFace)
pretrained_path: {pretrained_path}

# Output parameters
out_n_neurons: 10

# Model params
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>

mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False

embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: {channels}
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: {attention}
    lin_neurons: {lin}
{extra}
classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: {lin}
    out_neurons: !ref <out_n_neurons>

mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: {emb_std}

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        mean_var_norm_emb: !ref <mean_var_norm_emb>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt
        classifier: !ref <pretrained_path>/classifier.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""
SMALL = {"channels": "[64, 64, 64, 64, 192]", "attention": 32, "lin": 32, "extra": "    se_channels: 16\n"}
FULL = {"channels": "[1024, 1024, 1024, 1024, 3072]", "attention": 128, "lin": 192, "extra": ""}


def write_yaml(folder: Path, sizes: dict, emb_std: bool = False) -> Path:
    path = folder / "hyperparams.yaml"
    path.write_text(SPKREC_YAML.format(pretrained_path=folder, emb_std=emb_std, **sizes))
    return path


def speech() -> list[torch.Tensor]:
    import soundfile as sf
    import torchaudio.functional as AF

    out = []
    for name in FILES:
        x, rate = sf.read(FSDD / name, dtype="float32")
        assert rate == 8000
        out.append(AF.resample(torch.from_numpy(x), 8000, 16000))
    return out


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded random weights, BatchNorm affine and running statistics too, so no layer is the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(7)
            elif name.endswith("running_var") or (name.endswith("norm.weight") and t.ndim == 1):
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75)
            elif name.endswith("running_mean") or (name.endswith("norm.bias") and t.ndim == 1):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif t.is_floating_point():
                fan_in = t[0].numel() if t.ndim > 1 else t.numel()
                t.copy_(torch.randn(t.shape, generator=g) / fan_in ** 0.5)
    return module.eval()


def l2(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    return v / np.linalg.norm(v)


def pyspeaker_embeddings(model_dir: Path, wavs) -> list[np.ndarray]:
    import pyspeaker

    model = pyspeaker.load_model(model_dir, device="cpu")
    return [model.embed(w.numpy(), sample_rate=16000) for w in wavs]


def check_parity(ours: list[np.ndarray], theirs: list[np.ndarray], dim: int) -> float:
    worst = 0.0
    for a, b in zip(ours, theirs):
        assert a.shape == (dim,)
        worst = max(worst, float(np.abs(l2(a) - l2(b)).max()))
    assert worst < 1e-5, f"max abs difference of the L2-normalised embeddings: {worst}"
    # not a degenerate function: the three speakers' embeddings differ
    assert max(abs(float(l2(a) @ l2(b))) for i, a in enumerate(ours) for b in ours[i + 1:]) < 0.99
    return worst


@needs_fsdd
def test_spkrec_ecapa_full_size_matches_speechbrain(tmp_path):
    """The spkrec-ecapa-voxceleb network (1024 channels), no hyperparams.yaml: Fbank -> sentence mean
    norm -> ECAPA_TDNN(feats, lengths), as EncoderClassifier.encode_batch runs them."""
    pytest.importorskip("speechbrain", reason="SpeechBrain (test-only reference) is not installed")
    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    from speechbrain.processing.features import InputNormalization

    sb = randomize(ECAPA_TDNN(80, channels=[1024, 1024, 1024, 1024, 3072], kernel_sizes=[5, 3, 3, 3, 1],
                              dilations=[1, 2, 3, 4, 1], attention_channels=128, lin_neurons=192), seed=3)
    ckpt = tmp_path / "embedding_model.ckpt"
    torch.save(sb.state_dict(), ckpt)
    imp = import_speechbrain(ckpt)
    assert imp.model_options["name"] == "SpeechBrainECAPA" and imp.model_options["waveform"] is True
    assert imp.feat_config == {"waveform": True} and imp.dropped == {}
    net = build_imported(imp)
    n_source = sum(p.numel() for p in sb.parameters())
    assert n_source == sum(p.numel() for p in net.parameters()) == 20_767_552
    model_dir = write_model_dir(imp, tmp_path / "model")
    assert json.loads((model_dir / "source.json").read_text())["parameters"] == n_source

    wavs = speech()
    fbank, norm = Fbank(n_mels=80), InputNormalization(norm_type="sentence", std_norm=False)
    theirs = []
    with torch.no_grad():
        for w in wavs:
            lens = torch.ones(1)
            theirs.append(sb(norm(fbank(w[None]), lens), lens)[0, 0].numpy())
    worst = check_parity(pyspeaker_embeddings(model_dir, wavs), theirs, 192)
    print(f"speechbrain ECAPA c1024: max abs diff (L2-normalised) {worst:.3g}, {n_source} parameters")

    # the defaults assumed without a hyperparams.yaml are what spkrec-ecapa-voxceleb's file says
    opts, emb = options_from_hyperparams(read_hyperparams(write_yaml(tmp_path, FULL)))
    assert opts == SPKREC_ECAPA and emb == {"std_norm": False}


def small_source(folder: Path, emb_std: bool, seed: int = 5):
    """A small spkrec-layout folder made by SpeechBrain itself: hyperparams.yaml built by HyperPyYAML,
    random embedding_model.ckpt, mean_var_norm_emb.ckpt from its global InputNormalization."""
    from hyperpyyaml import load_hyperpyyaml

    folder.mkdir(parents=True, exist_ok=True)
    yaml_path = write_yaml(folder, SMALL, emb_std)
    with open(yaml_path) as f:
        hp = load_hyperpyyaml(f)
    randomize(hp["embedding_model"], seed)
    torch.save(hp["embedding_model"].state_dict(), folder / "embedding_model.ckpt")
    emb_norm = hp["mean_var_norm_emb"]
    g = torch.Generator().manual_seed(seed + 1)
    emb_norm.train()
    for _ in range(3):  # the running statistics, as training accumulates them
        emb_norm(torch.randn(16, 1, 32, generator=g) * 2 + torch.linspace(-3, 3, 32), torch.ones(16))
    emb_norm.eval()
    emb_norm._save(folder / "mean_var_norm_emb.ckpt")
    return hp


@needs_fsdd
@pytest.mark.parametrize("emb_std", [False, True])
def test_hyperparams_and_embedding_norm_match_encoder_classifier(tmp_path, emb_std):
    """A model folder with hyperparams.yaml (reduced sizes) against EncoderClassifier.encode_batch,
    without and with normalize=True (mean_var_norm_emb)."""
    pytest.importorskip("speechbrain", reason="SpeechBrain (test-only reference) is not installed")
    pytest.importorskip("hyperpyyaml", reason="HyperPyYAML (SpeechBrain's config loader) is not installed")
    from speechbrain.inference.classifiers import EncoderClassifier

    folder = tmp_path / "spkrec"
    hp = small_source(folder, emb_std)
    encoder = EncoderClassifier(modules=hp["modules"], hparams=hp, run_opts={"device": "cpu"})
    wavs = speech()
    with torch.no_grad():
        plain = [encoder.encode_batch(w[None])[0, 0].numpy() for w in wavs]
        normed = [encoder.encode_batch(w[None], normalize=True)[0, 0].numpy() for w in wavs]
    assert max(float(np.abs(l2(a) - l2(b)).max()) for a, b in zip(plain, normed)) > 1e-2  # the norm matters

    imp = import_speechbrain(folder)  # the folder: embedding_model.ckpt + hyperparams.yaml
    assert {k: imp.model_options[k] for k in ("channels", "attention_channels", "se_channels", "nOut", "n_mels")} \
        == {"channels": [64, 64, 64, 64, 192], "attention_channels": 32, "se_channels": 16, "nOut": 32, "n_mels": 80}
    assert imp.source_config["embedding_model"]["_tag"] == "!new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"
    n_source = sum(p.numel() for p in hp["embedding_model"].parameters())
    assert sum(p.numel() for p in build_imported(imp).parameters()) == n_source
    worst = check_parity(pyspeaker_embeddings(write_model_dir(imp, tmp_path / "plain"), wavs), plain, 32)

    imp_n = import_speechbrain(folder / "embedding_model.ckpt", folder / "hyperparams.yaml",
                               embedding_norm=folder / "mean_var_norm_emb.ckpt")
    assert imp_n.model_options["embedding_norm"] is True and imp_n.model_options["embedding_std_norm"] is emb_std
    assert "mean_var_norm_emb.count" in imp_n.dropped
    assert ("mean_var_norm_emb.glob_std" in imp_n.dropped) is (not emb_std)
    assert sum(p.numel() for p in build_imported(imp_n).parameters()) == n_source  # statistics are buffers
    worst_n = check_parity(pyspeaker_embeddings(write_model_dir(imp_n, tmp_path / "normed"), wavs), normed, 32)
    print(f"speechbrain ECAPA c64 (std_norm={emb_std}): max abs diff {worst:.3g}, with mean_var_norm_emb "
          f"{worst_n:.3g}, {n_source} parameters")


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
    pytest.importorskip("speechbrain", reason="SpeechBrain (test-only reference) is not installed")
    pytest.importorskip("hyperpyyaml", reason="HyperPyYAML (SpeechBrain's config loader) is not installed")
    folder = tmp_path_factory.mktemp("sb") / "spkrec"
    small_source(folder, emb_std=False)
    return folder


def test_wrong_shape_is_refused_naming_key_and_shapes(small_folder, tmp_path):
    state = torch.load(small_folder / "embedding_model.ckpt", weights_only=True)
    state["blocks.2.res2net_block.blocks.3.conv.conv.weight"] = torch.zeros(8, 8, 5)
    torch.save(state, tmp_path / "embedding_model.ckpt")
    with pytest.raises(DataError) as e:
        import_speechbrain(tmp_path / "embedding_model.ckpt", small_folder / "hyperparams.yaml")
    msg = str(e.value)
    assert "blocks.2.res2net_block.blocks.3.conv.conv.weight" in msg and "[8, 8, 5]" in msg and "[8, 8, 3]" in msg
    assert str(tmp_path / "embedding_model.ckpt") in msg


def test_unknown_and_missing_keys_are_refused(small_folder, tmp_path):
    state = torch.load(small_folder / "embedding_model.ckpt", weights_only=True)
    torch.save({**state, "asp.extra_head.weight": torch.zeros(3)}, tmp_path / "extra.ckpt")
    with pytest.raises(DataError, match=r"source key asp\.extra_head\.weight \(shape \[3\]\) has no place"):
        import_speechbrain(tmp_path / "extra.ckpt", small_folder / "hyperparams.yaml")
    del state["fc.conv.bias"]
    torch.save(state, tmp_path / "missing.ckpt")
    with pytest.raises(DataError, match=r"pyspeaker key fc\.conv\.bias \(shape \[32\]\) gets no source tensor"):
        import_speechbrain(tmp_path / "missing.ckpt", small_folder / "hyperparams.yaml")
    # the small network read as spkrec-ecapa-voxceleb (no hyperparams.yaml): refused, with the hint
    with pytest.raises(DataError, match="give its hyperparams.yaml"):
        import_speechbrain(small_folder / "embedding_model.ckpt")


def test_embedding_statistics_are_checked(small_folder, tmp_path):
    stats = torch.load(small_folder / "mean_var_norm_emb.ckpt", weights_only=True)
    assert set(stats) == {"count", "glob_mean", "glob_std"} and stats["glob_mean"].shape == (32,)
    # an old SpeechBrain's file (per-speaker dicts, mean as [1, 32]) is read; a wrong size is not
    torch.save({**stats, "glob_mean": stats["glob_mean"][None], "spk_dict_mean": {}, "spk_dict_std": {},
                "spk_dict_count": {}}, tmp_path / "old.ckpt")
    imp = import_speechbrain(small_folder, embedding_norm=tmp_path / "old.ckpt")
    assert torch.equal(imp.state["emb_norm.glob_mean"], stats["glob_mean"])
    assert {"mean_var_norm_emb.spk_dict_mean", "mean_var_norm_emb.count"} <= set(imp.dropped)
    torch.save({**stats, "glob_mean": torch.zeros(31)}, tmp_path / "bad.ckpt")
    with pytest.raises(DataError, match=r"glob_mean: shape \[31\], but the 32-dim embedding needs \[32\]"):
        import_speechbrain(small_folder, embedding_norm=tmp_path / "bad.ckpt")


def test_hyperparams_reader(tmp_path):
    path = tmp_path / "hyperparams.yaml"
    path.write_text("n: 40\nc: 256\nfeat: !new:speechbrain.lobes.features.Fbank\n    n_mels: !ref <n> * 2\n"
                    "norm: !new:speechbrain.processing.features.InputNormalization\n    norm_type: sentence\n"
                    "    std_norm: False\n"
                    "emb: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN\n    input_size: !ref <feat[n_mels]>\n"
                    "    channels: [!ref <c>, !ref <c>, !ref <c>, !ref <c>, 768]\n"
                    "    activation: !name:torch.nn.ReLU\n    lin_neurons: 64\n"
                    "modules:\n    compute_features: !ref <feat>\n    mean_var_norm: !ref <norm>\n"
                    "    embedding_model: !ref <emb>\n")
    hp = read_hyperparams(path)
    assert hp["feat"]["n_mels"] == 80 and hp["emb"]["input_size"] == 80
    opts, emb = options_from_hyperparams(hp, path)
    assert opts == {"n_mels": 80, "channels": [256, 256, 256, 256, 768], "nOut": 64} and emb == {}

    # what the pyspeaker model does not compute is refused, naming the setting
    path.write_text(path.read_text().replace("std_norm: False", "std_norm: True"))
    with pytest.raises(ConfigError, match="mean_var_norm must be norm_type: sentence with std_norm: false"):
        options_from_hyperparams(read_hyperparams(path), path)
    path.write_text(path.read_text().replace("std_norm: True", "std_norm: False")
                    .replace("torch.nn.ReLU", "torch.nn.LeakyReLU"))
    with pytest.raises(ConfigError, match="activation .*LeakyReLU.* is not supported"):
        options_from_hyperparams(read_hyperparams(path), path)
    path.write_text("a: !ref <b>\n")
    with pytest.raises(DataError, match=r"!ref <b> names nothing"):
        read_hyperparams(path)


def test_cli_import_model(small_folder, tmp_path):
    out = tmp_path / "model"
    run_cli("import-model", "--from", "speechbrain", "--checkpoint", small_folder / "embedding_model.ckpt",
            "--config", small_folder / "hyperparams.yaml", "--out", out, check=True)
    ckpt = torch.load(out / "final.pt", weights_only=True)
    expected = import_speechbrain(small_folder / "embedding_model.ckpt", small_folder / "hyperparams.yaml")
    assert ckpt["model_options"] == expected.model_options and ckpt["feat_config"] == {"waveform": True}
    assert all(torch.equal(ckpt["model"][k], v) for k, v in expected.state.items())
    source = json.loads((out / "source.json").read_text())
    assert source["toolkit"] == "speechbrain" and source["config"]["embedding_model"]["lin_neurons"] == 32

    state = torch.load(small_folder / "embedding_model.ckpt", weights_only=True)
    state["asp_bn.norm.running_mean"] = torch.zeros(385)
    torch.save(state, tmp_path / "bad.ckpt")
    r = run_cli("import-model", "--from", "speechbrain", "--checkpoint", tmp_path / "bad.ckpt",
                "--config", small_folder / "hyperparams.yaml", "--out", tmp_path / "bad")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "asp_bn.norm.running_mean: shape [385], but pyspeaker's asp_bn.norm.running_mean has [384]" in r.stderr
    assert not (tmp_path / "bad").exists()
