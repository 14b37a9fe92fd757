"""Draw the two foreign images of notebook 06: made here, in no dataset.

    python notebooks/foreign/draw.py

Both are drawn light on black like Fashion-MNIST's garments, at 4x and then
shrunk to 64 px, which softens the edges as a scan would. sneaker.png is a
shoe a person would call a Sneaker; cup.png is an object of no class.
"""

from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SIZE, SCALE = 64, 4


def canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A black grey-scale canvas at SCALE times the final size."""
    image = Image.new("L", (SIZE * SCALE, SIZE * SCALE), 0)
    return image, ImageDraw.Draw(image)


def sneaker() -> Image.Image:
    """A low shoe in profile, toe to the right as in Fashion-MNIST: upper, rounded toe, sole, laces."""
    image, draw = canvas()
    draw.polygon([(14, 96), (30, 80), (64, 74), (100, 88), (150, 110), (206, 124), (206, 160), (14, 160)], fill=195)
    draw.ellipse((176, 118, 244, 164), fill=195)  # the toe cap
    draw.rounded_rectangle((8, 156, 248, 182), radius=11, fill=240)  # the sole
    for x in range(96, 176, 16):  # laces, darker
        draw.line((x, 104 + (x - 96) // 3, x + 14, 94 + (x - 96) // 3), fill=105, width=5)
    draw.line((20, 148, 240, 150), fill=140, width=4)  # where the upper meets the sole
    return image.resize((SIZE, SIZE), Image.LANCZOS)


def cup() -> Image.Image:
    """A mug with a handle and steam: light on black, but no garment, shoe or bag."""
    image, draw = canvas()
    draw.rounded_rectangle((56, 90, 176, 220), radius=14, fill=215)  # the body
    draw.ellipse((160, 116, 226, 190), outline=215, width=16)  # the handle
    draw.ellipse((56, 80, 176, 102), fill=150)  # the rim, seen from above
    for x in (84, 116, 148):  # steam
        draw.arc((x - 10, 30, x + 10, 60), 90, 270, fill=170, width=6)
        draw.arc((x - 10, 54, x + 10, 80), 270, 90, fill=170, width=6)
    return image.resize((SIZE, SIZE), Image.LANCZOS)


if __name__ == "__main__":
    for name, draw_it in (("sneaker", sneaker), ("cup", cup)):
        draw_it().save(HERE / f"{name}.png", optimize=True)
