"""Augmented views of the normal images, for fitting.

``EfficientNetGaussianDetector(augment=...)`` fits its Gaussians on each
training image and on copies of it flipped, rotated or shifted: a normal
part seen in one orientation then stands for the others, and a few images
give a covariance with more than a handful of directions. Scoring never
augments, so it costs no extra forward pass.
"""

import torch

__all__ = ["AUGMENTATIONS", "AugmentedSource", "n_views"]


def _shift(dy, dx, keep=7 / 8):
    """A crop of ``keep`` of each side moved to a corner: a shift by half the
    margin (1/16 of the side) and a slight zoom once resized."""

    def crop(x):
        h, w = x.shape[-2:]
        ch, cw = max(1, round(h * keep)), max(1, round(w * keep))
        top = (h - ch) // 2 + dy * ((h - ch) // 2)
        left = (w - cw) // 2 + dx * ((w - cw) // 2)
        return x[..., top : top + ch, left : left + cw]

    return crop


_VIEWS = {
    "hflip": lambda x: x.flip(-1),
    "vflip": lambda x: x.flip(-2),
    "rot90": lambda x: torch.rot90(x, 1, (-2, -1)),
    "rot180": lambda x: torch.rot90(x, 2, (-2, -1)),
    "rot270": lambda x: torch.rot90(x, 3, (-2, -1)),
    "transpose": lambda x: x.transpose(-2, -1),
    "antitranspose": lambda x: torch.rot90(x.transpose(-2, -1), 2, (-2, -1)),
    "shift_tl": _shift(-1, -1),
    "shift_tr": _shift(-1, 1),
    "shift_bl": _shift(1, -1),
    "shift_br": _shift(1, 1),
}

# The views each value of ``augment`` adds to the image itself (the keys are
# _constants.AUGMENTS, which the command line reads without loading torch).
AUGMENTATIONS = {
    "flips": ("hflip", "vflip"),
    "rotations": ("rot90", "rot180", "rot270"),
    "dihedral": ("hflip", "vflip", "rot90", "rot180", "rot270", "transpose", "antitranspose"),
    "shifts": ("shift_tl", "shift_tr", "shift_bl", "shift_br"),
}


def n_views(augment):
    """Views per training image, the image itself included."""
    return 1 + (len(AUGMENTATIONS[augment]) if augment else 0)


class AugmentedSource:
    """An :class:`~skanomaly._images.ImageSource` whose batches hold every
    view of their images, view by view (all first views, then all second
    views, ...).

    Parameters
    ----------
    source : ImageSource
        The training images.
    augment : str
        A key of :data:`AUGMENTATIONS`.
    """

    def __init__(self, source, augment):
        self.source = source
        self.views = [_VIEWS[name] for name in AUGMENTATIONS[augment]]
        self.n_views = 1 + len(self.views)
        self.image_shape = source.image_shape

    def __len__(self):
        return len(self.source) * self.n_views

    def batches(self, batch_size, device=None):
        """As :meth:`ImageSource.batches`, with ``batch_size`` counting views
        (images of different shapes, e.g. rotated non-square ones, come as
        a list); ``BATCH_PIXELS`` counts the images, not their views."""
        per_batch = max(1, batch_size // self.n_views)
        for start, images in self.source.batches(per_batch, device):
            if torch.is_tensor(images):
                views = [images] + [view(images) for view in self.views]
                if len({v.shape for v in views}) == 1:
                    yield start, torch.cat(views)
                    continue
                images = list(images)
            yield start, [view(image) for view in (lambda x: x, *self.views) for image in images]
