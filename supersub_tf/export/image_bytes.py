"""The ``image_bytes`` signature's reader: encoded files to upright, resized pixels.

A SavedModel served from bytes must decode, check and orient every file inside its
graph, with plain TensorFlow ops (the serving stack has nothing else):

* :func:`decode_batch` decodes a ``string [N]`` batch with training's decoder inside
  ``tf.data`` with ``ignore_errors()``, so **one bad file never fails the batch**: it is
  left out and reported by index; the others are decoded as if sent alone.
* :func:`header_pixels` reads the picture size from the JPEG, PNG, GIF or BMP header
  before decoding, so a decompression bomb (over :data:`MAX_PIXELS`, Pillow's refusal
  limit, the one ``predict`` and the LiteRT runtime use) is refused without decoding it.
* :func:`exif_orientation` finds the EXIF Orientation tag (JPEG APP1, PNG eXIf, WebP
  EXIF; both byte orders) and :func:`apply_orientation` applies it, the transposes of
  Pillow's ``ImageOps.exif_transpose`` that ``predict`` and the LiteRT runtime use
  (:func:`supersub_tf.export.litert_runtime.exif_upright`).
"""

from __future__ import annotations

import tensorflow as tf

from supersub_tf.data.examples import decode_image
from supersub_tf.data.pipeline import resize
from supersub_tf.export.litert_runtime import EXIF_ORIENTATION

# What the ``image_bytes`` signature does to each encoded file, as plain tf ops (so the
# graph needs only TensorFlow). Byte offsets are int64; every read is bounds-safe
# (zeros past the end), so a malformed header can only make a file invalid, never fail
# the batch.
_PAD = 16
_EXIF_PREFIX = b"Exif\0\0"
_TIFF_SHORT, _TIFF_LONG = 3, 4  # the TIFF value types an Orientation tag is written as


def _int64(value: int) -> tf.Tensor:
    """An int64 constant (``tf.where`` wants both branches of one dtype)."""
    return tf.constant(value, tf.int64)


def _raw(data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(bytes as uint8 followed by _PAD zeros, length)`` of a scalar string."""
    raw = tf.io.decode_raw(data, tf.uint8)
    return tf.concat([raw, tf.zeros([_PAD], tf.uint8)], 0), tf.size(raw, out_type=tf.int64)


def _read(raw: tf.Tensor, pos: tf.Tensor, n: int) -> tf.Tensor:
    """``n`` bytes (int64) at each offset ``pos`` (any shape -> ``[..., n]``); past the
    end, zeros."""
    index = tf.cast(pos, tf.int64)[..., None] + tf.range(n, dtype=tf.int64)
    last = tf.size(raw, out_type=tf.int64) - 1
    return tf.cast(tf.gather(raw, tf.clip_by_value(index, 0, last)), tf.int64)


def _value(data: tf.Tensor, little: bool | tf.Tensor) -> tf.Tensor:
    """The unsigned integer of the bytes ``[..., n]`` (int64), in the given byte order."""
    n = data.shape[-1]
    shifts = tf.where(little, tf.range(n, dtype=tf.int64) * 8,
                      tf.range(n - 1, -1, -1, dtype=tf.int64) * 8)
    return tf.reduce_sum(tf.bitwise.left_shift(data, shifts), axis=-1)


def _uint(raw: tf.Tensor, pos: tf.Tensor, n: int, little: bool | tf.Tensor) -> tf.Tensor:
    """The unsigned ``n``-byte integer at each offset ``pos``, in the given byte order."""
    return _value(_read(raw, pos, n), little)


def _same(data: tf.Tensor, text: bytes) -> tf.Tensor:
    """Whether the bytes ``data`` are ``text``."""
    return tf.reduce_all(tf.equal(data, tf.constant(list(text), tf.int64)))


def _is(raw: tf.Tensor, pos: tf.Tensor, text: bytes) -> tf.Tensor:
    """Whether the bytes at ``pos`` are ``text``."""
    return _same(_read(raw, pos, len(text)), text)


def _tiff_orientation(raw: tf.Tensor, start: tf.Tensor) -> tf.Tensor:
    """The Orientation of the TIFF (EXIF) block at ``start`` (after up to two
    ``Exif\\0\\0`` prefixes, as Pillow strips them): its IFD0 tag 0x0112, 1 when absent
    or not 1-8."""
    for _ in range(2):
        start += 6 * tf.cast(_is(raw, start, _EXIF_PREFIX), tf.int64)
    little, big = _is(raw, start, b"II*\0"), _is(raw, start, b"MM\0*")
    ifd = start + _uint(raw, start + 4, 4, little)
    count = _uint(raw, ifd, 2, little)
    entries = _read(raw, ifd + 2 + 12 * tf.range(count), 12)  # [count, 12]
    tags, kinds = _value(entries[:, 0:2], little), _value(entries[:, 2:4], little)
    values = tf.where(kinds == _TIFF_SHORT, _value(entries[:, 8:10], little),
                      tf.where(kinds == _TIFF_LONG, _value(entries[:, 8:12], little),
                               tf.zeros_like(kinds)))
    found = tf.concat([tf.boolean_mask(values, tags == EXIF_ORIENTATION),
                       tf.ones([1], tf.int64)], 0)[0]  # the first one, else 1
    ok = (little | big) & (found >= 1) & (found <= 8)
    return tf.where(ok, tf.cast(found, tf.int32), 1)


def _walk(raw: tf.Tensor, length: tf.Tensor, start: int, head: int, step) -> tf.Tensor:
    """Offset of the EXIF block found by walking a file's segments from ``start``
    (-1 when none): ``step(pos, the head bytes at pos) -> (next pos, EXIF offset or -1,
    stop)``, one read per segment."""
    def body(pos, found, done):
        after, here, stop = step(pos, _read(raw, pos, head))
        return after, here, stop | (here >= 0) | (after <= pos)

    _, found, _ = tf.while_loop(
        lambda pos, found, done: ~done & (pos + 8 <= length), body,
        (tf.constant(start, tf.int64), tf.constant(-1, tf.int64), tf.constant(False)))
    return found


def _jpeg_exif(raw: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
    """The first ``APP1 Exif`` segment's data among the APPn and COM segments that
    follow SOI, where the Exif standard puts it (Pillow would also look past the
    image's tables, where no conforming writer puts it)."""
    def step(pos, head):
        marker = head[1]
        fill = marker == 0xFF                     # fill bytes before a marker
        app = ((marker >= 0xE0) & (marker <= 0xEF)) | (marker == 0xFE)
        size = _value(head[2:4], False)
        stop = (head[0] != 0xFF) | ~(fill | app) | (~fill & (size < 2))
        exif = (marker == 0xE1) & _same(head[4:10], _EXIF_PREFIX) & ~stop
        after = pos + tf.where(fill, _int64(1), 2 + size)
        return after, tf.where(exif, pos + 4, _int64(-1)), stop
    return _walk(raw, length, 2, 10, step)


def _png_exif(raw: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
    """The ``eXIf`` chunk's data (anywhere before ``IEND``, as Pillow reads it)."""
    def step(pos, head):
        exif = _same(head[4:8], b"eXIf")
        return (pos + 12 + _value(head[0:4], False), tf.where(exif, pos + 8, _int64(-1)),
                _same(head[4:8], b"IEND"))
    return _walk(raw, length, 8, 8, step)


def _webp_exif(raw: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
    """The RIFF ``EXIF`` chunk's data."""
    def step(pos, head):
        size = _value(head[4:8], True)
        return (pos + 8 + size + size % 2, tf.where(_same(head[0:4], b"EXIF"), pos + 8,
                                                    _int64(-1)), tf.constant(False))
    return _walk(raw, length, 12, 8, step)


def exif_orientation(data: tf.Tensor) -> tf.Tensor:
    """The EXIF orientation (int32, 1-8; 1 when absent) of one encoded file, in the graph.

    Read where Pillow reads it: a JPEG's first ``APP1 Exif`` segment, a PNG's ``eXIf``
    chunk, a WebP's ``EXIF`` chunk; the IFD0 Orientation tag (0x0112) in either byte
    order. Two departures, both from files no camera writes: Pillow also takes an XMP
    ``tiff:Orientation`` when no EXIF tag exists, and finds an ``APP1`` placed after a
    JPEG's tables; this reads neither.
    """
    raw, length = _raw(data)
    start = tf.case(
        [(_is(raw, 0, b"\xff\xd8\xff"), lambda: _jpeg_exif(raw, length)),
         (_is(raw, 0, b"\x89PNG\r\n\x1a\n"), lambda: _png_exif(raw, length)),
         (_is(raw, 0, b"RIFF") & _is(raw, 8, b"WEBP"), lambda: _webp_exif(raw, length))],
        default=lambda: tf.constant(-1, tf.int64), exclusive=True)
    return tf.cond(start >= 0, lambda: _tiff_orientation(raw, start),
                   lambda: tf.constant(1, tf.int32))


def apply_orientation(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """``[H, W, C]`` pixels stored with an EXIF ``orientation`` (1-8), turned upright:
    the transposes of ``PIL.ImageOps.exif_transpose``."""
    transpose = lambda: tf.transpose(image, [1, 0, 2])  # noqa: E731
    return tf.switch_case(orientation - 1, [
        lambda: image,                                   # 1: upright
        lambda: tf.reverse(image, [1]),                  # 2: mirrored
        lambda: tf.reverse(image, [0, 1]),               # 3: rotated 180
        lambda: tf.reverse(image, [0]),                  # 4: upside-down mirror
        transpose,                                       # 5: transposed
        lambda: tf.reverse(transpose(), [1]),            # 6: 90 degrees clockwise to view
        lambda: tf.reverse(transpose(), [0, 1]),         # 7: transverse
        lambda: tf.reverse(transpose(), [0])])           # 8: 90 degrees anticlockwise


def header_pixels(data: tf.Tensor) -> tf.Tensor:
    """Pixels (int64) a JPEG, PNG, GIF or BMP header announces, read before decoding;
    0 for other formats (checked once decoded)."""
    raw, _ = _raw(data)
    jpeg = _is(raw, 0, b"\xff\xd8\xff")
    bmp_height = _uint(raw, 22, 4, True)
    return tf.case(
        [(jpeg, lambda: tf.reduce_prod(tf.io.extract_jpeg_shape(data, tf.int64)[:2])),
         (_is(raw, 0, b"\x89PNG\r\n\x1a\n"),
          lambda: _uint(raw, 16, 4, False) * _uint(raw, 20, 4, False)),
         (_is(raw, 0, b"GIF8"), lambda: _uint(raw, 6, 2, True) * _uint(raw, 8, 2, True)),
         (_is(raw, 0, b"BM"),     # a top-down BMP stores its height negated
          lambda: _uint(raw, 18, 4, True) * tf.where(bmp_height >= 2 ** 31,
                                                     2 ** 32 - bmp_height, bmp_height))],
        default=lambda: tf.constant(0, tf.int64), exclusive=True)


MAX_PIXELS = 178_956_970
"""The largest picture ``image_bytes`` answers, in pixels: Pillow's decompression-bomb
limit (``2 * PIL.Image.MAX_IMAGE_PIXELS``), which ``predict`` and the LiteRT runtime's
reader apply, so all three refuse the same pictures; it also keeps one request from
decoding gigabytes."""


def _prepare(data: tf.Tensor, size: int) -> tf.Tensor:
    """One file as the model takes it, or an error: training's decoder
    (:func:`supersub_tf.data.examples.decode_image`: RGB, a GIF's first frame) unless
    the header announces over :data:`MAX_PIXELS` pixels, the EXIF orientation, a check
    of the decoded size, then :func:`supersub_tf.data.pipeline.resize`."""
    def at_most(pixels: tf.Tensor) -> tf.Operation:
        return tf.debugging.assert_less_equal(pixels, tf.constant(MAX_PIXELS, tf.int64),
                                              message="too many pixels")

    with tf.control_dependencies([at_most(header_pixels(data))]):
        image = apply_orientation(decode_image(data), exif_orientation(data))
    with tf.control_dependencies([at_most(tf.reduce_prod(tf.shape(image, tf.int64)[:2]))]):
        return resize(image, size)


def decode_batch(image_bytes: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The files of a ``string [N]`` batch that are valid images, upright and resized.

    A file is valid when training's decoder reads it and it has at most
    :data:`MAX_PIXELS` pixels (read from the header before decoding for JPEG, PNG, GIF
    and BMP). Decoding errors cannot be caught by graph control flow, but ``tf.data``
    can drop the elements that raise (``ignore_errors``), so one bad file never fails
    the others.

    Returns:
        ``(kept, images)``: the int32 indices ``[M]`` of the valid files, in order, and
        their pixels ``uint8 [M, size, size, 3]`` (EXIF orientation applied, then
        :func:`supersub_tf.data.pipeline.resize`).
    """
    n = tf.size(image_bytes)
    valid = (tf.data.Dataset.from_tensor_slices((tf.range(n), image_bytes))
             .map(lambda i, data: (i, _prepare(data, size)),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
             .ignore_errors())
    # One last element that always exists, so that one batch holds them all, even none.
    end = tf.data.Dataset.from_tensors((tf.constant(-1), tf.zeros([size, size, 3], tf.uint8)))
    kept, images = valid.concatenate(end).batch(tf.cast(n, tf.int64) + 1).get_single_element()
    return kept[:-1], images[:-1]


