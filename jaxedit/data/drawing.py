"""Anti-aliased 2-D drawing in jax.numpy, for the schematic renderer: signed distances, colours,
painting on colour planes, static crop windows, and a tiny bitmap caption font.

Coordinates are normalised: x, y in [-1, 1] over the image, y down. Signed distances are negative
inside a shape; `coverage(d, edge)` turns one into an anti-aliased alpha with a smoothstep edge
`edge` wide (normalised units). Everything broadcasts: shape parameters may be [B, 1, 1] arrays.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

_GLYPHS = {  # 5x7 bitmaps, rows top to bottom; other characters draw as blanks
    "a": "...../...../.###./....#/.####/#...#/.####",
    "c": "...../...../.###./#..../#..../#...#/.###.",
    "d": "....#/....#/.####/#...#/#...#/#...#/.####",
    "e": "...../...../.###./#...#/#####/#..../.###.",
    "f": "..##./.#..#/.#.../###../.#.../.#.../.#...",
    "h": "#..../#..../#.##./##..#/#...#/#...#/#...#",
    "i": "..#../...../.##../..#../..#../..#../.###.",
    "l": ".##../..#../..#../..#../..#../..#../.###.",
    "m": "...../...../##.#./#.#.#/#.#.#/#...#/#...#",
    "n": "...../...../#.##./##..#/#...#/#...#/#...#",
    "o": "...../...../.###./#...#/#...#/#...#/.###.",
    "r": "...../...../#.##./##..#/#..../#..../#....",
    "s": "...../...../.####/#..../.###./....#/####.",
    "t": ".#.../.#.../###../.#.../.#.../.#..#/..##.",
    "w": "...../...../#...#/#...#/#.#.#/#.#.#/.#.#.",
    "y": "...../#...#/#...#/#...#/.####/....#/.###.",
}


def text_strip(text: str, width: int, fallback: str = "") -> np.ndarray:
    """A caption strip [bar_height, width] float32 in {0, 1} (1 = text), the text centred.

    The font is 5x7 pixels (lower-case letters of the captions only), scaled by an integer so the
    letters are about 2.2% of `width` tall; `fallback` is used where `text` does not fit at scale 1,
    and a plain bar (no text) where neither fits.
    """
    if 6 * len(text) + 4 > width and fallback:
        text = fallback
    if 6 * len(text) + 4 > width:  # too small for any text: a plain bar
        return np.zeros((max(2, width // 16), width), np.float32)
    scale = max(1, min(round(width * 0.022 / 7), (width - 4) // max(1, 6 * len(text))))
    bitmap = np.zeros((7, 6 * len(text)), np.float32)
    for k, char in enumerate(text):
        rows = _GLYPHS.get(char, "/".join(["....."] * 7)).split("/")
        bitmap[:, 6 * k : 6 * k + 5] = np.array([[c == "#" for c in row] for row in rows], np.float32)
    bitmap = np.kron(bitmap, np.ones((scale, scale), np.float32))[:, :width]
    strip = np.zeros((7 * scale + 2 * max(2, scale), width), np.float32)
    top, left = (strip.shape[0] - bitmap.shape[0]) // 2, (width - bitmap.shape[1]) // 2
    strip[top : top + bitmap.shape[0], left : left + bitmap.shape[1]] = bitmap
    return strip


def rgb(*values):
    return jnp.asarray(values, jnp.float32)


def hue(h, saturation=0.55, value=0.6):
    """Colours [..., 3] of hues h [...] in [0, 1] (a cosine colour wheel)."""
    angles = 2 * np.pi * (h[..., None] + jnp.asarray([0.0, 2 / 3, 1 / 3]))
    return value * (1 - saturation + saturation * (0.5 + 0.5 * jnp.cos(angles)))


def lerp(a, b, t):
    """Colours a + t (b - a): a, b [..., 3], t [...]."""
    return a + t[..., None] * (b - a)


def coverage(d, edge):
    """Alpha in [0, 1] of signed distance d: 1 inside, 0 outside, a smoothstep `edge` wide."""
    t = jnp.clip(0.5 - d / edge, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def ellipse(x, y, cx, cy, rx, ry):
    """Approximate signed distance to an ellipse (exact on the axes, good near the boundary)."""
    px, py = (x - cx) / rx, (y - cy) / ry
    k0 = jnp.sqrt(px * px + py * py)
    k1 = jnp.sqrt((px / rx) ** 2 + (py / ry) ** 2)
    return k0 * (k0 - 1.0) / jnp.maximum(k1, 1e-6)


def segment(x, y, ax, ay, bx, by):
    """Distance to the segment from (ax, ay) to (bx, by) (a capsule of radius r is segment - r)."""
    pax, pay, bax, bay = x - ax, y - ay, bx - ax, by - ay
    h = jnp.clip((pax * bax + pay * bay) / (bax * bax + bay * bay), 0.0, 1.0)
    return jnp.sqrt((pax - bax * h) ** 2 + (pay - bay * h) ** 2)


def box(x, y, cx, cy, hx, hy, r=0.0):
    """Signed distance to a box of half-sizes (hx, hy) with corners rounded by r."""
    qx, qy = jnp.abs(x - cx) - hx + r, jnp.abs(y - cy) - hy + r
    return jnp.sqrt(jnp.maximum(qx, 0) ** 2 + jnp.maximum(qy, 0) ** 2) + jnp.minimum(jnp.maximum(qx, qy), 0) - r


def parabola_band(x, y, cx, cy, half_width, bend, thickness):
    """(signed distance, centre line) of a band of half-thickness `thickness` around the curve
    y = cy - bend (u^2 - 1/3), u = (x - cx) / half_width in [-1, 1]: bend > 0 lifts the ends (a
    smile), bend < 0 lifts the middle (an arch); the curve's mean height is cy whatever the bend."""
    u = (x - cx) / half_width
    centre = cy - bend * (u * u - 1.0 / 3.0)
    slope = 2.0 * bend * u / half_width
    across = jnp.abs(y - centre) / jnp.sqrt(1.0 + slope * slope) - thickness
    return jnp.maximum(across, jnp.abs(x - cx) - half_width), centre


def superellipse(x, y, cx, cy, rx, ry, power):
    """Approximate signed distance to |x/rx|^p + |y/ry|^p = 1 (first-order: level value / gradient)."""
    ux, uy = jnp.abs(x - cx) / rx + 1e-6, jnp.abs(y - cy) / ry + 1e-6
    radius = (ux**power + uy**power) ** (1 / power)
    grad = radius ** (1 - power) * jnp.sqrt((ux ** (power - 1) / rx) ** 2 + (uy ** (power - 1) / ry) ** 2)
    return (radius - 1) / jnp.maximum(grad, 1e-3)


def paint(image, alpha, colour):
    """Blend `colour` over `image` with `alpha` [B|1, H|1, W|1].

    image: a tuple of 3 colour planes [B, H, W] (XLA fuses planes far better than [B, H, W, 3]);
    colour: [3] or [B, 1, 1, 3].
    """
    colour = jnp.asarray(colour, jnp.float32)
    return tuple(plane + alpha * (colour[..., k] - plane) for k, plane in enumerate(image))


def window_slices(size: int, x0: float, x1: float, y0: float, y1: float, margin_px: int = 4) -> tuple[slice, slice]:
    """(rows, columns) of the pixels whose centres lie in [x0, x1] x [y0, y1] (normalised), grown by
    `margin_px` pixels (room for soft edges), clipped to the image."""

    def pixels(low, high):
        first = int(np.floor((low + 1) * size / 2)) - margin_px
        stop = int(np.ceil((high + 1) * size / 2)) + margin_px
        return slice(max(0, first), min(size, max(stop, first + 1)))

    return pixels(y0, y1), pixels(x0, x1)


def crop(image, rows: slice, columns: slice):
    return tuple(plane[:, rows, columns] for plane in image)


def paste(image, rows: slice, columns: slice, part):
    return tuple(plane.at[:, rows, columns].set(piece) for plane, piece in zip(image, part))
