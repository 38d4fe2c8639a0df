"""benchmarks/posteriors.py's recommended configurations and the columns sized like them."""

from __future__ import annotations

import io

from benchmark_modules import BENCHMARKS, load_benchmark


def test_every_target_has_a_recommended_configuration_documented() -> None:
    bench = load_benchmark("posteriors")
    docs = (BENCHMARKS.parent / "docs" / "sampling.md").read_text()
    assert set(bench.RECOMMENDED) == set(bench.TARGETS)
    for recipe in bench.RECOMMENDED.values():
        assert recipe.sampler in bench.ebmcore.names("sampler")
        assert recipe.chains >= 2 and recipe.warmup > 0 and recipe.draws > 0
    assert "Which sampler for which posterior" in docs


def test_recommended_rows_run_at_their_own_size(monkeypatch) -> None:
    """The ``recommended`` column runs its recipe's chains, warm-up and draws (a small eager
    recipe here), beside the protocol's rows, and the table says so."""
    bench = load_benchmark("posteriors")
    small = bench.Recipe("chees", {}, 8, 60, 40)
    monkeypatch.setitem(bench.RECOMMENDED, "banana", small)
    settings = bench.Settings(chains=4, warmup=60, draws=50, seed=0)
    out = io.StringIO()
    rows, failed = bench.run(["banana"], ["chees", "recommended"], settings, out=out)
    assert failed == []
    protocol, recommended = rows
    assert (protocol.chains, protocol.warmup, protocol.draws) == (4, 60, 50)
    assert (recommended.chains, recommended.warmup, recommended.draws) == (8, 60, 40)
    assert recommended.error is None and recommended.grads_sampling >= 8 * 40
    assert "chees(), 8 chains, 60 + 40" in recommended.note
    text = bench.markdown(rows, settings)
    assert "| Banana, 2-D | recommended | 8 | 60 + 40 |" in text
    assert "vs BlackJAX same chains" in text
