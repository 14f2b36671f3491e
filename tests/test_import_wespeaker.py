"""import-model --from wespeaker: WeSpeaker's own networks (the installed wheel's model files) and
pyspeaker's imported copies give the same embeddings of real speech (FSDD, 8 kHz resampled to 16 kHz).

WeSpeaker's side is its extraction pipeline: torchaudio's Kaldi fbank of ``wav * 2**15`` (80 bins,
25/10 ms, hamming, dither 0), minus the utterance mean, then its model in eval mode (last output).
pyspeaker's side is ``load_model(dir).embed(samples)`` on the directory ``write_model_dir`` wrote.
The weights are seeded random ones in WeSpeaker's checkpoint layout (a state dict plus a loss head
``projection.weight``), with BatchNorm running statistics taken from speech and then perturbed, so
that every tensor matters.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pyspeaker.compat.importing import build_imported, count_source_parameters, write_model_dir
from pyspeaker.compat.wespeaker import LOSS_REASON, import_wespeaker
from pyspeaker.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
FSDD = REPO.parent / "shared" / "corpora" / "fsdd" / "recordings"
FILES = ("0_george_0.wav", "3_jackson_12.wav", "7_theo_31.wav")
TOL = 2e-4  # end to end: two float32 Kaldi fbanks (ours, torchaudio's) round differently per CPU; 1.8e-4 seen on CAMPPlus


# ---------------------------------------------------------------------------- the reference code
@pytest.fixture(scope="module")
def ws():
    """WeSpeaker's model modules (resnet, ecapa_tdnn, campplus), imported without its package
    ``__init__`` (which pulls silero_vad, kaldiio ...): empty package modules with the right paths."""
    spec = importlib.util.find_spec("wespeaker")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the WeSpeaker wheel (wespeaker-unofficial) is not installed: no reference to compare with")
    root = Path(next(iter(spec.submodule_search_locations)))
    saved = {k: v for k, v in sys.modules.items() if k == "wespeaker" or k.startswith("wespeaker.")}
    if "wespeaker" not in sys.modules:
        for name, path in (("wespeaker", root), ("wespeaker.models", root / "models")):
            mod = types.ModuleType(name)
            mod.__path__ = [str(path)]
            sys.modules[name] = mod
    mods = types.SimpleNamespace(**{m: importlib.import_module(f"wespeaker.models.{m}")
                                    for m in ("resnet", "ecapa_tdnn", "campplus")})
    yield mods
    for k in [k for k in sys.modules if k == "wespeaker" or k.startswith("wespeaker.")]:
        del sys.modules[k]
    sys.modules.update(saved)


@pytest.fixture(scope="module")
def speech():
    """Three FSDD utterances at 16 kHz (float32 in [-1, 1])."""
    import soundfile as sf
    import torchaudio.functional as AF

    if not FSDD.is_dir():
        pytest.skip(f"{FSDD} is not there (the shared FSDD corpus)")
    out = []
    for name in FILES:
        x, rate = sf.read(FSDD / name, dtype="float32")
        assert rate == 8000
        out.append(AF.resample(torch.from_numpy(x), 8000, 16000).contiguous())
    return out


def wespeaker_fbank(wav: torch.Tensor, num_mel_bins: int = 80) -> torch.Tensor:
    """WeSpeaker's extraction features of one utterance [T, num_mel_bins] (fbank, then CMN)."""
    import torchaudio.compliance.kaldi as kaldi

    feat = kaldi.fbank(wav.unsqueeze(0) * (1 << 15), num_mel_bins=num_mel_bins, frame_length=25, frame_shift=10,
                       dither=0.0, sample_frequency=16000, window_type="hamming", use_energy=False)
    return feat - torch.mean(feat, dim=0)


def wespeaker_embed(model, wav: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        out = model(wespeaker_fbank(wav).unsqueeze(0))
    out = out[-1] if isinstance(out, tuple) else out
    return out[0].numpy()


def randomise(model: torch.nn.Module, feats: list[torch.Tensor], seed: int) -> None:
    """Seeded random BatchNorm affine weights, running statistics from one train-mode pass over
    ``feats`` (so activations stay in range), then perturbed: no tensor keeps its init value."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for bn in bns:
            if bn.affine:
                bn.weight.copy_(0.5 + torch.rand(bn.weight.shape, generator=g))
                bn.bias.copy_(0.2 * torch.randn(bn.bias.shape, generator=g))
            bn.momentum = None  # cumulative average: one pass gives that batch's statistics
        for p in model.parameters():  # biases that init at zero (CAM++) get values too
            if p.dim() == 1 and not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
        model.train()
        n = min(f.shape[0] for f in feats)
        model(torch.stack([f[:n] for f in feats]))
        model.eval()
        for bn in bns:
            bn.running_mean.add_(0.05 * torch.randn(bn.running_mean.shape, generator=g))
            bn.running_var.mul_(0.8 + 0.4 * torch.rand(bn.running_var.shape, generator=g))
            bn.momentum = 0.1


def save_wespeaker(model: torch.nn.Module, name: str, model_args: dict, d: Path, *, loss_classes: int = 7) -> Path:
    """WeSpeaker's model directory: ``avg_model.pt`` (state dict + the loss's projection) and config.yaml."""
    d.mkdir(parents=True, exist_ok=True)
    state = dict(model.state_dict())
    state["projection.weight"] = torch.randn(loss_classes, int(model_args["embed_dim"]))  # AAM-softmax head
    torch.save(state, d / "avg_model.pt")
    config = {"model": name, "model_args": model_args, "projection_args": {"project_type": "arc_margin"},
              "dataset_args": {"resample_rate": 16000, "fbank_args": {"num_mel_bins": 80, "frame_shift": 10,
                                                                    "frame_length": 25, "dither": 1.0}}}
    (d / "config.yaml").write_text(yaml.safe_dump(config))
    return d / "avg_model.pt"


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


PARITY = [  # (WeSpeaker module, model, model_args)
    ("resnet", "ResNet18", {"feat_dim": 80, "embed_dim": 128, "pooling_func": "TSTP", "two_emb_layer": True}),
    ("resnet", "ResNet34", {"feat_dim": 80, "embed_dim": 256, "pooling_func": "TSTP", "two_emb_layer": False}),
    ("ecapa_tdnn", "ECAPA_TDNN_GLOB_c512", {"feat_dim": 80, "embed_dim": 192, "pooling_func": "ASTP"}),
    ("ecapa_tdnn", "ECAPA_TDNN_GLOB_c1024", {"feat_dim": 80, "embed_dim": 192, "pooling_func": "ASTP",
                                              "emb_bn": True}),
    ("ecapa_tdnn", "ECAPA_TDNN_c512", {"feat_dim": 80, "embed_dim": 192}),  # no global context
    ("campplus", "CAMPPlus", {"feat_dim": 80, "embed_dim": 512}),
]


@pytest.mark.parametrize("module, name, model_args", PARITY, ids=[p[1] for p in PARITY])
def test_parity(ws, speech, tmp_path, module, name, model_args):
    import pyspeaker

    torch.manual_seed(0)
    ref = getattr(getattr(ws, module), name)(**model_args)
    randomise(ref, [wespeaker_fbank(w) for w in speech], seed=1)
    ckpt = save_wespeaker(ref, name, model_args, tmp_path / "ws")

    imp = import_wespeaker(ckpt, tmp_path / "ws" / "config.yaml")
    assert imp.dropped == {"projection.weight": LOSS_REASON}
    out = write_model_dir(imp, tmp_path / "model")
    model = pyspeaker.load_model(out, device="cpu")
    assert n_params(model.network) == n_params(ref)
    assert count_source_parameters(torch.load(ckpt), imp.dropped) == sum(
        v.numel() for v in model.network.state_dict().values() if torch.is_floating_point(v))

    def unit(e):
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    a = unit(np.stack([wespeaker_embed(ref, w) for w in speech]))
    b = unit(np.stack([model.embed(w.numpy(), sample_rate=16000) for w in speech]))
    diff = float(np.abs(a - b).max())
    # the networks alone, on the very same features: only float summation order differs
    with torch.no_grad():
        c = unit(np.stack([model.network(wespeaker_fbank(w).unsqueeze(0))[0].numpy() for w in speech]))
    net_diff = float(np.abs(a - c).max())
    print(f"{name}: max |diff| of L2-normalised embeddings {diff:.2e} end to end, {net_diff:.2e} network only; "
          f"{n_params(ref)} parameters")
    assert diff < TOL
    assert net_diff < 1e-5
    # the check means something: different utterances give clearly different embeddings
    assert float(a[0] @ a[1]) < 0.99 and float(a[0] @ a[2]) < 0.99


@pytest.mark.parametrize("name", ["ResNet221", "ResNet293"])
def test_deep_resnets_map(ws, tmp_path, name):
    """The big ResNets: every WeSpeaker tensor maps, the parameter counts agree, and one short
    input gives the same embedding (random weights at init: only the mapping is under test)."""
    args = {"feat_dim": 80, "embed_dim": 256, "pooling_func": "TSTP", "two_emb_layer": False}
    torch.manual_seed(0)
    ref = getattr(ws.resnet, name)(**args).eval()
    ckpt = save_wespeaker(ref, name, args, tmp_path / "ws")
    imp = import_wespeaker(ckpt)  # config.yaml found beside the checkpoint
    net = build_imported(imp)
    assert n_params(net) == n_params(ref)
    assert {"ResNet221": 23792224, "ResNet293": 28626016}[name] == n_params(net)
    x = torch.randn(1, 40, 80)
    with torch.no_grad():
        assert torch.allclose(net(x), ref(x)[-1], atol=1e-5, rtol=1e-4)


def test_front_end_is_wespeakers(speech, tmp_path):
    """The imported feat_config, through pyspeaker's own Kaldi fbank, gives WeSpeaker's input."""
    from pyspeaker.features import FeatureConfig, FeatureExtractor
    from pyspeaker.models.wespeaker_resnet import ResNet18

    ckpt = save_wespeaker(ResNet18(feat_dim=80, embed_dim=32), "ResNet18", {"feat_dim": 80, "embed_dim": 32},
                          tmp_path)
    imp = import_wespeaker(ckpt, tmp_path / "config.yaml")
    cfg = FeatureConfig.from_dict(imp.feat_config)
    assert (cfg.kind, cfg.num_mel_bins, cfg.window_type, cfg.dither, cfg.cmn) == ("fbank", 80, "hamming", 0.0,
                                                                                 "utterance")
    extract = FeatureExtractor(cfg)
    worst = 0.0
    for w in speech:
        ours = extract(w.numpy(), 16000)
        ref = wespeaker_fbank(w).numpy()
        assert ours.shape == ref.shape
        worst = max(worst, float(np.abs(ours - ref).max()))
    print(f"fbank + CMN: max |pyspeaker - torchaudio| {worst:.2e}")
    assert worst < 5e-4  # float32 FFT rounding in the near-empty 4-8 kHz bins of upsampled 8 kHz audio


# ---------------------------------------------------------------------------- strictness (no wheel needed)
@pytest.fixture
def small_ckpt(tmp_path):
    """A ResNet18 checkpoint in WeSpeaker's layout (pyspeaker's copy has WeSpeaker's keys)."""
    from pyspeaker.models.wespeaker_resnet import ResNet18

    torch.manual_seed(0)
    args = {"feat_dim": 80, "embed_dim": 64, "pooling_func": "TSTP", "two_emb_layer": False}
    return save_wespeaker(ResNet18(**args), "ResNet18", args, tmp_path / "ws")


def _rewrite(ckpt: Path, edit) -> Path:
    state = torch.load(ckpt)
    state = edit(state) or state
    torch.save(state, ckpt)
    return ckpt


def test_wrong_shape_names_key_and_shapes(small_ckpt):
    def edit(s):
        s["layer3.0.conv1.weight"] = torch.zeros(128, 64, 3, 2)
    with pytest.raises(DataError) as e:
        import_wespeaker(_rewrite(small_ckpt, edit))
    msg = str(e.value)
    assert "layer3.0.conv1.weight" in msg and "[128, 64, 3, 2]" in msg and "[128, 64, 3, 3]" in msg
    assert str(small_ckpt) in msg


def test_unknown_key_is_named(small_ckpt):
    def edit(s):
        s["layer5.0.conv1.weight"] = torch.zeros(3)
    with pytest.raises(DataError, match=r"layer5\.0\.conv1\.weight \(shape \[3\]\)"):
        import_wespeaker(_rewrite(small_ckpt, edit))


def test_missing_key_is_named(small_ckpt):
    def edit(s):
        del s["seg_1.bias"]
    with pytest.raises(DataError, match=r"seg_1\.bias \(shape \[64\]\) gets no source tensor"):
        import_wespeaker(_rewrite(small_ckpt, edit))


def test_dataparallel_and_wrapped_layouts(small_ckpt):
    plain = import_wespeaker(small_ckpt)
    _rewrite(small_ckpt, lambda s: {"state_dict": {"module." + k: v for k, v in s.items()}})
    wrapped = import_wespeaker(small_ckpt)
    assert list(wrapped.dropped) == ["module.projection.weight"]
    assert wrapped.notes["stripped_prefix"] == "module."
    assert plain.state.keys() == wrapped.state.keys()
    assert all(torch.equal(plain.state[k], wrapped.state[k]) for k in plain.state)
    assert plain.model_options == {"name": "ResNet18", "feat_dim": 80, "embed_dim": 64, "pooling_func": "TSTP",
                                   "two_emb_layer": False, "n_mels": 80, "nOut": 64}


def test_config_needed_and_checked(small_ckpt, tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    bare = alone / "avg_model.pt"
    bare.write_bytes(small_ckpt.read_bytes())
    with pytest.raises(ConfigError, match="pass --config config.yaml"):
        import_wespeaker(bare)
    cfg_path = small_ckpt.parent / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())

    def check(change, match, **kw):
        c = yaml.safe_load(yaml.safe_dump(cfg))
        change(c)
        cfg_path.write_text(yaml.safe_dump(c))
        with pytest.raises(ConfigError, match=match):
            import_wespeaker(small_ckpt, cfg_path, **kw)

    check(lambda c: c.update(model="ERes2Net34"), "ERes2Net34.*cannot be imported")
    check(lambda c: c["model_args"].update(m_channels=64), "m_channels are not arguments")
    check(lambda c: c["dataset_args"]["fbank_args"].update(num_mel_bins=64), "num_mel_bins 64 differs")
    check(lambda c: c["dataset_args"].update(frontend="s3prl"), "only WeSpeaker's Kaldi fbank")
    check(lambda c: c["dataset_args"].update(cmvn_args={"norm_var": True}), "norm_var")
    check(lambda c: None, "differs from the config's model", model="ResNet34")
    # a wrong model name for the weights: the first mismatching tensor is named
    cfg_path.write_text(yaml.safe_dump(dict(cfg, model="ResNet34")))
    with pytest.raises(DataError, match="layer1.2"):
        import_wespeaker(small_ckpt, cfg_path)
