"""resolve_scorer: the natural scorer by default, reads checked against the model's outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ood_core
from ood_core.builtin.scorers import EnergyScore, MaxSoftmax
from ood_core.outputs import tap
from ood_core.resolve import ResolveError, model_outputs, resolve


class Embedder(nn.Module):
    def __init__(self, dim: int = 4) -> None:
        super().__init__()
        self.body = nn.Linear(6, 8)
        self.fc = nn.Linear(8, dim)

    def forward(self, x):
        return self.fc(torch.relu(self.body(x)))


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("resolve")
    x = torch.randn(2, 6)
    mchad = ood_core.create_loss("MCHADLoss", n_classes=3, n_dim=4)
    return {
        "mchad": ood_core.load(
            ood_core.save(root / "a.pt", Embedder(), loss=mchad, example_input=x)
        ),
        "plain": ood_core.load(ood_core.save(root / "b.pt", Embedder(3), example_input=x)),
        "oe": ood_core.load(
            ood_core.save(
                root / "c.pt", Embedder(3), loss=ood_core.create_loss("oe"), example_input=x
            )
        ),
        "tapped": ood_core.load(
            ood_core.save(root / "d.pt", tap(Embedder(3), features="body"), example_input=x)
        ),
    }


def test_default_is_the_losses_natural_scorer_with_its_state(ckpts):
    ckpt = ckpts["mchad"]
    got = resolve(ckpt)
    assert got.name == "mchad" and got.reads == "embedding"
    assert got.source == "from the trained loss 'mchad'"
    expected = ckpt.build_loss().scorer()
    z = torch.randn(5, 4)
    assert torch.allclose(got.scorer(z), expected(z))
    assert model_outputs(ckpt) == ("embedding",)


def test_a_logits_scorer_on_an_embedding_model_is_refused(ckpts):
    with pytest.raises(ResolveError, match="reads logits but the model outputs embedding"):
        ood_core.resolve_scorer(ckpts["mchad"], "energy")


def test_model_without_loss_needs_a_name_and_is_taken_as_a_classifier(ckpts):
    with pytest.raises(ResolveError, match="names no natural scorer"):
        ood_core.resolve_scorer(ckpts["plain"])
    assert isinstance(ood_core.resolve_scorer(ckpts["plain"], "msp"), MaxSoftmax)
    with pytest.raises(ResolveError, match="needs state learned by its loss \\('vos' or"):
        ood_core.resolve_scorer(ckpts["plain"], "weighted-energy")
    with pytest.raises(ResolveError, match="reads embedding but the model outputs logits"):
        ood_core.resolve_scorer(ckpts["plain"], "mchad")


def test_kwargs_create_the_scorer_by_name(ckpts):
    got = resolve(ckpts["oe"], "energy", temperature=2.0)
    assert isinstance(got.scorer, EnergyScore) and got.source == "created by name"
    assert got.kwargs == {"temperature": 2.0}
    assert resolve(ckpts["oe"]).name == "msp" and resolve(ckpts["oe"]).kwargs == {}


def test_dict_outputs_feed_the_scorers_that_read_them(ckpts):
    ckpt = ckpts["tapped"]
    assert set(model_outputs(ckpt)) == {"logits", "features"}
    assert resolve(ckpt, "objectosphere").reads == "features"
    with pytest.raises(
        ResolveError, match="reads embedding but the model outputs logits, features"
    ):
        resolve(ckpt, "deep-svdd")


def test_a_given_module_is_used_as_is_but_checked(ckpts):
    scorer = MaxSoftmax()
    got = resolve(ckpts["plain"], scorer)
    assert got.scorer is scorer and got.name == "msp"  # the registered name, not the class's
    with pytest.raises(ResolveError, match="model outputs embedding"):
        resolve(ckpts["mchad"], scorer)


@pytest.mark.parametrize("name", ["odin", "mc-dropout", "gradnorm"])
def test_a_scorer_that_runs_the_model_is_refused_naming_alternatives(ckpts, name):
    """Rule 7: exportable=False is refused, by name and as a module; the one-line message says
    why and lists only exportable scorers the model's outputs feed."""
    info = ood_core.get_info("scorer", name)
    pytest.importorskip(info.target.split(".")[0])
    assert not info.exportable and info.reads == "inputs"
    with pytest.raises(ResolveError) as by_name:
        resolve(ckpts["mchad"], name)
    line = str(by_name.value)
    assert "\n" not in line and f"scorer {name!r} cannot be exported" in line
    assert "PyTorch only" in line and "the model outputs embedding" in line
    alternatives = line.rsplit(": ", 1)[1].split(", ")
    assert "mchad" in alternatives  # its loss's state is in this checkpoint
    for alt in alternatives:
        alt_info = ood_core.get_info("scorer", alt)
        assert alt_info.exportable and alt_info.reads == "embedding", alt
    module = ood_core.create_scorer(name, model=Embedder(3))
    with pytest.raises(ResolveError, match="cannot be exported"):
        resolve(ckpts["plain"], module)
    with pytest.raises(ResolveError, match=r"for the model outputs logits: .*msp") as plain:
        resolve(ckpts["plain"], name)
    assert "mchad" not in str(plain.value)  # needs MCHAD's loss state, which this one lacks
