"""Image pictures: image_grid's value_range shows samples on the data's own scale, and
chain_strip draws one chain's frames left to right, titled by their index."""

import pytest
import torch

plot = pytest.importorskip("ebmcore.plot")
np = pytest.importorskip("numpy")


def centre_grey(fig, ax):
    """The rendered grey level (0..255) at the centre of ``ax``."""
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())
    box = ax.get_window_extent()
    row = pixels.shape[0] - int((box.y0 + box.y1) / 2)  # the buffer's rows run top down
    col = int((box.x0 + box.x1) / 2)
    return pixels[row, col, :3].astype(float).mean()


def shown(ax):
    return np.asarray(ax.images[0].get_array())


def test_value_range_maps_the_range_to_black_and_white_and_clips():
    images = torch.tensor([0.0, -1.0, 1.0, 5.0, -3.0, 0.5]).view(-1, 1, 1, 1).expand(-1, 1, 4, 4)
    fig = plot.image_grid(images, ncols=6, value_range=(-1.0, 1.0))
    axes = [ax for ax in fig.axes if ax.images]
    expected = [0.5, 0.0, 1.0, 1.0, 0.0, 0.75]
    for ax, value in zip(axes, expected, strict=True):
        np.testing.assert_allclose(shown(ax), value)
        assert ax.images[0].norm.vmin == 0.0 and ax.images[0].norm.vmax == 1.0
    greys = [centre_grey(fig, ax) for ax in axes]
    assert greys[0] == pytest.approx(128, abs=3)  # 0 is mid grey on (-1, 1)
    assert greys[1] == pytest.approx(0, abs=2) and greys[4] == pytest.approx(0, abs=2)
    assert greys[2] == pytest.approx(255, abs=2) and greys[3] == pytest.approx(255, abs=2)


def test_without_value_range_each_image_is_min_max_scaled():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 1, 5, 5, generator=g) * torch.tensor([0.1, 10.0]).view(2, 1, 1, 1)
    fig = plot.image_grid(images, ncols=2)
    for ax, img in zip([a for a in fig.axes if a.images], images.double(), strict=True):
        expected = (img[0] - img.min()) / (img.max() - img.min())
        np.testing.assert_allclose(shown(ax), expected.numpy(), rtol=1e-12, atol=1e-15)


def test_value_range_keeps_colour_images_on_the_data_scale():
    images = torch.zeros(1, 3, 4, 4)
    images[0, 0] = 1.0  # red channel at the top of the range, others at the middle
    fig = plot.image_grid(images, value_range=(-1.0, 1.0))
    rgb = shown(fig.axes[0])
    np.testing.assert_allclose(rgb[..., 0], 1.0)
    np.testing.assert_allclose(rgb[..., 1:], 0.5)


def titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.images]


def test_chain_strip_picks_evenly_spaced_frames_left_to_right():
    frames = torch.arange(23.0).view(-1, 1, 1, 1).expand(-1, 1, 3, 3)
    fig = plot.chain_strip(frames, value_range=(0.0, 22.0), max_frames=12)
    axes = [ax for ax in fig.axes if ax.images]
    assert titles(fig) == [str(t) for t in range(0, 23, 2)]
    xs = [ax.get_position().x0 for ax in axes]
    assert xs == sorted(xs)  # drawn left to right
    for ax, t in zip(axes, range(0, 23, 2), strict=True):
        np.testing.assert_allclose(shown(ax), t / 22.0)  # the frame with that index


def test_chain_strip_draws_every_frame_when_few():
    frames = torch.randn(5, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    fig = plot.chain_strip(frames)
    assert titles(fig) == ["0", "1", "2", "3", "4"]
    last = frames[4].double()
    last = (last - last.min()) / (last.max() - last.min())
    np.testing.assert_allclose(shown(fig.axes[4]), last.permute(1, 2, 0).numpy(),
                               rtol=1e-12, atol=1e-15)


def test_chain_strip_keeps_the_first_and_last_frame():
    fig = plot.chain_strip(torch.zeros(100, 1, 2, 2), max_frames=4)
    assert titles(fig) == ["0", "33", "66", "99"]
    assert titles(plot.chain_strip(torch.zeros(100, 1, 2, 2), max_frames=1)) == ["0"]
    # six frames onto four: 0, 5/3, 10/3, 5 round to the nearest frame
    assert titles(plot.chain_strip(torch.zeros(6, 1, 2, 2), max_frames=4)) == ["0", "2", "3", "5"]


@pytest.mark.parametrize("bad", [torch.zeros(4, 2, 3, 3), torch.zeros(4, 3, 3), [1.0]])
def test_chain_strip_rejects_bad_frames(bad):
    with pytest.raises(ValueError, match=r"frames must be a tensor \(T, C, H, W\)"):
        plot.chain_strip(bad)


@pytest.mark.parametrize("max_frames", [0, -1, 2.5, True])
def test_chain_strip_rejects_bad_max_frames(max_frames):
    with pytest.raises(ValueError, match="max_frames"):
        plot.chain_strip(torch.zeros(4, 1, 3, 3), max_frames=max_frames)


@pytest.mark.parametrize("value_range", [(1.0, 1.0), (2.0, 1.0), (0.0, float("inf")),
                                         (0.0,), (0.0, 1.0, 2.0), "ab", 3.0])
def test_bad_value_range_is_rejected(value_range):
    with pytest.raises(ValueError, match="value_range"):
        plot.image_grid(torch.zeros(2, 1, 3, 3), value_range=value_range)
    with pytest.raises(ValueError, match="value_range"):
        plot.chain_strip(torch.zeros(2, 1, 3, 3), value_range=value_range)
