"""Base class of scorers: a module mapping one model output to outlier scores."""

from __future__ import annotations

from torch import Tensor, nn


class Scorer(nn.Module):
    """Maps a model output to outlier scores (higher = more OOD).

    Classification outputs ``(B, C)`` (or ``(B, D)`` embeddings) give scores ``(B,)``;
    segmentation outputs ``(B, C, H, W)`` give ``(B, H, W)``. ``predict`` gives the class
    decision; the default is the argmax over dim 1 (logits). Scorers that learn from data
    override ``fit`` and keep what they learn in buffers. ``forward`` must be pure tensor code so
    the scorer exports with ``torch.export`` and to ONNX.
    """

    #: which model output the scorer reads: "logits", "embedding" or "features"
    reads: str = "logits"

    def predict(self, output: Tensor) -> Tensor:
        """Class decision for ``output``: argmax over the class dimension (int64)."""
        return output.argmax(dim=1)
