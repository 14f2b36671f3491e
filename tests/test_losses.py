"""Losses: matrix shapes, voxceleb_trainer key layout, learning on a fixed batch, batch-layout checks."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pyspeaker.errors import ConfigError
from pyspeaker.losses import LOSS_NAMES, build_loss, check_batch_layout, loss_class
from pyspeaker.training.config import load_config

NOUT, CLASSES = 8, 5


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_registry_names_and_errors():
    assert set(LOSS_NAMES) == {"softmax", "amsoftmax", "aamsoftmax", "angleproto", "proto", "ge2e", "triplet",
                               "softmaxproto"}
    with pytest.raises(ConfigError, match=r"unknown loss 'arcface'; valid losses: aamsoftmax, amsoftmax, angleproto"):
        build_loss("arcface", NOUT, CLASSES)
    with pytest.raises(ConfigError, match=r"loss triplet has no option 'scale'; its options: margin, hard_rank, hard_prob"):
        build_loss("triplet", NOUT, CLASSES, scale=3)
    with pytest.raises(ConfigError, match=r"loss amsoftmax: scale must be > 0"):
        build_loss("amsoftmax", NOUT, CLASSES, scale=0)


def test_voxceleb_trainer_key_names_and_shapes():
    # ../shared/compat/voxceleb_trainer/README.md, "Loss keys" (without the __L__. prefix)
    expect = {
        "softmax": {"fc.weight": (CLASSES, NOUT), "fc.bias": (CLASSES,)},
        "amsoftmax": {"W": (NOUT, CLASSES)},
        "aamsoftmax": {"weight": (CLASSES, NOUT)},
        "angleproto": {"w": (), "b": ()},
        "ge2e": {"w": (), "b": ()},
        "proto": {},
        "triplet": {},
        "softmaxproto": {"softmax.fc.weight": (CLASSES, NOUT), "softmax.fc.bias": (CLASSES,),
                         "angleproto.w": (), "angleproto.b": ()},
    }
    for name, keys in expect.items():
        state = build_loss(name, NOUT, CLASSES).state_dict()
        assert {k: tuple(v.shape) for k, v in state.items()} == keys, name


def test_declared_batch_layouts():
    need = {name: loss_class(name).utts_per_speaker for name in LOSS_NAMES}
    assert need == {"softmax": 1, "amsoftmax": 1, "aamsoftmax": 1, "angleproto": 2, "proto": 2, "ge2e": 2,
                    "triplet": 2, "softmaxproto": 2}
    assert [n for n in LOSS_NAMES if loss_class(n).has_margin] == ["amsoftmax", "aamsoftmax"]
    assert not loss_class("proto").test_normalize and loss_class("triplet").test_normalize


def test_similarity_matrices_are_batch_by_batch():
    torch.manual_seed(0)
    b, n = 6, 3
    x = torch.randn(b, n, NOUT)
    assert build_loss("angleproto", NOUT, CLASSES).similarity(x).shape == (b, b)
    assert build_loss("proto", NOUT, CLASSES).similarity(x).shape == (b, b)   # voxceleb_trainer: [b, dim]
    assert build_loss("ge2e", NOUT, CLASSES).similarity(x).shape == (b, n, b)
    assert build_loss("triplet", NOUT, CLASSES).distances(x).shape == (b, b)  # voxceleb_trainer: [b, dim]
    assert build_loss("amsoftmax", NOUT, CLASSES).cosine(x.reshape(-1, NOUT)).shape == (b * n, CLASSES)
    assert build_loss("aamsoftmax", NOUT, CLASSES).cosine(x.reshape(-1, NOUT)).shape == (b * n, CLASSES)
    assert build_loss("softmax", NOUT, CLASSES).logits(x.reshape(-1, NOUT)).shape == (b * n, CLASSES)
    # and the numbers are what they claim to be
    proto = build_loss("proto", NOUT, CLASSES).similarity(x)
    assert torch.allclose(proto[1, 4], -((x[1, 0] - x[4, 1:].mean(0)) ** 2).sum(), atol=1e-5)
    ge2e = build_loss("ge2e", NOUT, CLASSES)
    sim = (ge2e.similarity(x) - ge2e.b) / ge2e.w
    assert torch.allclose(sim[2, 1, 4], F.cosine_similarity(x[2, 1], x[4].mean(0), dim=0), atol=1e-5)
    own = torch.stack([x[2, 0], x[2, 2]]).mean(0)  # own centroid without the utterance itself
    assert torch.allclose(sim[2, 1, 2], F.cosine_similarity(x[2, 1], own, dim=0), atol=1e-5)
    dist = build_loss("triplet", NOUT, CLASSES).distances(x[:, :2])
    assert torch.allclose(dist[0, 3], ((F.normalize(x[0, 0], dim=0) - F.normalize(x[3, 1], dim=0)) ** 2).sum(),
                          atol=1e-5)


def test_margins_match_their_definitions():
    torch.manual_seed(0)
    x, labels = torch.randn(4, 1, NOUT), torch.tensor([0, 1, 2, 3])
    am = build_loss("amsoftmax", NOUT, CLASSES, margin=0.3, scale=30)
    cos = am.cosine(x[:, 0])
    loss, _ = am(x, labels)
    want = F.cross_entropy(30 * (cos - 0.3 * F.one_hot(labels, CLASSES)), labels)
    assert torch.allclose(loss, want, atol=1e-5)
    aam = build_loss("aamsoftmax", NOUT, CLASSES, margin=0.2, scale=30)
    cos = aam.cosine(x[:, 0])
    theta = torch.acos(cos.clamp(-1, 1))
    target = torch.where(cos > math.cos(math.pi - 0.2), torch.cos(theta + 0.2), cos - math.sin(math.pi - 0.2) * 0.2)
    logits = torch.where(F.one_hot(labels, CLASSES).bool(), target, cos) * 30
    assert torch.allclose(aam(x, labels)[0], F.cross_entropy(logits, labels), atol=1e-4)
    easy = build_loss("aamsoftmax", NOUT, CLASSES, margin=0.2, easy_margin=True)
    easy.weight.data.copy_(aam.weight.data)
    logits = torch.where(F.one_hot(labels, CLASSES).bool() & (cos > 0), torch.cos(theta + 0.2), cos) * 30
    assert torch.allclose(easy(x, labels)[0], F.cross_entropy(logits, labels), atol=1e-4)
    aam.set_margin(0.0)  # margin warm-up start: plain normalised softmax
    assert torch.allclose(aam(x, labels)[0], F.cross_entropy(30 * cos, labels), atol=1e-4)
    assert aam.margin == 0.2


def test_classification_losses_label_every_utterance_of_a_group():
    torch.manual_seed(0)
    x, labels = torch.randn(3, 2, NOUT), torch.tensor([4, 0, 2])
    sm = build_loss("softmax", NOUT, CLASSES)
    loss, _ = sm(x, labels)
    assert torch.allclose(loss, F.cross_entropy(sm.fc(x.reshape(6, NOUT)), torch.tensor([4, 4, 0, 0, 2, 2])))


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("n_per", [2, 3])
def test_every_loss_learns_on_a_fixed_batch(name, n_per):
    """A small embedding network + the loss: the loss goes down on one fixed batch."""
    torch.manual_seed(0)
    b, dim = 6, 12
    centres = torch.randn(b, dim) * 0.5
    inputs = centres[:, None, :] + 0.8 * torch.randn(b, n_per, dim)
    labels = torch.tensor([3, 0, 5, 1, 4, 2])
    net = torch.nn.Sequential(torch.nn.Linear(dim, 32), torch.nn.ReLU(), torch.nn.Linear(32, NOUT))
    loss_fn = build_loss(name, NOUT, 6)
    opt = torch.optim.Adam(list(net.parameters()) + list(loss_fn.parameters()), lr=0.01)
    losses = []
    for _ in range(15):
        torch.manual_seed(1)  # the same negatives every step (triplet) for a fair comparison
        loss, acc = loss_fn(net(inputs.reshape(-1, dim)).reshape(b, n_per, NOUT), labels)
        assert loss.dim() == 0 and torch.is_tensor(acc) and 0 <= float(acc) <= 100
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], (name, losses)


def test_triplet_mining_never_picks_the_positive_and_respects_hard_rank():
    torch.manual_seed(0)
    dist = torch.rand(7, 7)
    hardest = build_loss("triplet", NOUT, CLASSES, hard_rank=0, hard_prob=1.0)
    for _ in range(5):
        neg = hardest.mine_negatives(dist)
        assert (neg != torch.arange(7)).all()
        masked = dist + torch.diag(torch.full((7,), float("inf")))
        assert torch.equal(neg, masked.argmin(dim=1))
    rand = build_loss("triplet", NOUT, CLASSES, hard_rank=0, hard_prob=0.0)
    picks = torch.stack([rand.mine_negatives(dist) for _ in range(50)])
    assert (picks != torch.arange(7)).all() and len(torch.unique(picks[:, 0])) > 2
    semi = build_loss("triplet", NOUT, CLASSES, hard_rank=-1, margin=0.5)
    assert (semi.mine_negatives(dist) != torch.arange(7)).all()
    with pytest.raises(ValueError, match="at least 2 speakers"):
        hardest.mine_negatives(torch.zeros(1, 1))


def test_triplet_batch_layout_is_checked_when_the_config_loads():
    # voxceleb_trainer: a bare AssertionError (1 utterance per speaker) or an IndexError (2)
    with pytest.raises(ConfigError) as e:
        load_config(None, ["loss.name=triplet", "data.nPerSpeaker=1"])
    assert str(e.value) == ("--set loss.name=triplet data.nPerSpeaker=1: "  # the values to blame, not a file
                            "loss triplet needs data.nPerSpeaker >= 2 (got 1): set --set data.nPerSpeaker=2")
    assert load_config(None, ["loss.name=triplet"])["data"]["nPerSpeaker"] == 2  # satisfied automatically
    assert load_config(None, ["loss.name=softmaxproto", "data.nPerSpeaker=3"])["data"]["nPerSpeaker"] == 3
    assert load_config(None, ["loss.name=amsoftmax"])["data"]["nPerSpeaker"] == 1
    check_batch_layout("ge2e", 4)
    for name in ("angleproto", "proto", "ge2e", "softmaxproto"):
        with pytest.raises(ConfigError, match=f"loss {name} needs data.nPerSpeaker >= 2"):
            check_batch_layout(name, 1)
    with pytest.raises(ConfigError, match="optim.margin_warmup_epochs applies to margin losses"):
        load_config(None, ["loss.name=angleproto", "optim.margin_warmup_epochs=2"])


def test_triplet_trains_end_to_end(speaker_store, tmp_path):
    """The voxceleb_trainer failure case: triplet with the default batch layout trains here."""
    from pyspeaker.training.trainer import train

    cfg = load_config(None, ["loss.name=triplet", "loss.margin=0.2", "train.max_epoch=3", "data.batch_size=4",
                             "data.crop_frames=30", "model.nOut=16", "optim.lr=0.005", "train.device=cpu"])
    assert cfg["data"]["nPerSpeaker"] == 2
    train(cfg, speaker_store, tmp_path / "exp", progress=False)
    rows = (tmp_path / "exp" / "metrics.tsv").read_text().splitlines()[1:]
    losses = [float(r.split("\t")[1]) for r in rows]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert "4 speakers x 2 utterances of 30 frames per step" in (tmp_path / "exp" / "train.log").read_text()
