"""Writes the tiny image fixtures of DatasetTests (Debian python3-pil): a CMYK JPEG, a WebP and a BMP, 8x6 each."""
import os
from PIL import Image
out = os.path.join(os.path.dirname(__file__), "images", "colours")
os.makedirs(out, exist_ok=True)
Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(os.path.join(out, "red_cmyk.jpg"), quality=95)  # pure red
Image.new("RGB", (8, 6), (10, 200, 30)).save(os.path.join(out, "green.webp"))
Image.new("RGB", (8, 6), (10, 20, 230)).save(os.path.join(out, "blue.bmp"))
