"""Model zoo: voxceleb_trainer parameter names/shapes, parameter counts, every model x pooling, errors."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from pyspeaker.errors import ConfigError
from pyspeaker.models import ZOO_NAMES, build_model, count_parameters
from pyspeaker.models.frontend import PreEmphasis, WaveformModel, normalize_input
from pyspeaker.models.pooling import POOLING_TYPES

from conftest import SHARED, TINY_MODELS

MANIFESTS = SHARED / "compat" / "voxceleb_trainer"
# manifest -> (model, encoder_type, n_mels, parameters of __S__ from the manifest README)
VT_CASES = {
    "ResNetSE34L_SAP_angleproto": ("ResNetSE34L", "SAP", 40, 1437078),
    "ResNetSE34L_ASP_angleproto": ("ResNetSE34L", "ASP", 40, 1502614),
    "ResNetSE34V2_SAP_softmaxproto": ("ResNetSE34V2", "SAP", 64, 6979916),
    "ResNetSE34V2_ASP_softmaxproto": ("ResNetSE34V2", "ASP", 64, 8028492),
    "VGGVox_SAP_angleproto": ("VGGVox", "SAP", 40, 4032448),
}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def manifest(name: str) -> dict[str, list[int]]:
    path = MANIFESTS / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"voxceleb_trainer manifests not found at {MANIFESTS} (../shared is not checked out)")
    return {k: s for k, s, _ in json.loads(path.read_text())}


@pytest.mark.parametrize("case", sorted(VT_CASES))
def test_voxceleb_trainer_models_have_the_manifest_keys_and_shapes(case):
    model, encoder, n_mels, params = VT_CASES[case]
    expected = {k[len("__S__."):]: s for k, s in manifest(case).items()
                if k.startswith("__S__.") and not k.startswith("__S__.torchfb.")}
    net = build_model(model, nOut=512, encoder_type=encoder, n_mels=n_mels)
    assert {k: list(v.shape) for k, v in net.state_dict().items()} == expected
    assert count_parameters(net) == params
    # with the waveform front-end, the torchfb buffers are the manifest's too
    wave = build_model(model, nOut=512, encoder_type=encoder, n_mels=n_mels, waveform=True)
    fb = {k: s for k, s in manifest(case).items() if k.startswith("__S__.torchfb.")}
    assert {f"__S__.{k}": list(v.shape) for k, v in wave.state_dict().items() if k.startswith("torchfb.")} == fb


@pytest.mark.parametrize("name, options, params512, params192", [
    ("ResNetSE34L", {"encoder_type": "SAP", "n_mels": 40}, 1437078, 1437078 - 320 * 129),
    ("ResNetSE34Half", {"encoder_type": "SAP", "n_mels": 40}, 5602988, 5602988 - 320 * 257),
    ("ResNetSE34V2", {"encoder_type": "ASP", "n_mels": 64}, 8028492, 8028492 - 320 * 4097),
    ("VGGVox", {"encoder_type": "SAP", "n_mels": 40}, 4032448, 4032448 - 320 * 513),
    ("TDNN", {"n_mels": 40}, 4252564, 4252564 - 320 * 3001),
    ("TDNN", {"n_mels": 30}, 4226964, 4226964 - 320 * 3001),
    ("ECAPA-TDNN", {"n_mels": 80, "channels": 512}, 7175104, 6191104),
    ("ECAPA-TDNN", {"n_mels": 80, "channels": 1024}, 15641472, 14657472),
])
def test_parameter_counts(name, options, params512, params192):
    # ECAPA-TDNN: the paper gives 6.2 M (C=512) and 14.7 M (C=1024) parameters for nOut 192
    assert count_parameters(build_model(name, nOut=512, **options)) == params512
    assert count_parameters(build_model(name, nOut=192, **options)) == params192


@pytest.mark.parametrize("name", ZOO_NAMES)
@pytest.mark.parametrize("pooling", POOLING_TYPES)
def test_every_model_and_pooling_embeds_and_backpropagates(name, pooling):
    options, frames = TINY_MODELS[name]
    torch.manual_seed(0)
    model = build_model(name, nOut=16, encoder_type=pooling, **options)
    feats = torch.randn(3, frames, options["n_mels"])
    out = model(feats)
    assert out.shape == (3, 16) and torch.isfinite(out).all()
    out.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():  # eval mode: an utterance's embedding does not depend on the batch
        torch.testing.assert_close(model(feats[:1]), model(feats)[:1], atol=1e-5, rtol=1e-4)
    with torch.no_grad():  # a longer input is fine too
        assert model(torch.randn(1, frames + 17, options["n_mels"])).shape == (1, 16)


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_every_model_learns_on_a_fixed_batch(name):
    options, frames = TINY_MODELS[name]
    torch.manual_seed(0)
    model = build_model(name, nOut=8, **({"encoder_type": "SAP"} | options))
    head = torch.nn.Linear(8, 4)
    feats = torch.randn(8, frames, options["n_mels"])
    feats[4:, :, : options["n_mels"] // 2] += 1.0  # two "speakers" that differ in their spectra
    labels = torch.tensor([0, 1, 0, 1, 2, 3, 2, 3])
    opt = torch.optim.Adam(list(model.parameters()) + list(head.parameters()), lr=0.01)
    losses = []
    for _ in range(6):
        loss = F.cross_entropy(head(model(feats)), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_smaller_nout_gives_fewer_parameters():
    for name in ZOO_NAMES:
        options, _ = TINY_MODELS[name]
        assert count_parameters(build_model(name, nOut=32, **options)) < count_parameters(build_model(name, nOut=64, **options))


def test_unknown_names_and_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="unknown model 'ResNet99'; valid models: ResNetSE34L, ResNetSE34Half, "
                                          "ResNetSE34V2, VGGVox, TDNN, ECAPA-TDNN, ResNet18, ResNet34, ResNet221, "
                                          "ResNet293, ECAPA_TDNN_GLOB_c512, ECAPA_TDNN_GLOB_c1024, CAMPPlus, "
                                          "SpeechBrainECAPA, ResemblyzerLSTM"):
        build_model("ResNet99")
    assert type(build_model("ECAPA_TDNN", n_mels=24, channels=64)).__name__ == "ECAPA_TDNN"  # alias
    with pytest.raises(ConfigError, match="model ResNetSE34L: unknown encoder_type 'XAP'.*valid: SAP, ASP, TAP, MAX, STATS"):
        build_model("ResNetSE34L", encoder_type="XAP")
    with pytest.raises(ConfigError, match="VGGVox needs n_mels >= 39"):
        build_model("VGGVox", n_mels=20)
    with pytest.raises(ConfigError, match="unknown input_norm 'cmvn'; valid: instance, mean, none"):
        build_model("TDNN", input_norm="cmvn")
    with pytest.raises(ConfigError, match="channels .100. must be divisible by the Res2Net scale 8"):
        build_model("ECAPA-TDNN", channels=100)
    with pytest.raises(ConfigError, match="log_input applies to the waveform front-end only"):
        build_model("ResNetSE34L", log_input=True)
    with pytest.raises(ConfigError, match="model TDNN: .*unexpected keyword argument 'channels'"):
        build_model("TDNN", channels=3)
    with pytest.raises(ValueError, match="VGGVox needs crops of at least 63 frames, got 40"):
        build_model("VGGVox")(torch.randn(1, 40, 40))


def test_input_normalisation():
    x = torch.randn(2, 50, 7) * 3 + 5
    inst = normalize_input(x, "instance")
    assert inst.shape == (2, 7, 50)
    torch.testing.assert_close(inst.mean(dim=2), torch.zeros(2, 7), atol=1e-5, rtol=0)
    torch.testing.assert_close(inst.var(dim=2, unbiased=False), torch.ones(2, 7), atol=1e-3, rtol=0)
    torch.testing.assert_close(normalize_input(x, "mean").mean(dim=2), torch.zeros(2, 7), atol=1e-5, rtol=0)
    assert torch.equal(normalize_input(x, "none"), x.transpose(1, 2))
    # instance norm: the same as voxceleb_trainer's InstanceNorm1d over [batch, mels, frames]
    torch.testing.assert_close(inst, torch.nn.InstanceNorm1d(7)(x.transpose(1, 2)))


def test_tdnn_contexts_and_short_input():
    model = build_model("TDNN", n_mels=30).eval()
    layers = [getattr(model, f"tdnn{i}").conv for i in range(1, 6)]
    assert [(c.kernel_size[0], c.dilation[0]) for c in layers] == [(5, 1), (3, 2), (3, 3), (1, 1), (1, 1)]
    assert [c.out_channels for c in layers] == [512, 512, 512, 512, 1500]
    assert model.segment6.in_features == 3000 and model.segment6.out_features == 512
    with torch.no_grad():
        assert model(torch.randn(2, 15, 30)).shape == (2, 512)  # exactly its context
        assert model(torch.randn(2, 6, 30)).shape == (2, 512)   # shorter: edge frames repeated


def test_waveform_models_and_their_front_ends():
    torch.manual_seed(0)
    wav = torch.randn(2, 16240) * 0.1  # 100 frames
    for name, spec in [("ResNetSE34L", (False, "hamming", None)), ("ResNetSE34V2", (True, "hamming", None)),
                       ("VGGVox", (False, "hann", 8000.0))]:
        model = build_model(name, nOut=16, n_mels=40, waveform=True).eval()
        assert isinstance(model, WaveformModel) and model.log_input
        assert (model.spec.preemphasis, model.spec.window, model.spec.f_max) == spec
        feats = model.features(wav)
        assert feats.shape == (2, 102, 40)
        with torch.no_grad():
            assert model(wav).shape == (2, 16)
    hann = build_model("VGGVox", waveform=True).torchfb.spectrogram.window
    torch.testing.assert_close(hann, torch.hann_window(400))
    linear = build_model("ResNetSE34L", n_mels=40, waveform=True, log_input=False)
    torch.testing.assert_close(linear.features(wav).log(), build_model("ResNetSE34L", n_mels=40, waveform=True).features(wav))
    # pre-emphasis: y[0] = x[0] - 0.97 x[1], y[t] = x[t] - 0.97 x[t-1]
    x = torch.tensor([[1.0, 2.0, 4.0, 8.0]])
    torch.testing.assert_close(PreEmphasis()(x), torch.tensor([[1 - 0.97 * 2, 2 - 0.97, 4 - 1.94, 8 - 3.88]]))
