"""Per-source sampling weights follow empanada: a source's share grows as n ** (1 - gamma)."""

from __future__ import annotations

import numpy as np
import pytest

from empanada_desktop.backend.finetune.data import pair_probabilities, source_shares


def test_ten_and_one_patch_sources_at_gamma_07():
    sources = ["big"] * 10 + ["small"]
    shares = source_shares(sources, 0.7)
    # n ** 0.3: 10 ** 0.3 = 1.995, 1 ** 0.3 = 1 -> 0.666 / 0.334
    assert shares["big"] == pytest.approx(0.666, abs=1e-3)
    assert shares["small"] == pytest.approx(0.334, abs=1e-3)
    probabilities = pair_probabilities(sources, 0.7)
    assert probabilities.sum() == pytest.approx(1.0)
    assert np.allclose(probabilities[:10], probabilities[0])  # pairs of one source are alike


@pytest.mark.parametrize("gamma", [0.0, 0.3, 0.7, 1.0])
def test_share_grows_as_n_to_the_one_minus_gamma(gamma):
    counts = {"a": 40, "b": 8, "c": 1}
    sources = [name for name, n in counts.items() for _ in range(n)]
    shares = source_shares(sources, gamma)
    expected = np.array([n ** (1 - gamma) for n in counts.values()])
    np.testing.assert_allclose([shares[name] for name in counts], expected / expected.sum(), rtol=1e-9)


def test_gamma_zero_is_uniform_over_pairs_and_one_is_equal_per_source():
    sources = ["a"] * 3 + ["b"]
    np.testing.assert_allclose(pair_probabilities(sources, 0.0), [0.25] * 4)
    assert source_shares(sources, 1.0) == pytest.approx({"a": 0.5, "b": 0.5})
