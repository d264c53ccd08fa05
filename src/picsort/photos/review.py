"""Show photos labelled in the app before train.ipynb adds them to the training data."""

from __future__ import annotations

from itertools import groupby
from typing import Sequence

from picsort.foundation.vocabulary import label_order, shown_label
from picsort.photos.images import image_from_path
from picsort.photos.sources import LabelledPhoto

COLUMNS = 6
THUMBNAIL_SIDE = 200  # pixels, the shortest side a photo is decoded at for its place in the grid


def caption(photo: LabelledPhoto) -> str:
    """The file name, and what the model had guessed: the label's reviewer decides whether it is right."""
    answer = "model: no answer recorded" if photo.predicted is None else (
        f"model: {shown_label(photo.predicted)} {photo.confidence:.0%}" if photo.confidence is not None
        else f"model: {shown_label(photo.predicted)}")
    return f"{photo.path.name[:14]}\n{answer}"


def show_labelled(photos: Sequence[LabelledPhoto], columns: int = COLUMNS):
    """A grid of the photos, one row of titles per label ("none of these" last); returns the figure or None."""
    if not photos:
        print("No new photos labelled in the app.")
        return None
    import matplotlib.pyplot as plt

    order = sorted(photos, key=lambda p: label_order(p.label))
    groups = [(label, list(group)) for label, group in groupby(order, key=lambda p: p.label)]
    rows = sum(-(-len(group) // columns) for _, group in groups)
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.6 * rows), squeeze=False)
    row = 0
    for label, group in groups:
        for start in range(0, len(group), columns):
            for column in range(columns):
                axis = axes[row][column]
                axis.axis("off")
                if start + column < len(group):
                    photo = group[start + column]
                    # The package's decoder: upright as the app showed it (a phone photo's EXIF turn), and small.
                    axis.imshow(image_from_path(photo.path, min_side=THUMBNAIL_SIDE))
                    axis.set_title(caption(photo), fontsize=8)
            title = shown_label(label)
            axes[row][0].text(-0.1, 0.5, f"{title}\n({len(group)})" if start == 0 else "", rotation=90,
                              transform=axes[row][0].transAxes, ha="right", va="center", fontsize=11)
            row += 1
    figure.tight_layout()
    plt.show()
    return figure
