"""A schematic picture of the synthetic attribute world: a drawn face, not a photograph.

The synthetic world (`jaxedit.data.synthetic`) has labellers and an identity embedding but no
images. This module draws what its labellers and its identity embedding say about a latent, so the
editor has something to show on the embedded default. Every picture is a SCHEMATIC of the world
(and says so in a caption strip unless `label=False`); it is not a face and measures nothing.

How it reads the world:

- Each feature is drawn from its own attribute's logit only, through `sigmoid(logit / temperature)`
  (a continuous amount, so an edit moves the drawing smoothly): Smiling bends the mouth, Eyeglasses
  draws frames around the eyes, Black/Blond/Brown/Gray_Hair mix the hair colour, No_Beard
  (inverted) grows a beard, Young (inverted) draws age lines, and so on for all 40 attributes
  (`FEATURES` lists what each one draws). So an edit that changes only Smiling changes only the
  mouth region. Attributes with a global reach say so: Blurry softens every edge, Pale_Skin
  lightens all skin (and the skin-based shading), and the face's outline (Chubby, Oval_Face,
  Male) carries the ears, earrings and sideburns with it.
- Identity features (skin tone, face width and height, eye spacing, mouth width, the hair's own
  hue, iris, clothing and accessory colours) are read from the identity embedding only, through
  fixed projections; different identities look different, an edit that keeps identity keeps them.

Layout (image coordinates x, y in [-1, 1], y down): eyes at y = -0.06, mouth at y = 0.26, chin near
y = 0.46, head top near y = -0.58; the caption strip covers the bottom rows.

`render_scores(scores, identity, size)` draws logits [B, 40] and embeddings [B, D];
`jaxedit.data.schematic_renderer.SchematicRenderer(world)` draws latents with the generator's interface.
Drawing is jitted jax.numpy (anti-aliased signed distances, smoothstep edges), batched, any size.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxedit.attributes import ATTRIBUTES, NUM_ATTRIBUTES
from jaxedit.data import drawing as D
from jaxedit.errors import ConfigError, InputError

FEATURES: dict[str, str] = {
    "Smiling": "mouth curve, width and dimples",
    "Mouth_Slightly_Open": "mouth opening and teeth",
    "Big_Lips": "lip thickness",
    "Wearing_Lipstick": "lip colour",
    "Mustache": "moustache",
    "Goatee": "goatee",
    "No_Beard": "full beard along the jaw (inverted)",
    "5_o_Clock_Shadow": "stubble tint on the lower face",
    "Sideburns": "sideburns",
    "Eyeglasses": "glasses",
    "Narrow_Eyes": "eye height",
    "Bags_Under_Eyes": "arcs under the eyes",
    "Heavy_Makeup": "eye shadow and eyeliner",
    "Bushy_Eyebrows": "eyebrow thickness",
    "Arched_Eyebrows": "eyebrow arch",
    "Big_Nose": "nose size",
    "Pointy_Nose": "nose tip shape",
    "Rosy_Cheeks": "cheek blush",
    "High_Cheekbones": "cheekbone shading",
    "Young": "forehead lines, crow's feet, smile folds (inverted)",
    "Black_Hair": "hair colour",
    "Blond_Hair": "hair colour",
    "Brown_Hair": "hair colour",
    "Gray_Hair": "hair colour",
    "Bald": "hair on top of the head (inverted)",
    "Receding_Hairline": "hairline height at the temples",
    "Bangs": "fringe over the forehead",
    "Wavy_Hair": "waves along the hair's edge",
    "Straight_Hair": "hair length and sheen",
    "Male": "jaw squareness, hair length, neck and shoulder width",
    "Oval_Face": "longer, narrower, egg-shaped face",
    "Chubby": "wider, rounder face",
    "Double_Chin": "second chin",
    "Pale_Skin": "skin lightness",
    "Wearing_Hat": "hat",
    "Wearing_Earrings": "earrings",
    "Wearing_Necklace": "necklace",
    "Wearing_Necktie": "collar and tie",
    "Attractive": "a sparkle in the top-right corner",
    "Blurry": "edge softness everywhere",
}

CAPTION = "schematic of the synthetic world"
SHORT_CAPTION = "schematic"
"""Used where the caption does not fit (under ~200 px); under 58 px the strip is a plain bar."""
_IDENTITY_TRAITS = 12
_IDENTITY_PROJECTION_SEED = 20211  # fixed: the same embedding always gets the same traits
MIN_SIZE, MAX_SIZE = 16, 2048
# Where the local features can be (normalised x0, x1, y0, y1, bounds worked out from the layout);
# each group is drawn in its window only, which is most of the speed.
_WINDOWS = {
    "eyes": (-0.5, 0.5, -0.22, 0.06),
    "nose": (-0.1, 0.1, -0.04, 0.16),
    "mouth": (-0.25, 0.25, 0.12, 0.44),
    "cheeks": (-0.5, 0.5, -0.4, 0.3),
    "ears": (-0.6, 0.6, -0.12, 0.16),
    "neck": (-0.3, 0.3, 0.28, 1.0),
    "corner": (0.7, 0.94, -0.94, -0.7),
}


def identity_traits(identity) -> jax.Array:
    """identity [B, D] (unit length) -> [B, 12] traits in (0, 1), through fixed random projections:
    skin tone, eye spacing, face width, face height, hair warmth, hair lightness, iris hue, clothes
    hue, mouth width, accessory hue (two spare)."""
    dim = identity.shape[-1]
    directions = np.random.default_rng(_IDENTITY_PROJECTION_SEED).standard_normal((_IDENTITY_TRAITS, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return jax.nn.sigmoid(1.6 * np.sqrt(dim) * identity @ jnp.asarray(directions.T, jnp.float32))


@functools.partial(jax.jit, static_argnames=("size", "label"))
def _draw(scores, identity, temperature, size: int, label: bool):
    amounts = jax.nn.sigmoid(scores / temperature)[:, :, None, None]  # [B, 40, 1, 1]
    A = {name: amounts[:, j] for j, name in enumerate(ATTRIBUTES)}
    T = identity_traits(identity)[:, :, None, None]  # [B, 12, 1, 1]
    coords = (jnp.arange(size, dtype=jnp.float32) + 0.5) * (2.0 / size) - 1.0
    X, Y = coords[None, None, :], coords[None, :, None]
    edge = (2.0 / size) * (1.0 + 5.0 * A["Blurry"])
    cov = lambda d: D.coverage(d, edge)
    line = lambda d, width: cov(d - width)
    B = scores.shape[0]

    def local(image, name, draw):
        rows, columns = D.window_slices(size, *_WINDOWS[name])
        part = draw(D.crop(image, rows, columns), X[..., columns], Y[:, rows, :])
        return D.paste(image, rows, columns, part)

    # Identity: skin, proportions, own colours.
    tone = T[:, 0]
    skin = jnp.where(
        tone[..., None] < 0.5,
        D.lerp(D.rgb(0.97, 0.82, 0.71), D.rgb(0.80, 0.60, 0.45), 2 * tone),
        D.lerp(D.rgb(0.80, 0.60, 0.45), D.rgb(0.42, 0.28, 0.20), 2 * tone - 1),
    )
    skin = D.lerp(skin, D.rgb(0.99, 0.92, 0.88), 0.75 * A["Pale_Skin"])
    shade = skin * 0.78
    eye_gap, face_w, face_h = 0.145 + 0.06 * T[:, 1], 0.37 + 0.09 * T[:, 2], 0.93 + 0.12 * T[:, 3]
    own_hair = D.lerp(D.rgb(0.20, 0.14, 0.10), D.rgb(0.46, 0.22, 0.10), T[:, 4]) * (0.7 + 0.6 * T[:, 5, ..., None])
    iris, clothes = D.hue(T[:, 6], 0.6, 0.45), D.hue(T[:, 7], 0.5, 0.55)
    mouth_w, accessory = 0.105 + 0.035 * T[:, 8], D.hue(T[:, 9], 0.7, 0.5)
    facial_hair = own_hair * 0.8
    fy, ye, ym = -0.08, -0.06, 0.26  # face centre, eyes, mouth

    # The head's shape; the hair colour.
    male, oval, chubby = A["Male"], A["Oval_Face"], A["Chubby"]
    a = face_w * (1 + 0.16 * chubby - 0.1 * oval)
    bottom_h = 0.54 * face_h * (1 + 0.16 * oval - 0.05 * chubby)
    jaw_power = jnp.clip(2.0 + 1.3 * male - 0.45 * oval + 0.3 * chubby, 1.5, 3.8)
    hair_colours = (D.rgb(0.07, 0.06, 0.06), D.rgb(0.93, 0.80, 0.50), D.rgb(0.45, 0.28, 0.15), D.rgb(0.75, 0.75, 0.77))
    weights = [A[n][..., None] for n in ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")]
    hair = (0.35 * own_hair + sum(w * c for w, c in zip(weights, hair_colours))) / (0.35 + sum(weights))

    image = tuple(
        jnp.broadcast_to((0.86 - 0.06 * (Y + 1)) * c, (B, size, size)).astype(jnp.float32) for c in (0.92, 0.95, 1.0)
    )

    def sparkle(image, x, y):
        star = jnp.minimum(D.ellipse(x, y, 0.82, -0.82, 0.09, 0.015), D.ellipse(x, y, 0.82, -0.82, 0.015, 0.09))
        return D.paint(image, cov(star) * A["Attractive"], D.rgb(1.0, 0.85, 0.2))

    image = local(image, "corner", sparkle)

    # Torso and back hair (long unless Male, longer when straight, wavy edges; Bald clears the crown).
    x, y = X, Y
    image = D.paint(image, cov(D.ellipse(x, y, 0.0, 1.2, 0.78 + 0.17 * male, 0.52)), clothes)
    length = 0.05 + 0.55 * (1 - male) + 0.2 * A["Straight_Hair"]
    waves = 0.035 * A["Wavy_Hair"] * jnp.sin(y * 34.0)
    back_hair = jnp.minimum(
        D.ellipse(x, y, 0.0, fy - 0.02, face_w * 1.16, 0.58 * face_h),
        D.box(jnp.abs(x) - waves, y, 0.0, fy + length / 2, face_w * 1.12, 0.05 + length / 2, 0.1),
    )
    crown = cov(y - (fy - 0.25 * face_h))
    back_alpha = cov(back_hair) * (1 - A["Bald"] * (1 - crown))
    image = D.paint(image, back_alpha, hair)
    sheen = line(D.segment(x, y, -0.55 * face_w, fy, -0.6 * face_w, fy + length), 0.012)
    image = D.paint(image, sheen * back_alpha * 0.35 * A["Straight_Hair"], D.rgb(1.0, 1.0, 1.0))
    neck_w = 0.12 + 0.05 * male

    def neck(image, x, y):
        image = D.paint(image, cov(D.box(x, y, 0.0, 0.55, neck_w, 0.25, 0.04)), skin)
        tie = A["Wearing_Necktie"]
        collar = jnp.minimum(D.segment(x, y, -neck_w, 0.64, 0.0, 0.72), D.segment(x, y, neck_w, 0.64, 0.0, 0.72))
        image = D.paint(image, line(collar, 0.025) * tie, D.rgb(0.96, 0.96, 0.96))
        blade = jnp.maximum(D.box(x, y, 0.0, 0.84, 0.06, 0.1), jnp.abs(x) * 2.2 + jnp.abs(y - 0.84) - 0.2)
        knot = D.box(x, y, 0.0, 0.74, 0.035, 0.025, 0.01)
        image = D.paint(image, cov(jnp.minimum(blade, knot)) * tie, accessory)
        chain, _ = D.parabola_band(x, y, 0.0, 0.7, neck_w + 0.05, -0.07, 0.008)
        beads = 0.6 + 0.4 * jnp.cos(x * 120.0)
        return D.paint(image, cov(chain - 0.006 * beads) * A["Wearing_Necklace"], D.rgb(0.95, 0.8, 0.3))

    image = local(image, "neck", neck)
    ear_x = a * 0.97

    def ears(image, x, y):
        shape = jnp.minimum(
            D.ellipse(x, y, ear_x, ye + 0.05, 0.055, 0.1), D.ellipse(x, y, -ear_x, ye + 0.05, 0.055, 0.1)
        )
        return D.paint(D.paint(image, cov(shape), skin), line(jnp.abs(shape), 0.004), shade)

    image = local(image, "ears", ears)

    # Second chin, face, facial hair (stubble, beard unless No_Beard, sideburns).
    chin = D.ellipse(x, y, 0.0, fy + bottom_h + 0.01, 0.17 * face_w / 0.41, 0.07)
    image = D.paint(image, cov(chin) * A["Double_Chin"], skin)
    image = D.paint(image, line(jnp.abs(chin), 0.005) * A["Double_Chin"], shade)
    face = D.superellipse(
        x, y, 0.0, fy, a, jnp.where(y < fy, 0.5 * face_h, bottom_h), jnp.where(y < fy, 2.0, jaw_power)
    )
    image = D.paint(image, cov(face), skin)
    image = D.paint(image, line(jnp.abs(face), 0.004), shade)
    lower = cov((ym - 0.13) - y) * cov(face)
    image = D.paint(image, lower * 0.35 * A["5_o_Clock_Shadow"], D.rgb(0.35, 0.37, 0.42))
    beard_top = ym - 0.03 - 0.24 * jnp.abs(x / a) ** 1.5  # from the mouth up to the sideburns
    beard = jnp.maximum(jnp.maximum(face - 0.03, beard_top - y), -D.ellipse(x, y, 0.0, ym, mouth_w + 0.02, 0.055))
    image = D.paint(image, cov(beard) * (1 - A["No_Beard"]) * 0.92, facial_hair)
    sideburn = D.box(jnp.abs(x), y, a - 0.045, ye + 0.04, 0.035, 0.12, 0.02)
    image = D.paint(image, cov(jnp.maximum(sideburn, face)) * A["Sideburns"], facial_hair)

    def cheeks(image, x, y):
        blush = jnp.minimum(
            D.ellipse(x, y, 0.24, ye + 0.17, 0.08, 0.055), D.ellipse(x, y, -0.24, ye + 0.17, 0.08, 0.055)
        )
        image = D.paint(image, cov(blush) * 0.55 * A["Rosy_Cheeks"], D.rgb(0.93, 0.45, 0.50))
        bone = D.segment(jnp.abs(x), y, face_w * 0.82, ye + 0.07, face_w * 0.55, ye + 0.19)
        image = D.paint(image, line(bone, 0.016) * 0.3 * A["High_Cheekbones"], shade * 0.9)
        ex = jnp.abs(x)  # forehead lines, crow's feet, smile folds
        wrinkles = jnp.minimum(
            D.parabola_band(x, y, 0.0, -0.33, 0.16, -0.02, 0.004)[0],
            D.parabola_band(x, y, 0.0, -0.28, 0.13, -0.02, 0.004)[0],
        )
        for dy in (-0.03, 0.04):
            wrinkles = jnp.minimum(wrinkles, D.segment(ex, y, eye_gap + 0.1, ye + 0.01, eye_gap + 0.15, ye + dy))
        wrinkles = jnp.minimum(wrinkles, D.segment(ex, y, 0.08, ye + 0.18, mouth_w + 0.03, ym + 0.02))
        return D.paint(image, line(wrinkles, 0.003) * (1 - A["Young"]), shade * 0.85)

    image = local(image, "cheeks", cheeks)

    def eyes(image, x, y):
        ex, makeup = jnp.abs(x), A["Heavy_Makeup"]
        eye_h = 0.038 * (1 - 0.55 * A["Narrow_Eyes"])
        image = D.paint(
            image, cov(D.ellipse(ex, y, eye_gap, ye - 0.025, 0.085, 0.045)) * 0.8 * makeup, D.rgb(0.5, 0.3, 0.65)
        )
        bags, _ = D.parabola_band(ex, y, eye_gap, ye + 0.055, 0.06, -0.012, 0.004)
        image = D.paint(image, line(bags, 0.002) * A["Bags_Under_Eyes"], shade * 0.8)
        eye = D.ellipse(ex, y, eye_gap, ye, 0.07, eye_h)
        image = D.paint(image, cov(eye), D.rgb(0.97, 0.97, 0.96))
        iris_r = jnp.minimum(0.028, eye_h * 1.1)
        image = D.paint(image, cov(jnp.maximum(D.ellipse(ex, y, eye_gap, ye, iris_r, iris_r), eye)), iris)
        image = D.paint(
            image, cov(D.ellipse(ex, y, eye_gap, ye, iris_r * 0.45, iris_r * 0.45)), D.rgb(0.05, 0.05, 0.05)
        )
        lid = jnp.maximum(jnp.abs(eye) - 0.002 - 0.008 * makeup, y - ye)
        image = D.paint(image, cov(lid), D.rgb(0.12, 0.08, 0.08))
        arch = -(0.012 + 0.03 * A["Arched_Eyebrows"])
        brow, _ = D.parabola_band(ex, y, eye_gap + 0.01, ye - 0.09, 0.08, arch, 0.006 + 0.012 * A["Bushy_Eyebrows"])
        image = D.paint(image, cov(brow), own_hair * 0.6)
        glasses = A["Eyeglasses"]
        lens = D.box(ex, y, eye_gap, ye, 0.085, 0.06, 0.03)
        rims = jnp.minimum(jnp.abs(lens), D.segment(x, y, -eye_gap + 0.085, ye - 0.02, eye_gap - 0.085, ye - 0.02))
        rims = jnp.minimum(rims, D.segment(ex, y, eye_gap + 0.085, ye - 0.03, face_w * 0.98, ye - 0.03))
        image = D.paint(image, cov(lens) * 0.15 * glasses, D.rgb(0.6, 0.8, 1.0))
        return D.paint(image, line(rims, 0.007) * glasses, D.rgb(0.1, 0.1, 0.12))

    image = local(image, "eyes", eyes)

    def nose(image, x, y):
        big = A["Big_Nose"]
        nose_w, tip = 0.04 * (1 + 0.9 * big), ye + 0.15 * (1 + 0.3 * big)
        depth = 0.03 * (1 + big) + 0.03 * A["Pointy_Nose"]
        curve = jnp.abs(y - (tip - depth * (jnp.abs(x) / nose_w) ** (2.0 - 1.2 * A["Pointy_Nose"])))
        image = D.paint(image, line(jnp.maximum(curve, jnp.abs(x) - nose_w), 0.004), shade * 0.8)
        nostrils = D.ellipse(jnp.abs(x), y, nose_w * 0.55, tip - 0.012, 0.012 * (1 + big), 0.007 * (1 + big))
        image = D.paint(image, cov(nostrils) * 0.7, shade * 0.6)
        return D.paint(image, line(D.segment(x, y, -0.012, ye + 0.04, -0.02, tip - 0.04), 0.003) * 0.6, shade)

    image = local(image, "nose", nose)

    def mouth(image, x, y):
        smile, opening = A["Smiling"], A["Mouth_Slightly_Open"]
        half_w, bend, gap = mouth_w * (1 + 0.22 * smile), 0.06 * (1.4 * smile - 0.4), 0.003 + 0.028 * opening
        lips, _ = D.parabola_band(x, y, 0.0, ym, half_w, bend, gap + 0.02 * (1 + 1.2 * A["Big_Lips"]))
        lip_colour = D.lerp(skin * D.rgb(0.95, 0.7, 0.7), D.rgb(0.78, 0.08, 0.16), A["Wearing_Lipstick"])
        image = D.paint(image, cov(lips + 0.02 * (x / half_w) ** 4), lip_colour)
        hole, centre = D.parabola_band(x, y, 0.0, ym, half_w * 0.92, bend, gap)
        image = D.paint(image, cov(hole), D.rgb(0.25, 0.05, 0.08))
        image = D.paint(image, cov(jnp.maximum(hole, y - centre)) * opening, D.rgb(0.96, 0.95, 0.9))
        corner = ym - bend * 2 / 3
        dimple = D.segment(jnp.abs(x), y, half_w + 0.02, corner - 0.02, half_w + 0.025, corner + 0.02)
        image = D.paint(image, line(dimple, 0.003) * smile, shade)
        moustache, _ = D.parabola_band(x, y, 0.0, ym - 0.055, mouth_w * 1.05, 0.015, 0.016)
        image = D.paint(image, cov(moustache) * A["Mustache"], facial_hair)
        return D.paint(image, cov(D.ellipse(x, y, 0.0, ym + 0.115, 0.055, 0.05)) * A["Goatee"], facial_hair)

    image = local(image, "mouth", mouth)

    # Front hair: the cap above the hairline (Bald, Receding_Hairline), bangs; hat; earrings.
    head = D.ellipse(x, y, 0.0, fy - 0.01, face_w * 1.1, 0.53 * face_h)
    recede = A["Receding_Hairline"] * (0.05 + 0.16 * (x / face_w) ** 2)
    hairline = fy - 0.36 * face_h - recede + 0.08 * (x / face_w) ** 2
    image = D.paint(image, cov(jnp.maximum(head, y - hairline)) * (1 - A["Bald"]), hair)
    fringe = jnp.maximum(head, y - (ye - 0.15 + 0.012 * jnp.sin(x * 60.0)))
    image = D.paint(image, cov(fringe) * A["Bangs"], hair)
    hat_top, hat = fy - 0.5 * face_h, A["Wearing_Hat"]
    crown_and_brim = jnp.minimum(
        D.box(x, y, 0.0, hat_top - 0.02, face_w * 1.05, 0.17, 0.08),
        D.ellipse(x, y, 0.0, hat_top + 0.13, face_w * 1.45, 0.045),
    )
    image = D.paint(image, cov(crown_and_brim) * hat, accessory * 0.8)
    image = D.paint(image, cov(D.box(x, y, 0.0, hat_top + 0.07, face_w * 1.05, 0.025)) * hat, accessory * 0.5)

    def earrings(image, x, y):
        ring = jnp.minimum(
            D.ellipse(x, y, ear_x, ye + 0.17, 0.022, 0.022), D.ellipse(x, y, -ear_x, ye + 0.17, 0.022, 0.022)
        )
        return D.paint(image, cov(ring) * A["Wearing_Earrings"], D.rgb(0.95, 0.78, 0.25))

    image = local(image, "ears", earrings)
    if label:
        text = D.text_strip(CAPTION, size, fallback=SHORT_CAPTION)
        rows = slice(size - text.shape[0], size)
        strip = D.paint(D.crop(image, rows, slice(None)), jnp.float32(0.7), D.rgb(0.0, 0.0, 0.0))
        strip = D.paint(strip, jnp.asarray(text)[None], D.rgb(1.0, 1.0, 1.0))
        image = D.paste(image, rows, slice(None), strip)
    return jnp.clip(jnp.stack(image, axis=-1), 0.0, 1.0) * 2.0 - 1.0


def render_scores(
    scores, identity, size: int = 256, label: bool = True, temperature: float = 1.0, as_uint8: bool = False
):
    """Draw the schematic of logits `scores` [B, 40] (the world's `attribute_logits`) and unit identity
    embeddings `identity` [B, D] -> images [B, size, size, 3]: float32 in [-1, 1] like a generator's
    output, or uint8 with `as_uint8`. Each feature's amount is sigmoid(logit / temperature).
    """
    scores = jnp.asarray(scores, jnp.float32)
    identity = jnp.asarray(identity, jnp.float32)
    if scores.ndim != 2 or scores.shape[1] != NUM_ATTRIBUTES:
        raise InputError(f"schematic: scores must be [B, {NUM_ATTRIBUTES}] attribute logits, got {tuple(scores.shape)}")
    if identity.ndim != 2 or identity.shape[0] != scores.shape[0] or identity.shape[1] < 1:
        raise InputError(
            f"schematic: identity must be [B={scores.shape[0]}, D] embeddings, got {tuple(identity.shape)}"
        )
    if int(size) != size or not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise ConfigError(f"schematic: size {size!r} must be an integer in [{MIN_SIZE}, {MAX_SIZE}]")
    if not float(temperature) > 0:
        raise ConfigError(f"schematic: temperature must be > 0, got {temperature!r}")
    images = _draw(scores, identity, jnp.float32(temperature), size=int(size), label=bool(label))
    return to_uint8(images) if as_uint8 else images


def to_uint8(images) -> np.ndarray:
    """float images in [-1, 1] -> uint8 [0, 255] (numpy)."""
    return np.asarray(jnp.round((jnp.clip(images, -1.0, 1.0) + 1.0) * 127.5)).astype(np.uint8)
