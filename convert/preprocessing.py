"""The input preprocessing of every output file, as data, and the one image pipeline that implements it.

slim's evaluation (``inception_preprocessing.preprocess_for_eval``) decodes an image to float in [0, 1],
keeps its central 87.5 %, resizes it bilinearly with TF1 ``resize_bilinear`` semantics (no half-pixel
centres) and normalises it, ``(x - 0.5) / 0.5``. What differs between the files is only the form of the
input the model takes (:attr:`Preprocessing.form`):

* ``unit``: float32 in [-1, 1]: V1/V2 ``.h5``, every twin ``.keras``, V3 ``.h5`` built with
  ``include_preprocessing=False``;
* ``pixels``: float32 in [0, 255]: V3 ``.h5`` under keras.applications' default (its ``Rescaling`` layer
  normalises), computed as the linear map of the ``unit`` values onto [0, 255]
  (:func:`convert.families.base.to_keras_input`, as ``convert evaluate`` feeds the model);
* ``uint8``: a ``.tflite``'s quantized input, ``round(unit / scale) + zero_point`` clipped to 0..255, as
  TFLite's QUANTIZE does, with the file's own scale and zero point.

:meth:`Preprocessing.apply` is the pipeline (TF ops, on one image or a batch of one size); ``load``,
``__call__``, ``layer``, ``convert evaluate --preprocess slim`` and parity's image inputs all run it.
Importing this module imports neither TensorFlow nor Keras.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .env import quiet_tf
from .errors import ConversionError
from .families import FAMILIES
from .families.base import Family, to_keras_input

CROP_FRACTION = 0.875  # inception_preprocessing.preprocess_for_eval's central_fraction
INTERPOLATIONS = ("bilinear_tf1",)  # tf.compat.v1.image.resize_bilinear, align_corners=False, no half-pixel centres
FORMS = {"unit": (-1.0, 1.0), "pixels": (0.0, 255.0), "uint8": (0.0, 255.0)}  # form -> the values' range
OUTPUTS = ("h5", "twin", "tflite")  # the kinds of output file
SLIM_MEAN = SLIM_STD = (0.5, 0.5, 0.5)
_SUFFIXES = {".h5": "h5", ".keras": "twin", ".tflite": "tflite"}

quiet_tf()  # resize_bilinear's deprecation notice


class PreprocessingError(ConversionError):
    """A bad preprocessing request (an unknown file, variant or field); the message names it and what is valid."""


def _triple(name: str, value: Any) -> tuple[float, float, float]:
    values = (value,) * 3 if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3:
        raise PreprocessingError(f"preprocessing field {name!r} must be a number or three numbers (R, G, B), "
                                 f"got {value!r}")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class Preprocessing:
    """One model input's preprocessing: an image (uint8, any size) -> exactly what the model expects.

    ``mean`` and ``std`` are the normalisation on [0, 1] that makes the ``unit`` values; ``form`` the
    values the file takes (``unit``, ``pixels`` or ``uint8``: see the module docstring); ``scale`` and
    ``zero_point`` the uint8 mapping (``uint8`` only): real = (q - zero_point) * scale.
    """

    rows: int
    cols: int
    crop_fraction: float = CROP_FRACTION
    interpolation: str = "bilinear_tf1"
    mean: tuple[float, float, float] = SLIM_MEAN
    std: tuple[float, float, float] = SLIM_STD
    form: str = "unit"
    scale: float | None = None
    zero_point: int | None = None

    def __post_init__(self):
        for name in ("rows", "cols"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise PreprocessingError(f"preprocessing {name} must be a positive integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        if not isinstance(self.crop_fraction, (int, float)) or not 0.0 < self.crop_fraction <= 1.0:
            raise PreprocessingError(f"preprocessing crop_fraction must be in (0, 1], got {self.crop_fraction!r}")
        object.__setattr__(self, "crop_fraction", float(self.crop_fraction))
        if self.interpolation not in INTERPOLATIONS:
            raise PreprocessingError(f"preprocessing interpolation {self.interpolation!r} is not one this "
                                     f"pipeline runs; valid: {', '.join(INTERPOLATIONS)}")
        object.__setattr__(self, "mean", _triple("mean", self.mean))
        object.__setattr__(self, "std", _triple("std", self.std))
        if any(s <= 0 for s in self.std):
            raise PreprocessingError(f"preprocessing std must be positive, got {self.std!r}")
        if self.form not in FORMS:
            raise PreprocessingError(f"preprocessing form {self.form!r}; valid: {', '.join(FORMS)}")
        if self.form == "pixels" and (self.mean, self.std) != (SLIM_MEAN, SLIM_STD):
            raise PreprocessingError("preprocessing form 'pixels' is the [-1, 1] values mapped onto [0, 255] "
                                     "(a model that rescales x / 127.5 - 1 itself): it needs mean and std 0.5, "
                                     f"got mean {self.mean}, std {self.std}")
        quantized = self.scale is not None or self.zero_point is not None
        if self.form == "uint8":
            if self.scale is None or self.zero_point is None or not float(self.scale) > 0 \
                    or not 0 <= int(self.zero_point) <= 255:
                raise PreprocessingError(f"preprocessing form 'uint8' needs scale > 0 and zero_point in 0..255, "
                                         f"got scale {self.scale!r}, zero_point {self.zero_point!r}")
            object.__setattr__(self, "scale", float(self.scale))
            object.__setattr__(self, "zero_point", int(self.zero_point))
        elif quantized:
            raise PreprocessingError(f"scale and zero_point belong to form 'uint8' only (form {self.form!r})")

    # ------------------------------------------------------------------------------------------ constructors
    @classmethod
    def for_input(cls, rows: int, cols: int | None = None, *, family: str | Family = "v2", output: str = "h5",
                  include_preprocessing: bool = True, scale: float | None = None,
                  zero_point: int | None = None) -> Preprocessing:
        """A model of ``family`` (a key such as ``"v3"``, or a Family) taking ``rows`` x ``cols`` inputs (cols
        defaults to rows): the ``output`` file's form (``h5``: the keras.applications model's input range,
        V3 [0, 255] unless ``include_preprocessing=False``; ``twin``: [-1, 1]; ``tflite``: uint8 with
        ``scale`` and ``zero_point``). For the manifest's variants and for user checkpoints alike."""
        fam = _family(family)
        if output not in OUTPUTS:
            raise PreprocessingError(f"unknown output kind {output!r}; valid: {', '.join(OUTPUTS)}")
        if output == "tflite":
            return cls(rows, rows if cols is None else cols, form="uint8", scale=scale, zero_point=zero_point)
        takes = tuple(fam.keras_input_range) if output == "h5" and include_preprocessing else FORMS["unit"]
        form = next((f for f in ("unit", "pixels") if FORMS[f] == takes), None)
        if form is None:
            raise PreprocessingError(f"family {fam.key}'s Keras input range {fam.keras_input_range} is no form "
                                     f"this pipeline makes ({', '.join(f'{k} {v}' for k, v in FORMS.items())})")
        return cls(rows, rows if cols is None else cols, form=form)

    @classmethod
    def for_variant(cls, variant, output: str = "h5", include_preprocessing: bool = True,
                    quant=None) -> Preprocessing:
        """A manifest variant's ``output`` file (see :meth:`for_input`); ``quant``: a ``.tflite``'s
        :class:`~convert.quant.tflite.InputQuant` (for ``output="tflite"``)."""
        scale, zero_point = (None, None) if quant is None else (quant.scale, quant.zero_point)
        return cls.for_input(variant.rows, variant.rows, family=variant.family, output=output,
                             include_preprocessing=include_preprocessing, scale=scale, zero_point=zero_point)

    @classmethod
    def for_tflite(cls, path: str | Path, base: Preprocessing | None = None) -> Preprocessing:
        """A uint8 ``.tflite``'s input, read from the file (its input size and quantization, through
        :func:`convert.quant.tflite.input_quant`); crop and normalisation as ``base`` (default slim's)."""
        import numpy as np

        from .quant.tflite import TensorDetail, TfliteInputError, input_quant, interpreter

        try:
            detail = TensorDetail.of(interpreter(path).get_input_details()[0])
            if detail.dtype == np.float32 and not detail.scale:  # a float .tflite (a user checkpoint's)
                if len(detail.shape) != 4 or detail.shape[3] != 3:
                    raise PreprocessingError(f"{path}: input shape {list(detail.shape)} is not [1, rows, cols, 3]")
                base = base or cls(detail.shape[1], detail.shape[2])
                return dataclasses.replace(base, rows=detail.shape[1], cols=detail.shape[2], form="unit",
                                           scale=None, zero_point=None)
            quant = input_quant(path)
        except TfliteInputError as exc:
            raise PreprocessingError(str(exc)) from None
        if len(quant.shape) != 4 or quant.shape[3] != 3:
            raise PreprocessingError(f"{path}: input shape {list(quant.shape)} is not [1, rows, cols, 3]")
        base = base or cls(quant.shape[1], quant.shape[2])
        return dataclasses.replace(base, rows=quant.shape[1], cols=quant.shape[2], form="uint8",
                                   scale=quant.scale, zero_point=quant.zero_point)

    # ------------------------------------------------------------------------------------------ data
    @property
    def input_range(self) -> tuple[float, float]:
        """The range of the values the model takes: [-1, 1], [0, 255], or the uint8 codes 0..255."""
        return FORMS[self.form]

    @property
    def dtype(self) -> str:
        return "uint8" if self.form == "uint8" else "float32"

    def with_form(self, form: str) -> Preprocessing:
        """The same pipeline delivering another float form (``unit`` or ``pixels``)."""
        if form not in ("unit", "pixels"):
            raise PreprocessingError(f"with_form takes 'unit' or 'pixels' (a uint8 form needs the file's "
                                     f"quantization: for_tflite), got {form!r}")
        return dataclasses.replace(self, form=form, scale=None, zero_point=None)

    def to_json(self) -> dict:
        """The machine-readable form (a sidecar's ``preprocessing`` entry); ``input_range`` and ``dtype``
        are derived, written for readers that do not know the forms."""
        return {"rows": self.rows, "cols": self.cols, "crop_fraction": self.crop_fraction,
                "interpolation": self.interpolation, "mean": list(self.mean), "std": list(self.std),
                "form": self.form, "input_range": list(self.input_range), "dtype": self.dtype,
                "scale": self.scale, "zero_point": self.zero_point}

    @classmethod
    def from_json(cls, data: Any) -> Preprocessing:
        if not isinstance(data, dict):
            raise PreprocessingError(f"a preprocessing entry must be a JSON object, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [k for k in ("rows", "cols", "form") if k not in data]
        unknown = sorted(set(data) - set(names) - {"input_range", "dtype"})
        if missing or unknown:
            raise PreprocessingError(f"preprocessing entry: missing {missing or 'nothing'}, unknown {unknown or 'nothing'} "
                                     f"(fields: {', '.join(names)})")
        pre = cls(**{k: data[k] for k in names if k in data})
        for derived in ("input_range", "dtype"):
            stated = data.get(derived)
            actual = list(pre.input_range) if derived == "input_range" else pre.dtype
            if stated is not None and stated != actual:
                raise PreprocessingError(f"preprocessing entry: {derived} {stated!r} contradicts form "
                                         f"{pre.form!r} ({actual!r})")
        return pre

    def describe(self) -> str:
        """One sentence for a model card."""
        mean, std = (f"{v[0]:g}" if len(set(v)) == 1 else str(list(v)) for v in (self.mean, self.std))
        steps = (f"decode to RGB in [0, 1], central crop of {self.crop_fraction:.1%}, bilinear resize to "
                 f"{self.rows} x {self.cols} (TF1 resize_bilinear: no half-pixel centres), (x - {mean}) / {std}")
        if self.form == "unit":
            return f"{steps}: float32 in [-1, 1]"
        if self.form == "pixels":
            return f"{steps}, mapped onto [0, 255] (x + 1) * 127.5: float32 pixels the model rescales itself"
        return (f"{steps}, quantized round(x / {self.scale:.7g}) + {self.zero_point} clipped to 0..255: "
                f"uint8, as the file's input quantization")

    # ------------------------------------------------------------------------------------------ the pipeline
    def apply(self, images):
        """The pipeline on a uint8 tensor [h, w, 3] or [n, h, w, 3] (one size): convert to [0, 1]
        (``tf.image.convert_image_dtype``), ``tf.image.central_crop``, ``tf.compat.v1.image.resize_bilinear``
        (``align_corners=False, half_pixel_centers=False``) to rows x cols, ``(x - mean) / std``, then the
        form. TF ops only: it runs eagerly, in ``tf.data`` and in a Keras layer."""
        import tensorflow as tf

        images = tf.convert_to_tensor(images)
        if images.dtype != tf.uint8 or images.shape.rank not in (3, 4):
            raise PreprocessingError(f"the pipeline takes uint8 images [h, w, 3] or [n, h, w, 3], got "
                                     f"{images.dtype.name} {images.shape}")
        single = images.shape.rank == 3
        x = tf.image.convert_image_dtype(images[None] if single else images, tf.float32)
        if self.crop_fraction < 1.0:
            x = tf.image.central_crop(x, central_fraction=self.crop_fraction)
        x = tf.compat.v1.image.resize_bilinear(x, [self.rows, self.cols], align_corners=False,
                                               half_pixel_centers=False)
        x = (x - tf.constant(self.mean, tf.float32)) / tf.constant(self.std, tf.float32)
        if self.form == "pixels":
            x = to_keras_input(x, FORMS["pixels"])
        elif self.form == "uint8":  # as InputQuant.to_uint8 and TFLite's QUANTIZE
            x = tf.cast(tf.clip_by_value(tf.round(x / np.float32(self.scale)) + self.zero_point, 0, 255), tf.uint8)
        return x[0] if single else x

    def load(self, path: str | Path) -> np.ndarray:
        """One image file (JPEG, PNG, GIF, BMP; grey and RGBA become RGB) -> (rows, cols, 3), float32
        (``uint8`` form: uint8)."""
        data = Path(path).read_bytes()
        return self.apply(decode(data, str(path))).numpy()

    def __call__(self, images) -> np.ndarray:
        """uint8 images (H x W x 3 arrays of any sizes, a uint8 [n, h, w, 3] array, or image file paths;
        H x W or H x W x 1 grey and H x W x 4 RGBA arrays as decoding treats them) -> one batch
        [n, rows, cols, 3]."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            return self.apply(_as_rgb_tensor(images)).numpy()
        if isinstance(images, (str, Path, np.ndarray)):
            raise PreprocessingError("Preprocessing() takes a list of images or a 4-D batch; for one image "
                                     "file use .load(path), for one array pass [array]")
        out = [self.load(x) if isinstance(x, (str, Path)) else self.apply(_as_rgb_tensor(x)).numpy()
               for x in images]
        if not out:
            return np.zeros((0, self.rows, self.cols, 3), self.dtype)
        return np.stack(out)

    def layer(self, **kwargs):
        """The pipeline as a Keras layer (TF backend): uint8 images [n, h, w, 3] of one size in, this
        preprocessing's output out; serializable (``import convert`` registers it with Keras)."""
        return layer_class()(self.to_json(), **kwargs)


LAYER_PACKAGE = "mobilenet_preprocessing"
_layer_class = None


def layer_class():
    """The Keras layer class of :meth:`Preprocessing.apply` (``mobilenet_preprocessing>SlimPreprocessing``),
    defined and registered with Keras on first use: this module does not import Keras
    (:mod:`convert.quant.keras_hook` calls this when Keras is imported, so ``load_model`` finds it)."""
    global _layer_class
    if _layer_class is not None:
        return _layer_class
    import keras

    @keras.saving.register_keras_serializable(package=LAYER_PACKAGE)
    class SlimPreprocessing(keras.layers.Layer):
        """uint8 images [n, h, w, 3] (one size per batch) -> the model input its :class:`Preprocessing`
        describes. Needs the TensorFlow backend (the pipeline is TF ops)."""

        def __init__(self, preprocessing: dict, **kwargs):
            if keras.backend.backend() != "tensorflow":
                raise PreprocessingError(f"SlimPreprocessing runs TF ops: it needs Keras' tensorflow backend, "
                                         f"not {keras.backend.backend()!r}")
            super().__init__(**kwargs)
            self.preprocessing = Preprocessing.from_json(preprocessing)

        def call(self, images):
            return self.preprocessing.apply(images)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], self.preprocessing.rows, self.preprocessing.cols, 3)

        def get_config(self):
            return {**super().get_config(), "preprocessing": self.preprocessing.to_json()}

    _layer_class = SlimPreprocessing
    return _layer_class


# ---------------------------------------------------------------------------------------------- images
def decode(data: bytes, name: str = "<bytes>"):
    """Encoded image bytes -> a uint8 RGB tensor [h, w, 3] (TF's default decoding, as slim's evaluation reads)."""
    import tensorflow as tf

    try:
        return tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    except tf.errors.InvalidArgumentError:
        raise PreprocessingError(f"cannot decode image {name}: not a JPEG, PNG, GIF or BMP file") from None


def _as_rgb_tensor(image):
    """A uint8 array as RGB: grey (H x W, H x W x 1) repeated, RGBA's alpha dropped, as ``decode_image`` does."""
    import tensorflow as tf

    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise PreprocessingError(f"images must be uint8 (0..255), got {a.dtype}; decode files with .load(path)")
    channels = a.shape[-1] if a.ndim >= 3 else 1
    if a.ndim not in (2, 3, 4) or channels not in (1, 3, 4) or 0 in a.shape:
        raise PreprocessingError(f"an image must be H x W, H x W x 1, 3 or 4 uint8 (grey, RGB, RGBA), got shape "
                                 f"{list(a.shape)}")
    t = tf.constant(a[..., None] if a.ndim == 2 else a)
    if channels == 1:
        return tf.image.grayscale_to_rgb(t)
    return t[..., :3]


# ---------------------------------------------------------------------------------------------- lookup
def _family(family: str | Family) -> Family:
    if isinstance(family, Family):
        return family
    if family not in FAMILIES:
        raise PreprocessingError(f"unknown family {family!r}; valid: {', '.join(FAMILIES)}")
    return FAMILIES[family]


def _outputs(variant) -> dict[str, str]:
    """A manifest variant's output file names -> their kind."""
    fam = variant.family
    names = {variant.keras_weights: "h5", variant.keras_weights_no_top: "h5"}
    if fam.quantized:
        names.update({fam.twin_file(variant): "twin", fam.tflite_file(variant): "tflite"})
    return names


def _variant_of_file(name: str):
    from .manifest import default_manifest

    return next((v for v in default_manifest() if name in _outputs(v)), None)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PreprocessingError(f"{path} is not a readable sidecar (JSON): {exc}") from None


def _names_file(doc: Any, name: str) -> bool:
    if not isinstance(doc, dict) or "variant" not in doc:
        return False
    quant = doc.get("quant") if isinstance(doc.get("quant"), dict) else {}
    return any(isinstance(files, dict) and name in files for files in (doc.get("files"), quant.get("files")))


def _sidecar_of(path: Path, variant) -> tuple[Path, Any] | None:
    """The sidecar next to an output file: the variant's (named after its top .h5), else ``<stem>.json``,
    else any JSON in the folder whose ``files`` (or ``quant.files``) list the file."""
    folder = path.parent
    candidates = [folder / (Path(variant.keras_weights).stem + ".json")] if variant is not None else []
    candidates += [path.with_suffix(".json"), folder / (path.stem.removesuffix("_no_top") + ".json")]
    for c in dict.fromkeys(candidates):
        if c.is_file():
            doc = _read_json(c)
            if _names_file(doc, path.name) or variant is not None:
                return c, doc
    for c in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(c.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if _names_file(doc, path.name):
            return c, doc
    return None


def _from_sidecar(doc: Any, where: Path, name: str | None, kind: str, include_preprocessing: bool) -> Preprocessing:
    """The preprocessing a sidecar gives an output file (``name``; None: its .h5): the ``preprocessing``
    field's entry for it when there is one, else derived from its variant (or family and rows)."""
    if not isinstance(doc, dict) or "variant" not in doc:
        raise PreprocessingError(f"{where} is not a sidecar of this converter (no 'variant' section)")
    field = doc.get("preprocessing")
    if isinstance(field, dict):
        key = next((k for k in field if k.endswith(".h5")), None) if name is None else (name if name in field else None)
        if key is not None:
            pre = Preprocessing.from_json(field[key])
            return pre.with_form("unit") if pre.form == "pixels" and not include_preprocessing else pre
    from .manifest import UnknownVariantError, resolve

    try:
        variant = resolve(doc["variant"])
        return Preprocessing.for_variant(variant, kind, include_preprocessing)
    except UnknownVariantError:  # a user checkpoint's conversion: the sidecar states family and input size
        family, rows, cols = doc.get("family"), doc.get("rows"), doc.get("cols", doc.get("rows"))
        if family is None or rows is None:
            raise PreprocessingError(f"{where}: variant {doc['variant']!r} is not in the manifest and the sidecar "
                                     f"states no 'family' and 'rows'") from None
        return Preprocessing.for_input(rows, cols, family=family, output=kind,
                                       include_preprocessing=include_preprocessing)


def preprocessing_for(x, include_preprocessing: bool = True) -> Preprocessing:
    """The preprocessing of an output file (``.h5``, ``_no_top.h5``, ``.keras``, ``.tflite``), of a sidecar
    ``.json`` (its ``.h5`` files'), of a variant name, or of a :class:`~convert.manifest.Variant`.

    A file's sidecar, when found beside it, decides (its ``preprocessing`` field, else its variant); a
    ``.tflite``'s uint8 mapping and input size are always read from the file itself. ``include_preprocessing``
    mirrors keras.applications' V3 argument: False asks for a V3 ``.h5``'s [-1, 1] form instead of its
    default [0, 255] (no effect on the other files)."""
    from .manifest import UnknownVariantError, Variant, resolve

    if isinstance(x, Variant):
        return Preprocessing.for_variant(x, "h5", include_preprocessing)
    if not isinstance(x, (str, Path)):
        raise PreprocessingError(f"preprocessing_for takes a file path, a variant name or a Variant, got "
                                 f"{type(x).__name__}")
    path = Path(x)
    suffix = path.suffix.lower()
    if suffix not in (*_SUFFIXES, ".json"):
        try:
            return Preprocessing.for_variant(resolve(str(x)), "h5", include_preprocessing)
        except UnknownVariantError as exc:
            raise PreprocessingError(f"{str(x)!r} is neither an output file (.h5, .keras, .tflite), a sidecar "
                                     f".json, nor a variant name: {exc}") from None
    if not path.is_file():
        raise PreprocessingError(f"{path}: no such file (preprocessing_for takes an existing .h5, .keras, .tflite "
                                 f"or sidecar .json, or a variant name)")
    if suffix == ".json":
        return _from_sidecar(_read_json(path), path, None, "h5", include_preprocessing)
    kind = _SUFFIXES[suffix]
    variant = _variant_of_file(path.name)
    found = _sidecar_of(path, variant)
    if kind == "tflite":
        base = _from_sidecar(found[1], found[0], path.name, "twin", True) if found else None
        return Preprocessing.for_tflite(path, None if base is None else base.with_form("unit"))
    if found is not None:
        return _from_sidecar(found[1], found[0], path.name, kind, include_preprocessing)
    if variant is not None:
        return Preprocessing.for_variant(variant, kind, include_preprocessing)
    raise PreprocessingError(f"{path}: no sidecar beside it names this file, and no manifest variant has an output "
                             f"of this name; pass a variant name, or build it with "
                             f"Preprocessing.for_input(rows, cols, family=...)")


def sidecar_field(variant, out_dir: str | Path) -> dict:
    """The sidecar's ``preprocessing`` field: every output file of ``variant`` in ``out_dir`` -> its
    :meth:`Preprocessing.to_json` (a ``.tflite``'s read from the file, which must exist)."""
    out_dir = Path(out_dir)
    field = {}
    for name, kind in _outputs(variant).items():
        if kind == "tflite":
            field[name] = Preprocessing.for_tflite(out_dir / name).to_json()
        else:
            field[name] = Preprocessing.for_variant(variant, kind).to_json()
    return field

