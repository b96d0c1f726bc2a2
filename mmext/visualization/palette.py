"""Class colours and names for the visualizers: taken from ``dataset_meta`` where it has them.

A dataset's ``metainfo`` carries ``classes`` (names, label index order) and, for mmdet/mmseg
style datasets, ``palette`` (one RGB colour per class).  A dataset without a palette, or a label
past its end, gets a colour from :func:`default_palette`, so the same label always has the same
colour in every picture.
"""
import colorsys
from typing import Any, List, Mapping, Optional, Sequence, Tuple

RGB = Tuple[int, int, int]

__all__ = ['RGB', 'default_palette', 'to_rgb', 'ClassStyle']

_GOLDEN = 0.618033988749895  # hue step: consecutive labels land far apart on the colour wheel


def default_palette(num: int) -> List[RGB]:
    """``num`` distinct, saturated RGB colours, the same for the same ``num`` prefix.

    Hues advance by the golden ratio from red, so neighbouring labels never get similar hues;
    saturation and value alternate slightly so that labels ``k`` and ``k + 8`` (close hues)
    still differ.
    """
    colours = []
    for i in range(num):
        hue = (i * _GOLDEN) % 1.0
        sat, val = (0.85, 0.95) if i % 2 == 0 else (0.65, 0.8)
        r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours


def to_rgb(colour: Any) -> RGB:
    """An ``(r, g, b)`` tuple of ints in 0-255 from a sequence of 3 numbers (a palette entry read
    back from a config is a list) or a matplotlib colour name (``'white'``)."""
    if isinstance(colour, str):
        from matplotlib.colors import to_rgb as mpl_to_rgb
        return tuple(round(c * 255) for c in mpl_to_rgb(colour))  # type: ignore[return-value]
    values = tuple(int(round(float(c))) for c in colour)
    if len(values) != 3 or not all(0 <= c <= 255 for c in values):
        raise ValueError(f'a colour must be 3 numbers in 0-255 (RGB), got {colour!r}')
    return values  # type: ignore[return-value]


class ClassStyle:
    """Names and colours of classes, from a dataset's ``metainfo``.

    Args:
        dataset_meta: ``classes`` (label -> name) and optionally ``palette`` (label -> RGB);
            ``None`` or missing keys fall back to the label number and :func:`default_palette`.
        palette: Overrides ``dataset_meta['palette']`` (a list of RGB colours).
    """

    def __init__(self,
                 dataset_meta: Optional[Mapping[str, Any]] = None,
                 palette: Optional[Sequence[Any]] = None) -> None:
        meta = dataset_meta or {}
        self.classes: Tuple[str, ...] = tuple(str(c) for c in (meta.get('classes') or ()))
        source = palette if palette is not None else meta.get('palette')
        self.palette: List[RGB] = [to_rgb(c) for c in source] if source is not None else []

    def name(self, label: int) -> str:
        """The class name of ``label``, or the number when the metainfo has no name for it."""
        return self.classes[label] if 0 <= label < len(self.classes) else str(label)

    def colour(self, label: int) -> RGB:
        """The palette colour of ``label``; past the palette's end, a :func:`default_palette`
        colour (deterministic per label)."""
        if 0 <= label < len(self.palette):
            return self.palette[label]
        label = max(label, 0)
        return default_palette(label + 1)[label]
