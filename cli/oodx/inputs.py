"""Reading model inputs from the command line: ``ood_runtime.inputs`` (torch-free), re-exported.

Its :class:`ood_runtime.errors.InputError` is shown by the CLI as one ``Error:`` line.
"""

from __future__ import annotations

from ood_runtime.inputs import (
    IMAGE_SUFFIXES,
    RESIZE_MODES,
    describe_rows,
    load_images,
    load_inputs,
    nonfinite_rows,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "RESIZE_MODES",
    "describe_rows",
    "load_images",
    "load_inputs",
    "nonfinite_rows",
]
