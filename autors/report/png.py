"""PNG bytes from a small RGB(A) array, and a `data:` URI for inline `<img>` tags.

The report embeds its pictures (thumbnails) in the page itself; a few lines of zlib avoid
matplotlib's figure machinery for what is only an array of pixels.
"""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np


def encode_png(image: np.ndarray) -> bytes:
    """PNG of a uint8 array [H, W, 3] (RGB) or [H, W, 4] (RGBA)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected uint8 [H, W, 3|4], got {image.dtype} {image.shape}")
    h, w, c = image.shape
    # every scanline starts with filter type 0 (none)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), image.reshape(h, w * c)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", w, h, 8, 6 if c == 4 else 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 9)) + chunk(b"IEND", b""))


def data_uri(png: bytes) -> str:
    """`data:image/png;base64,...` for an `<img src>` (no file beside the page)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
