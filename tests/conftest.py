"""Shared test helpers: the authors' reference fixture."""

from pathlib import Path

import pytest
import torch

FIXTURE = Path(__file__).parent / "fixtures" / "reference_hybridhash_small.pt"


@pytest.fixture(scope="session")
def reference():
    """The authors' model (small config), an input, their output and three loss calls."""
    return torch.load(FIXTURE, weights_only=False)
