"""EnergyMarginLoss and SconeScorer: the paper's formulas, pytorch-ood 0.4.0 parity, divergences."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ood_plugin_scone import EnergyMarginLoss, SconeScorer
from torch import nn

import ood_core
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_losses
from ood_core.testing.toy import smoke_train, toy_data

README = Path(__file__).resolve().parents[1] / "README.md"
BUFFERS = (
    "full_train_loss",
    "eta",
    "false_alarm_cutoff",
    "in_constraint_weight",
    "lam",
    "lam2",
    "ce_tol",
    "ce_constraint_weight",
    "out_constraint_weight",
    "lr_lam",
    "penalty_mult",
    "constraint_tol",
)


def _reference(**kwargs):
    return pytorch_ood_losses().EnergyMarginLoss(**kwargs)


def _inputs(seed: int, batch: int, classes: int, ood: float = 0.4, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(batch, classes, generator=g, dtype=torch.float64) * 2).to(dtype)
    y = torch.randint(0, classes, (batch,), generator=g)
    outlier = torch.rand(batch, generator=g) < ood
    if 0.0 < ood < 1.0:
        outlier[0], outlier[-1] = False, True
    return logits, torch.where(outlier, torch.full_like(y, -1), y)


def _head(seed: int, weight: float | None = None, bias: float | None = None) -> nn.Linear:
    torch.manual_seed(seed)
    head = nn.Linear(1, 1)
    with torch.no_grad():
        if weight is not None:
            head.weight.fill_(weight)
        if bias is not None:
            head.bias.fill_(bias)
    return head


def _pair(state: dict[str, float], **kwargs):
    """Our loss and 0.4.0's with the same hyperparameters and multiplier state."""
    ours, ref = EnergyMarginLoss(**kwargs), _reference(**kwargs)
    with torch.no_grad():
        for name, value in state.items():
            getattr(ours, name).fill_(value)
            getattr(ref, name).fill_(value)
    return ours, ref


def _value_and_grads(loss, logits, y, head):
    x = logits.clone().requires_grad_(True)
    value = loss(x, y, head)
    grads = torch.autograd.grad(value, [x, head.weight, head.bias])
    return value, grads


def _paper_loss(logits, y, head, p: dict[str, float]) -> float:
    """The SCONE augmented Lagrangian written out sample by sample (float64, Python)."""
    w, b = head.weight.item(), head.bias.item()
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    ins, outs, ces = [], [], []
    for row, label in zip(logits.double(), y):
        e = math.log(sum(math.exp(float(v)) for v in row))
        if label >= 0:
            ins.append(sig(w * e + b))
            ces.append(e - float(row[label]))
        else:
            outs.append(sig(-(w * (e - p["eta"]) + b)))
    mean = lambda v: sum(v) / len(v) if v else 0.0  # noqa: E731

    def psi(c, lam, beta):
        return lam * c + beta / 2 * c * c if beta * c + lam >= 0 else -lam * lam / (2 * beta)

    return (
        psi(mean(ces) - p["ce_tol"] * p["full_train_loss"], p["lam2"], p["ce_constraint_weight"])
        + p["out_constraint_weight"] * mean(outs)
        + psi(mean(ins) - p["false_alarm_cutoff"], p["lam"], p["in_constraint_weight"])
    )


STATES = [
    {},
    {"lam": 0.8, "lam2": 0.3},
    {"lam": 2.0, "lam2": 5.0, "in_constraint_weight": 0.2, "ce_constraint_weight": 0.1},
    {"lam": 0.05, "lam2": 0.02, "in_constraint_weight": 3.0, "ce_constraint_weight": 2.25},
]
KWARGS = [
    {"full_train_loss": 0.5},
    {"full_train_loss": 2.0, "eta": 3.0, "false_alarm_cutoff": 0.4, "ce_tol": 0.5},
    {"full_train_loss": 0.1, "out_constraint_weight": 0.25, "eta": -1.0},
]


# ---------------------------------------------------------------------------------------------
# differential tests: on batches with ID and outlier samples, 0.4.0 follows the paper's code


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(8, 3), (17, 10), (2, 5)])
@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("kwargs", KWARGS)
def test_matches_pytorch_ood(seed, shape, state, kwargs):
    ours, ref = _pair(state, **kwargs)
    logits, y = _inputs(seed, *shape)
    head = _head(seed)
    v_ours, g_ours = _value_and_grads(ours, logits, y, head)
    v_ref, g_ref = _value_and_grads(ref, logits, y, head)
    torch.testing.assert_close(v_ours, v_ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("state", STATES)
def test_value_is_the_papers_augmented_lagrangian(seed, state):
    kwargs = KWARGS[1]
    ours, _ = _pair(state, **kwargs)
    logits, y = _inputs(seed, 12, 4, dtype=torch.float64)
    head = _head(seed).double()
    params = {name: float(getattr(ours, name)) for name in BUFFERS}
    assert float(ours(logits, y, head).detach()) == pytest.approx(
        _paper_loss(logits, y, head, params)
    )


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("kwargs", KWARGS)
def test_update_hyperparameters_matches_pytorch_ood(steps, kwargs):
    ours, ref = _pair({}, **kwargs)
    torch.manual_seed(0)
    model, head = nn.Linear(4, 3), _head(1, weight=-0.5, bias=0.3)
    loader = [(torch.randn(5, 4), torch.randint(0, 3, (5,))) for _ in range(3)]
    for _ in range(steps):
        with torch.no_grad():  # move the model between updates, as training would
            model.weight.add_(0.3 * torch.randn_like(model.weight))
        ours.update_hyperparameters(model, loader, head)
        ref.update_hyperparameters(model, loader, head)
        for name in BUFFERS:
            torch.testing.assert_close(
                getattr(ours, name), getattr(ref, name), rtol=1e-5, atol=1e-6, msg=name
            )


def test_step_multipliers_by_hand():
    loss = EnergyMarginLoss(
        full_train_loss=1.0, false_alarm_cutoff=0.1, ce_tol=2.0, lr_lam=0.5, penalty_mult=2.0
    )
    with torch.no_grad():
        loss.lam.fill_(0.2)
        loss.lam2.fill_(1.0)
    # c = 0.3 - 0.1 = 0.2 > 0: lam += 0.5 * 0.2, beta doubles
    # c2 = 0.5 - 2.0 = -1.5, beta2 * c2 + lam2 = -0.5 < 0: lam2 -= 0.5 * lam2 / beta2
    loss.step_multipliers(0.3, 0.5)
    assert float(loss.lam) == pytest.approx(0.3)
    assert float(loss.in_constraint_weight) == pytest.approx(2.0)
    assert float(loss.lam2) == pytest.approx(0.5)
    assert float(loss.ce_constraint_weight) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# divergences from 0.4.0, each checked against the paper's formula written out here


@pytest.mark.parametrize("ood", [0.0, 1.0])
@pytest.mark.parametrize("state", STATES[:3])
def test_one_sided_batches_give_the_formula_with_empty_means_zero(ood, state):
    ours, ref = _pair(state, **KWARGS[0])
    logits, y = _inputs(3, 9, 4, ood=ood, dtype=torch.float64)
    head = _head(3).double()
    with pytest.raises(ValueError, match="both ID and OOD"):
        ref(logits, y, head)
    x = logits.clone().requires_grad_(True)
    value = ours(x, y, head)
    params = {name: float(getattr(ours, name)) for name in BUFFERS}
    assert float(value.detach()) == pytest.approx(_paper_loss(logits, y, head, params))
    value.backward()
    assert torch.isfinite(x.grad).all()


def test_empty_batch_is_finite_with_graph():
    loss = EnergyMarginLoss(0.5)
    x = torch.zeros(0, 3, requires_grad=True)
    y = torch.zeros(0, dtype=torch.long)
    with pytest.raises(ValueError):
        _reference(full_train_loss=0.5)(x, y, nn.Linear(1, 1))
    value = loss(x, y)
    assert torch.isfinite(value) and value.requires_grad


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_any_float_dtype_with_a_float32_head(dtype):
    ours, ref = _pair({"lam": 0.5, "lam2": 0.1}, **KWARGS[0])
    logits, y = _inputs(5, 10, 4)
    logits = logits.to(dtype)
    head = _head(5)
    with pytest.raises(RuntimeError, match="dtype"):
        ref(logits, y, head)
    x = logits.clone().requires_grad_(True)
    value = ours(x, y, head)
    value.backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()
    params = {name: float(getattr(ours, name)) for name in BUFFERS}
    expected = _paper_loss(logits, y, head.double(), params)
    assert float(value.detach()) == pytest.approx(expected, rel=1e-5)


def test_own_head_without_the_argument():
    loss = EnergyMarginLoss(0.5)
    logits, y = _inputs(0, 8, 3)
    with pytest.raises(TypeError):  # 0.4.0 needs the head on every call
        _reference(full_train_loss=0.5)(logits, y)
    torch.testing.assert_close(loss(logits, y), loss(logits, y, loss.logistic_regression))
    value = loss(logits, y)
    value.backward()
    assert loss.logistic_regression.weight.grad is not None


def test_forward_compiles_without_python_branches():
    import torch._dynamo

    logits, y = _inputs(0, 8, 3)
    head = _head(0)
    torch._dynamo.reset()
    with pytest.raises(Exception):  # noqa: B017 - 0.4.0 branches on tensor values
        torch.compile(_reference(full_train_loss=0.5), fullgraph=True, backend="eager")(
            logits, y, head
        )
    torch._dynamo.reset()
    ours = EnergyMarginLoss(0.5)
    compiled = torch.compile(ours, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(logits, y, head), ours(logits, y, head))


def test_update_hyperparameters_restores_the_model_mode():
    model = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5)).train()
    loader = [(torch.randn(5, 4), torch.randint(0, 3, (5,)))]
    _reference(full_train_loss=0.5).update_hyperparameters(model, loader, nn.Linear(1, 1))
    assert not model.training  # 0.4.0 leaves the model in eval mode
    model.train()
    EnergyMarginLoss(0.5).update_hyperparameters(model, loader)
    assert model.training
    model.eval()
    EnergyMarginLoss(0.5).update_hyperparameters(model, loader)
    assert not model.training


def test_update_hyperparameters_ignores_outlier_targets():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    with_outliers = [(torch.cat([x, torch.randn(4, 4)]), torch.cat([y, torch.full((4,), -1)]))]
    a, b = EnergyMarginLoss(0.5), EnergyMarginLoss(0.5)
    b.load_state_dict(a.state_dict())
    ma = a.update_hyperparameters(model, [(x, y)])
    mb = b.update_hyperparameters(model, with_outliers)
    for key in ("false_alarm", "ce"):
        torch.testing.assert_close(ma[key], mb[key])
    torch.testing.assert_close(a.lam, b.lam)


# ---------------------------------------------------------------------------------------------
# state, construction, scorer, registration


def test_loads_a_pytorch_ood_state_dict():
    ref = _reference(full_train_loss=0.7, eta=2.5, penalty_mult=3.0)
    model = nn.Linear(4, 3)
    ref.update_hyperparameters(model, [(torch.randn(6, 4), torch.randint(0, 3, (6,)))], _head(0))
    ours = EnergyMarginLoss(full_train_loss=1.0)
    head_before = {k: v.clone() for k, v in ours.logistic_regression.state_dict().items()}
    result = ours.load_state_dict(ref.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for name in BUFFERS:
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name), msg=name)
    assert float(ours.lam) != 0.0 and float(ours.eta) == 2.5
    for key, value in ours.logistic_regression.state_dict().items():
        torch.testing.assert_close(value, head_before[key])
    assert set(ours.state_dict()) == set(ref.state_dict()) | {
        "logistic_regression.weight",
        "logistic_regression.bias",
    }


def test_state_dict_round_trip_keeps_the_head():
    a = EnergyMarginLoss(0.5)
    with torch.no_grad():
        a.logistic_regression.weight.fill_(-3.0)
        a.lam.fill_(0.25)
    b = EnergyMarginLoss(0.5)
    b.load_state_dict(a.state_dict())
    assert b.logistic_regression.weight.item() == -3.0 and float(b.lam) == 0.25


def test_constructor_matches_pytorch_ood():
    ours, ref = EnergyMarginLoss(0.4), _reference(full_train_loss=0.4)
    for name in BUFFERS:
        assert getattr(ours, name).dtype == torch.float32
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name), msg=name)


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"full_train_loss": -1.0}, "full_train_loss"),
        ({"full_train_loss": float("nan")}, "full_train_loss"),
        ({"full_train_loss": 1.0, "false_alarm_cutoff": 1.5}, "false_alarm_cutoff"),
        ({"full_train_loss": 1.0, "in_constraint_weight": 0.0}, "in_constraint_weight"),
        ({"full_train_loss": 1.0, "ce_constraint_weight": -1.0}, "ce_constraint_weight"),
        ({"full_train_loss": 1.0, "eta": "1"}, "eta"),
    ],
)
def test_bad_constructor_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=f"EnergyMarginLoss: argument '{arg}'"):
        EnergyMarginLoss(**kwargs)


def test_bad_forward_arguments_name_what_is_wrong():
    loss = EnergyMarginLoss(0.5)
    logits, y = _inputs(0, 4, 3)
    with pytest.raises(ValueError, match="EnergyMarginLoss: argument 'logits' must be"):
        loss(logits[:, :, None], y)
    with pytest.raises(ValueError, match="argument 'targets' must be a class index below 3"):
        loss(logits, torch.tensor([0, 3, -1, 1]))
    with pytest.raises(ValueError, match="argument 'logistic_regression' must be a torch.nn.Li"):
        loss(logits, y, nn.Linear(2, 1))
    with pytest.raises(ValueError, match="argument 'logistic_regression' must be a callable"):
        loss(logits, y, "phi")
    with pytest.raises(ValueError, match="argument 'logistic_regression' must be a callable ret"):
        loss(logits, y, lambda e: e.repeat(1, 2))


def test_any_head_module_works():
    loss = EnergyMarginLoss(0.5)
    logits, y = _inputs(0, 8, 3)
    head = nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1))
    value = loss(logits.double(), y, head)
    value.backward()
    assert head[0].weight.grad is not None
    scores = loss.scorer(head)(logits)
    assert scores.shape == (8,)


def test_scorer_is_the_head_on_the_energy_and_a_copy():
    loss = EnergyMarginLoss(0.5)
    with torch.no_grad():
        loss.logistic_regression.weight.fill_(-2.0)
        loss.logistic_regression.bias.fill_(0.5)
    scorer = loss.scorer()
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.1, 0.0, -0.1]])
    expected = -2.0 * torch.logsumexp(logits, 1) + 0.5
    torch.testing.assert_close(scorer(logits), expected)
    with torch.no_grad():
        loss.logistic_regression.weight.fill_(1.0)
    torch.testing.assert_close(scorer(logits), expected)
    assert not any(p.requires_grad for p in scorer.parameters())
    assert scorer.predict(logits).tolist() == [0, 0]


def test_default_scorer_is_the_energy_score():
    scorer = ood_core.create_scorer("scone")
    logits = torch.randn(5, 4)
    torch.testing.assert_close(scorer(logits), -torch.logsumexp(logits, 1))
    trained = EnergyMarginLoss(0.5).scorer()
    scorer.load_state_dict(trained.state_dict())
    torch.testing.assert_close(scorer(logits), trained(logits))
    with pytest.raises(ValueError, match="SconeScorer: argument 'logistic_regression'"):
        SconeScorer.from_head(lambda e: e)


def test_registration():
    info = ood_core.get_info("loss", "scone")
    assert ood_core.get_info("loss", "energy-margin") == info
    assert info.target == "ood_plugin_scone.loss:EnergyMarginLoss"
    assert info.scorer == "scone" and info.uses_ood and info.inputs == ("logits", "target")
    scorer = ood_core.get_info("scorer", "scone")
    assert scorer.needs_loss_state and not scorer.needs_fit and scorer.reads == "logits"


def test_package_import_is_light():
    code = "import sys, ood_plugin_scone; sys.exit(3 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


# ---------------------------------------------------------------------------------------------
# training and documentation


class _Logits(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["logits"]


def test_smoke_training_separates_outliers():
    data = toy_data(num_classes=4, seed=0)
    loader = [(data.x_train[i : i + 200], data.y_train[i : i + 200]) for i in range(0, 800, 200)]
    loss = EnergyMarginLoss(full_train_loss=0.1)
    updates = []

    def every_epoch(net, criterion, step):
        if step % 50 == 49:
            updates.append(criterion.update_hyperparameters(_Logits(net), loader))

    result = smoke_train(
        loss, inputs=("logits", "targets"), reads="logits", steps=300, after_step=every_epoch
    )
    assert result["AUROC"] > 0.8, result
    assert result["ACC"] > 0.9, result
    assert len(updates) == 6 and float(loss.lam) > 0  # the false-alarm constraint was active
    assert float(updates[-1]["false_alarm"]) < float(updates[0]["false_alarm"])


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (16,)
    assert torch.isfinite(namespace["loss"])


def test_bad_scorer_arguments():
    with pytest.raises(ValueError, match="SconeScorer: argument 'weight'"):
        SconeScorer(weight=float("nan"))
    with pytest.raises(ValueError, match="SconeScorer: argument 'bias'"):
        SconeScorer(bias="0")
