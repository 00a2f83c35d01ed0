"""Figures written as PNG with a 256-colour palette: a line or scatter plot looks the same and takes about a third
of the bytes, which keeps the benchmark records kept in the repository small."""

import io

from PIL import Image

DPI = 120
COLOURS = 256


def save_figure(fig, path):
    """Writes ``fig`` to ``path`` (a PNG of at most 256 colours) and closes it."""
    import matplotlib.pyplot as plt

    rendered = io.BytesIO()
    fig.savefig(rendered, format="png", dpi=DPI)
    plt.close(fig)
    rendered.seek(0)
    to_palette(rendered, path)


def to_palette(source, path):
    """The PNG ``source`` (a path or a file object) in at most 256 colours, written to ``path``."""
    with Image.open(source) as image:
        image.convert("RGB").quantize(COLOURS, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
