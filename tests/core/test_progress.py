"""The progress bar: quiet off a terminal, one updating line on one."""

import io

from ebmcore.progress import ProgressBar


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_quiet_when_not_a_terminal():
    stream = io.StringIO()
    bar = ProgressBar(10, stream=stream)
    for _ in range(10):
        bar.update(extra="loss 1.0")
    bar.close()
    assert stream.getvalue() == "" and not bar.due()


def test_draws_counts_rate_and_extra_on_a_terminal():
    stream = FakeTerminal()
    bar = ProgressBar(3, stream=stream, label="train", min_interval=0.0)
    assert bar.due()
    bar.update(extra="loss 0.5")
    bar.update()
    bar.update()
    bar.close()
    text = stream.getvalue()
    assert "train 1/3" in text and "train 3/3" in text and "it/s" in text
    assert "loss 0.5" in text and text.endswith("\n")


def test_disabled_bar_stays_quiet_on_a_terminal():
    stream = FakeTerminal()
    bar = ProgressBar(2, enabled=False, stream=stream)
    bar.update()
    bar.close()
    assert stream.getvalue() == ""
