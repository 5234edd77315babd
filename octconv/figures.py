"""PNG figures: matplotlib without a display, each written atomically."""
from octconv.files import write_atomically

__all__ = ["pyplot", "save_png"]


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_png(fig, path):
    """Lay out ``fig``, write it to ``path`` as a PNG (atomically) and close it."""
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90), ".png")
    pyplot().close(fig)
