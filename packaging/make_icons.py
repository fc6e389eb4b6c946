"""Draw the app icon and write it in the formats the installers need.

    python packaging/make_icons.py            # writes resources/icons/empanada-desktop.{png,ico,icns}

The icon is drawn here, in code, so that it has no licence question and can be redrawn at any
size: a mitochondrion (an orange capsule with wavy cristae) on a dark blue rounded square, with a
thin outline around it standing for a predicted instance mask. The outputs are committed; run
this again only after changing the drawing.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
ICON_DIR = ROOT / "resources" / "icons"
NAME = "empanada-desktop"

BACKGROUND = (24, 42, 74, 255)
MEMBRANE = (236, 120, 48, 255)
MATRIX = (250, 176, 92, 255)
CRISTAE = (178, 66, 28, 255)
MASK_OUTLINE = (120, 230, 200, 255)


def draw_icon(size: int = 1024) -> Image.Image:
    """Return the icon as an RGBA image of ``size`` x ``size`` pixels."""
    scale = 4  # supersample, then downsize: smooth edges without an anti-aliasing library
    canvas = size * scale
    image = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    margin = canvas * 0.04
    draw.rounded_rectangle(
        (margin, margin, canvas - margin, canvas - margin), radius=canvas * 0.2, fill=BACKGROUND
    )

    # The mitochondrion: a capsule tilted by drawing it on its own layer and rotating it.
    layer = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 0))
    layer_draw = ImageDraw.Draw(layer)
    cx, cy = canvas / 2, canvas / 2
    half_w, half_h = canvas * 0.36, canvas * 0.17
    box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
    outline_pad = canvas * 0.035
    layer_draw.rounded_rectangle(
        (box[0] - outline_pad, box[1] - outline_pad, box[2] + outline_pad, box[3] + outline_pad),
        radius=half_h + outline_pad,
        outline=MASK_OUTLINE,
        width=int(canvas * 0.014),
    )
    layer_draw.rounded_rectangle(box, radius=half_h, fill=MEMBRANE)
    inner = canvas * 0.025
    layer_draw.rounded_rectangle(
        (box[0] + inner, box[1] + inner, box[2] - inner, box[3] - inner),
        radius=half_h - inner,
        fill=MATRIX,
    )
    # Cristae: folds of the inner membrane, alternating from the top and the bottom.
    folds = 6
    width = int(canvas * 0.022)
    for index in range(folds):
        x = box[0] + half_w * 2 * (index + 1) / (folds + 1)
        from_top = index % 2 == 0
        y0 = box[1] + inner if from_top else box[3] - inner
        length = half_h * 1.25
        points = []
        for step in range(21):
            t = step / 20
            y = y0 + (length * t if from_top else -length * t)
            points.append((x + math.sin(t * math.pi * 2) * canvas * 0.012, y))
        layer_draw.line(points, fill=CRISTAE, width=width, joint="curve")
    layer = layer.rotate(30, resample=Image.BICUBIC, center=(cx, cy))
    shadow = layer.split()[3].filter(ImageFilter.GaussianBlur(canvas * 0.012))
    image.paste((0, 0, 0, 90), (int(canvas * 0.01), int(canvas * 0.015)), shadow)
    image.alpha_composite(layer)
    return image.resize((size, size), Image.LANCZOS)


def write_icons(out_dir: Path = ICON_DIR) -> list[Path]:
    """Write the PNG (256 px, for Linux and Qt), ICO (Windows) and ICNS (macOS) icons."""
    out_dir.mkdir(parents=True, exist_ok=True)
    big = draw_icon(1024)
    png = out_dir / f"{NAME}.png"
    big.resize((256, 256), Image.LANCZOS).save(png, optimize=True)
    ico = out_dir / f"{NAME}.ico"
    big.save(ico, sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)])
    icns = out_dir / f"{NAME}.icns"
    # 512 px is plenty for the Dock and Finder and keeps the committed file small.
    big.resize((512, 512), Image.LANCZOS).save(icns)
    return [png, ico, icns]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ICON_DIR, help="output folder")
    args = parser.parse_args()
    for path in write_icons(args.out):
        print(f"{path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
