"""Built-in losses."""

from __future__ import annotations

from torch import Tensor, nn

from ood_core.functional import cross_entropy
from ood_core.loss import Loss
from ood_core.reduction import Reduction, check_reduction
from ood_core.validation import check_classification_bounds


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy that ignores OOD targets.

    ``L = mean_{i: y_i >= 0} -log softmax(f(x_i))_{y_i}``; entries with ``y < 0`` do not
    contribute (``reduction="none"`` gives them 0). Classification ``(B, C)`` and segmentation
    ``(B, C, H, W)``. Natural scorer: ``msp``. Unlike pytorch-ood 0.4.0 it does not warn on
    OOD targets (a warning is a host sync) and an all-OOD batch gives 0 with the graph kept.
    A ``-inf`` logit masks a class (finite loss) unless it is an ID entry's target class.
    """

    roles = {"logits": "logits", "targets": "target"}

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction, type(self).__name__)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        logits, targets, bounds = check_classification_bounds(
            type(self).__name__, logits, targets, target_arg="targets", masks=True
        )
        return cross_entropy(logits, targets, self.reduction, bounds=bounds)

    def scorer(self) -> nn.Module:
        """The natural scorer, maximum softmax probability."""
        from ood_core.builtin.scorers import MaxSoftmax

        return MaxSoftmax()
