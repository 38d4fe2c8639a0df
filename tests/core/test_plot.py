"""Every plot renders headlessly to a valid, non-blank PNG."""

import io

import pytest
import torch

plot = pytest.importorskip("ebmcore.plot")
Image = pytest.importorskip("PIL.Image")


class Bowl(torch.nn.Module):
    def forward(self, x):
        return 0.5 * (x**2).sum(1)


def assert_valid_png(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=50)
    buffer.seek(0)
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(buffer).convert("L")
    low, high = image.getextrema()
    assert high - low > 50, "the picture is blank"


@pytest.fixture
def trajectory():
    g = torch.Generator().manual_seed(0)
    return torch.randn(200, 6, 2, generator=g).cumsum(0) * 0.1


def test_energy_contours_with_data():
    data = torch.randn(500, 2, generator=torch.Generator().manual_seed(1))
    assert_valid_png(plot.energy_contours(Bowl(), data, resolution=40))


def test_sample_scatter_over_density():
    samples = torch.randn(300, 2, generator=torch.Generator().manual_seed(2))
    assert_valid_png(plot.sample_scatter(samples, Bowl(), resolution=40))


def test_training_curves():
    history = {"step": [0, 1, 2, 3], "loss": [3.0, 2.0, 1.5, 1.2], "energy_gap": [1, 0.5, 0.2, 0.1]}
    assert_valid_png(plot.training_curves(history))


def test_chain_plots(trajectory):
    assert_valid_png(plot.trace_plot(trajectory))
    assert_valid_png(plot.rank_plot(trajectory))
    assert_valid_png(plot.autocorrelation_plot(trajectory, max_lag=50))


def test_image_grid():
    images = torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    assert_valid_png(plot.image_grid(images, ncols=5))


def test_plots_never_touch_pyplot_state():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plot.training_curves({"loss": [1.0, 0.5]})
    assert plt.get_fignums() == before


@pytest.mark.parametrize("bad", [torch.zeros(5, 3), torch.zeros(5)])
def test_bad_points_are_rejected(bad):
    with pytest.raises(ValueError, match=r"samples must be a tensor of 2-D points"):
        plot.sample_scatter(bad)


def test_bad_images_are_rejected():
    with pytest.raises(ValueError, match="images must be"):
        plot.image_grid(torch.zeros(2, 2, 8, 8))


def test_empty_history_is_rejected():
    with pytest.raises(ValueError, match="no metric"):
        plot.training_curves({"step": [1, 2]})
