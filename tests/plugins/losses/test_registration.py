"""The losses plugin registers every loss, lazily, with documented parameters."""

from __future__ import annotations

import subprocess
import sys

import pytest

import ebmcore

NAMES = ["cd", "pcd", "pt_cd", "score_matching", "sliced_score_matching",
         "denoising_score_matching", "nce"]


def test_every_loss_is_registered_and_documented():
    assert set(NAMES) <= set(ebmcore.names("loss"))
    for name in NAMES:
        info = ebmcore.describe("loss", name)
        assert info["plugin"] == "losses" and info["summary"]
        undocumented = [p["name"] for p in info["parameters"] if not p["doc"]]
        assert not undocumented, (name, undocumented)


@pytest.mark.parametrize("alias, cls", [("ssm", "SlicedScoreMatching"),
                                        ("dsm", "DenoisingScoreMatching"),
                                        ("persistent_cd", "PersistentContrastiveDivergence")])
def test_aliases(alias, cls):
    assert type(ebmcore.create("loss", alias)).__name__ == cls


def test_plugin_root_imports_no_torch():
    code = ("import sys, ebmcore_losses; ebmcore_losses.ebmcore_losses(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
