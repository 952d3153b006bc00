"""convert.preprocessing: the preprocessing of every output file as data, its one pipeline, the public API.

Expected values come from TF1's own ops, called here directly as slim's ``preprocess_for_eval`` calls them
(``convert_image_dtype``, ``tf.image.central_crop``, ``tf.compat.v1.image.resize_bilinear`` without
half-pixel centres, then the scaling), from a NumPy re-derivation of those semantics, from LiteRT's reading
of a ``.tflite``'s input, and from keras.applications' own V3 model; never from the module under test.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import convert  # noqa: F401  (registers the Keras layers, as a user's `import convert` does)
from conftest import REFERENCE_DIR, quant_outputs
from convert import cards
from convert.families.base import to_keras_input
from convert.guide import Accounting, Provenance
from convert.manifest import resolve
from convert.preprocessing import Preprocessing, PreprocessingError, preprocessing_for, sidecar_field
from convert.records import ConversionFacts, ValuesUsed

tf = pytest.importorskip("tensorflow")

V1, V2, V3, V1Q = "mobilenet_v1_0.25_128", "1.0_224", "v3-small-minimalistic_224_1.0_float", "mobilenet_v1_0.25_128_quant"
PANDA = REFERENCE_DIR / "panda.jpg"
V2_TFLITE = REFERENCE_DIR / "mobilenet_v2_1.0_224_quant.tflite"  # genuine release files
V3_TFLITE = REFERENCE_DIR / "v3-small_224_1.0_uint8.tflite"
SIZES = [(333, 517), (517, 333), (7, 5), (1, 1), (2, 3), (224, 224), (97, 131)]
TARGETS = [(224, 224), (200, 160), (96, 96)]


def rng_image(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng([seed, h, w, channels]).integers(0, 256, (h, w, channels), dtype=np.uint8)


def tf1_unit(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """slim's ``preprocess_for_eval`` written out with TF1's ops: [-1, 1]."""
    x = tf.image.convert_image_dtype(tf.constant(image), tf.float32)
    x = tf.image.central_crop(x, central_fraction=0.875)
    x = tf.compat.v1.image.resize_bilinear(x[None], [rows, cols], align_corners=False, half_pixel_centers=False)[0]
    return ((x - 0.5) * 2.0).numpy()


def tf1_unit_image(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The same, but the [0, 1] image before normalisation (for the [0, 255] form: x * 255)."""
    return (tf1_unit(image, rows, cols) + 1.0) / 2.0


def numpy_slim(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """An independent NumPy re-derivation (float64): central crop as tf.image.central_crop computes its box
    (start = int((h - h * 0.875) / 2)), then TF1 bilinear without half-pixel centres (source coordinate
    dst * (in / out), in float32 as TF's kernel computes it; neighbours floor and min(floor + 1, in - 1)),
    then (x - 0.5) / 0.5."""
    x = image.astype(np.float64) / 255.0
    h, w = x.shape[:2]
    top, left = int((h - h * 0.875) / 2), int((w - w * 0.875) / 2)
    x = x[top:h - top, left:w - left]
    h, w = x.shape[:2]

    def axis(n_in, n_out):
        src = (np.arange(n_out, dtype=np.float32) * (np.float32(n_in) / np.float32(n_out))).astype(np.float64)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), (src - lo)[:, None]

    y0, y1, fy = axis(h, rows)
    x0, x1, fx = axis(w, cols)
    top_row = x[y0][:, x0] * (1 - fx[None]) + x[y0][:, x1] * fx[None]
    bottom_row = x[y1][:, x0] * (1 - fx[None]) + x[y1][:, x1] * fx[None]
    out = top_row * (1 - fy[:, :, None]) + bottom_row * fy[:, :, None]
    return (out - 0.5) / 0.5


# --------------------------------------------------------------------------------------------------
# the pipeline against TF1's ops

@pytest.mark.parametrize("rows,cols", TARGETS)
@pytest.mark.parametrize("h,w", SIZES)
def test_unit_form_is_slims_preprocess_for_eval(h, w, rows, cols):
    image = rng_image(h, w)
    got = Preprocessing.for_input(rows, cols)([image])
    assert got.shape == (1, rows, cols, 3) and got.dtype == np.float32
    np.testing.assert_array_equal(got[0], tf1_unit(image, rows, cols))


@pytest.mark.parametrize("h,w,rows,cols", [(333, 517, 224, 224), (7, 5, 4, 3), (1, 1, 3, 2), (9, 16, 20, 12),
                                           (101, 60, 200, 160)])
def test_the_tf1_ops_are_the_semantics_we_mean(h, w, rows, cols):
    """The TF1 ops agree with a NumPy derivation of crop + align_corners=False, no half-pixel centres; TF2's
    default resize (half-pixel centres) does not, so the tests above tell the two apart."""
    image = rng_image(h, w, seed=3)
    ours = Preprocessing.for_input(rows, cols)([image])[0]
    np.testing.assert_allclose(ours, numpy_slim(image, rows, cols), atol=2e-6)
    if (h, w) != (1, 1):
        x = tf.image.central_crop(tf.image.convert_image_dtype(image, tf.float32), 0.875)
        tf2 = (tf.image.resize(x, (rows, cols), method="bilinear").numpy() - 0.5) * 2.0
        assert np.max(np.abs(tf2 - ours)) > 1e-3


@pytest.mark.parametrize("h,w", [(333, 517), (7, 5), (1, 1)])
def test_pixels_and_uint8_forms(h, w):
    image = rng_image(h, w, seed=1)
    pixels = Preprocessing.for_input(200, 160, family="v3")([image])[0]
    np.testing.assert_allclose(pixels, tf1_unit_image(image, 200, 160) * 255.0, rtol=0, atol=1e-4)
    assert pixels.min() >= 0.0 and pixels.max() <= 255.0
    for scale, zero_point in ((1 / 128, 128), (1 / 127, 128), (0.0078125, 127)):
        q = Preprocessing.for_input(200, 160, output="tflite", scale=scale, zero_point=zero_point)([image])[0]
        unit = tf1_unit(image, 200, 160)
        want = np.clip(np.round(unit / np.float32(scale)) + zero_point, 0, 255).astype(np.uint8)
        assert q.dtype == np.uint8 and np.array_equal(q, want)


def test_images_of_mixed_sizes_make_one_batch_and_a_4d_array_is_a_batch():
    images = [rng_image(h, w, seed=2) for h, w in SIZES]
    pre = Preprocessing.for_input(200, 160)
    batch = pre(images)
    assert batch.shape == (len(SIZES), 200, 160, 3)
    for image, got in zip(images, batch):
        np.testing.assert_array_equal(got, tf1_unit(image, 200, 160))
    same = np.stack([rng_image(31, 47, seed=s) for s in range(3)])
    np.testing.assert_array_equal(pre(same), np.stack([tf1_unit(a, 200, 160) for a in same]))
    assert pre([]).shape == (0, 200, 160, 3)


def test_grey_rgba_and_encoded_files(tmp_path):
    """A grey image is its value in every channel, an RGBA one its RGB; JPEG, PNG and BMP files decode as
    TF decodes them (what slim's evaluation reads)."""
    pre = Preprocessing.for_input(96, 96)
    grey, rgba = rng_image(45, 61, 1, seed=4), rng_image(38, 29, 4, seed=5)
    want_grey = tf1_unit(np.repeat(grey, 3, axis=2), 96, 96)
    np.testing.assert_array_equal(pre([grey[..., 0]])[0], want_grey)
    np.testing.assert_array_equal(pre([grey])[0], want_grey)
    np.testing.assert_array_equal(pre([rgba])[0], tf1_unit(rgba[..., :3], 96, 96))
    (tmp_path / "g.png").write_bytes(tf.io.encode_png(grey).numpy())
    (tmp_path / "a.png").write_bytes(tf.io.encode_png(rgba).numpy())
    colour = rng_image(57, 83, seed=6)
    (tmp_path / "c.jpg").write_bytes(tf.io.encode_jpeg(colour, quality=90).numpy())
    np.testing.assert_array_equal(pre.load(tmp_path / "g.png"), want_grey)
    np.testing.assert_array_equal(pre.load(tmp_path / "a.png"), tf1_unit(rgba[..., :3], 96, 96))
    decoded = tf.io.decode_jpeg((tmp_path / "c.jpg").read_bytes(), channels=3).numpy()
    assert not np.array_equal(decoded, colour)  # lossy: the file's decoded pixels are what counts
    np.testing.assert_array_equal(pre.load(tmp_path / "c.jpg"), tf1_unit(decoded, 96, 96))
    np.testing.assert_array_equal(pre([tmp_path / "c.jpg", decoded]), np.stack([tf1_unit(decoded, 96, 96)] * 2))


# --------------------------------------------------------------------------------------------------
# the Keras layer

@pytest.fixture(scope="module")
def layer_model_path(tmp_path_factory):
    import keras

    pre = Preprocessing.for_input(200, 160, family="v3")
    inp = keras.Input((None, None, 3), dtype="uint8")
    model = keras.Model(inp, pre.layer(name="pre")(inp))
    path = tmp_path_factory.mktemp("layer") / "pre.keras"
    model.save(path)
    return pre, model, path


@pytest.mark.parametrize("form", ["unit", "pixels", "uint8"])
def test_the_layer_gives_the_functions_values(form):
    import keras

    pre = {"unit": Preprocessing.for_input(200, 160), "pixels": Preprocessing.for_input(200, 160, family="v3"),
           "uint8": Preprocessing.for_input(200, 160, output="tflite", scale=1 / 127, zero_point=128)}[form]
    inp = keras.Input((None, None, 3), dtype="uint8")
    model = keras.Model(inp, pre.layer()(inp))
    for h, w in [(333, 517), (7, 5), (1, 1), (224, 224)]:
        batch = np.stack([rng_image(h, w, seed=s) for s in range(2)])
        got = np.asarray(model(batch))
        want = np.stack([tf1_unit(a, 200, 160) for a in batch])
        if form == "pixels":
            want = (want + 1.0) * 127.5
        if form == "uint8":
            want = np.clip(np.round(want / np.float32(1 / 127)) + 128, 0, 255)
            assert got.dtype == np.uint8
        assert got.shape == (2, 200, 160, 3)
        assert np.max(np.abs(got.astype(np.float64) - want)) <= 1e-5 * (255 if form == "pixels" else 1)
        assert np.max(np.abs(got.astype(np.float64) - pre(list(batch)).astype(np.float64))) <= 1e-5


def test_a_saved_model_with_the_layer_loads_in_a_fresh_process(layer_model_path):
    """`import convert` registers the layer, so keras.saving.load_model reads it back in a new process."""
    pre, model, path = layer_model_path
    image = rng_image(97, 131, seed=8)
    np.save(path.parent / "image.npy", image[None])
    np.save(path.parent / "want.npy", np.asarray(model(image[None])))
    code = ("import sys, numpy as np, convert, keras\n"
            "m = keras.saving.load_model(sys.argv[1])\n"
            "got = np.asarray(m(np.load(sys.argv[2])))\n"
            "assert np.array_equal(got, np.load(sys.argv[3])), np.abs(got - np.load(sys.argv[3])).max()\n"
            "print(m.get_layer('pre').preprocessing.form)")
    done = subprocess.run([sys.executable, "-c", code, str(path), str(path.parent / "image.npy"),
                           str(path.parent / "want.npy")], cwd=Path(__file__).parent.parent, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "pixels"


# --------------------------------------------------------------------------------------------------
# preprocessing_for: every output kind

def _facts(v, files: dict[str, str], **over) -> ConversionFacts:
    base = dict(variant=v.name, family=v.family_key, stem=v.stem, alpha=v.alpha, rows=v.rows, kind=v.kind,
                minimalistic=v.minimalistic, files=files,
                provenance=Provenance("v/model.ckpt-1", "combined", "/c/a.tgz", "3" * 64, None, "http://h/a.tgz"),
                values=ValuesUsed("auto", "ema", {"ema": 10, "raw": 5}), label_offset=1, classes=1000,
                counts=Accounting(100, 15, 0, 1, 10, {"ema": 10, "raw": 5}, "ema", 40), versions={"keras": "3"})
    return ConversionFacts(**{**base, **over})


def _float_outputs(folder: Path, name: str) -> Path:
    """Stand-in .h5 files of a float variant under their names, and the sidecar cards.write writes for them."""
    v = resolve(name)
    folder.mkdir(parents=True, exist_ok=True)
    for n in (v.keras_weights, v.keras_weights_no_top):
        (folder / n).write_bytes(n.encode())
    cards.write(folder, v, _facts(v, {n: "0" * 64 for n in (v.keras_weights, v.keras_weights_no_top)}))
    return folder


@pytest.fixture(scope="module")
def quant_dir(run_dir, tmp_path_factory):
    """V1 quant's real outputs (.h5, _no_top.h5, .keras, .tflite: conftest.quant_outputs) copied into a folder
    with the sidecar cards.write writes for them."""
    v = resolve(V1Q)
    src, out = quant_outputs(V1Q, run_dir), tmp_path_factory.mktemp("quant") / "weights"
    shutil.copytree(src, out)
    cards.write(out, v, _facts(v, {n: "0" * 64 for n in (v.keras_weights, v.keras_weights_no_top)}))
    return out


@pytest.mark.parametrize("name,form", [(V1, "unit"), (V2, "unit"), (V3, "pixels")])
def test_h5_files_of_v1_v2_v3(tmp_path, name, form):
    v = resolve(name)
    folder = _float_outputs(tmp_path, name)
    for n in (v.keras_weights, v.keras_weights_no_top):
        pre = preprocessing_for(folder / n)
        assert (pre.rows, pre.cols, pre.form, pre.crop_fraction) == (v.rows, v.rows, form, 0.875)
        assert preprocessing_for(folder / n, include_preprocessing=False).form == "unit"
    assert preprocessing_for(cards.sidecar_path(folder, v)) == preprocessing_for(folder / v.keras_weights)
    assert preprocessing_for(name) == preprocessing_for(folder / v.keras_weights)  # a variant name
    image = rng_image(333, 517, seed=9)
    want = tf1_unit(image, v.rows, v.rows)
    got = preprocessing_for(folder / v.keras_weights)([image])[0]
    if form == "unit":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, (want + 1.0) * 127.5, atol=1e-4)
        np.testing.assert_array_equal(preprocessing_for(name, include_preprocessing=False)([image])[0], want)


def test_v3_pixels_are_what_keras_default_v3_model_expects():
    """keras.applications' V3 with include_preprocessing=True, fed the default form, gives the logits of the
    same weights with include_preprocessing=False fed the [-1, 1] form."""
    import keras

    v = resolve(V3)
    kw = dict(input_shape=(v.rows, v.rows, 3), alpha=1.0, minimalistic=True, weights=None,
              classifier_activation=None)
    default = keras.applications.MobileNetV3Small(include_preprocessing=True, **kw)
    plain = keras.applications.MobileNetV3Small(include_preprocessing=False, **kw)
    plain.set_weights(default.get_weights())
    images = [rng_image(333, 517, seed=10), rng_image(120, 90, seed=11)]
    a = np.asarray(default(preprocessing_for(V3)(images)))
    b = np.asarray(plain(preprocessing_for(V3, include_preprocessing=False)(images)))
    np.testing.assert_allclose(a, b, atol=1e-4 * max(1.0, np.abs(b).max()))
    assert np.asarray(default(preprocessing_for(V3, include_preprocessing=False)(images))).std() != pytest.approx(
        b.std(), rel=1e-3)  # feeding [-1, 1] to the default model is wrong: the form matters


def test_twin_tflite_and_h5_of_a_quantized_variant(quant_dir):
    """The real outputs of V1 quant: the twin takes [-1, 1] at its input size, the .tflite the uint8 input
    LiteRT reads from the file; the float .h5 [-1, 1]."""
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from convert.quant.tflite import input_quant

    v = resolve(V1Q)
    twin = preprocessing_for(quant_dir / v.family.twin_file(v))
    model = keras.saving.load_model(quant_dir / v.family.twin_file(v))
    assert (twin.form, (None, twin.rows, twin.cols, 3)) == ("unit", tuple(model.input_shape))
    for n in (v.keras_weights, v.keras_weights_no_top):
        assert preprocessing_for(quant_dir / n) == twin
    path = quant_dir / v.family.tflite_file(v)
    pre = preprocessing_for(path)
    detail = Interpreter(model_path=str(path)).get_input_details()[0]
    assert (pre.form, pre.dtype, (1, pre.rows, pre.cols, 3)) == ("uint8", "uint8", tuple(detail["shape"]))
    assert (np.float32(pre.scale), pre.zero_point) == (np.float32(detail["quantization"][0]), detail["quantization"][1])
    quant = input_quant(path, v.rows)
    image = rng_image(333, 517, seed=12)
    np.testing.assert_array_equal(pre([image])[0], quant.to_uint8(tf1_unit(image, v.rows, v.rows)))
    # the twin's [-1, 1] values, quantized as the file says, are the .tflite's input
    np.testing.assert_array_equal(pre.load(PANDA), quant.to_uint8(twin.load(PANDA)))


@pytest.mark.parametrize("path", [V2_TFLITE, V3_TFLITE])
def test_genuine_tflite_files_without_a_sidecar(path):
    from ai_edge_litert.interpreter import Interpreter

    pre = preprocessing_for(path)
    detail = Interpreter(model_path=str(path)).get_input_details()[0]
    scale, zero_point = detail["quantization"]
    assert (1, pre.rows, pre.cols, 3) == tuple(detail["shape"]) and pre.zero_point == zero_point == 128
    assert np.float32(pre.scale) == np.float32(scale) and abs(scale - (1 / 128 if "v2" in path.name else 1 / 127)) < 1e-8
    unit = tf1_unit(tf.io.decode_jpeg(PANDA.read_bytes(), channels=3).numpy(), pre.rows, pre.cols)
    want = np.clip(np.round(unit / np.float32(scale)) + zero_point, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(pre.load(PANDA), want)


def test_a_sidecars_preprocessing_field_decides(tmp_path):
    """What cards will write (sidecar_field: one entry per output file) is read back; an entry that
    differs from the derived one wins over the variant's defaults."""
    v = resolve(V3)
    folder = _float_outputs(tmp_path, V3)
    side = cards.sidecar_path(folder, v)
    doc = json.loads(side.read_text())
    field = sidecar_field(v, folder)
    assert set(field) == {v.keras_weights, v.keras_weights_no_top}
    assert json.loads(json.dumps(field))[v.keras_weights]["input_range"] == [0.0, 255.0]
    field[v.keras_weights_no_top] = {**field[v.keras_weights_no_top], "crop_fraction": 1.0}
    side.write_text(json.dumps({**doc, "preprocessing": field}))
    assert preprocessing_for(folder / v.keras_weights) == preprocessing_for(V3)
    no_top = preprocessing_for(folder / v.keras_weights_no_top)
    assert (no_top.crop_fraction, no_top.form) == (1.0, "pixels")
    assert preprocessing_for(folder / v.keras_weights_no_top, include_preprocessing=False).form == "unit"
    image = rng_image(64, 48, seed=13)
    whole = tf.compat.v1.image.resize_bilinear(tf.image.convert_image_dtype(image, tf.float32)[None], [224, 224],
                                               align_corners=False, half_pixel_centers=False)[0].numpy()
    np.testing.assert_allclose(no_top([image])[0], whole * 255.0, atol=1e-4)


def test_quantized_sidecar_field_reads_the_tflite(quant_dir):
    from convert.quant.tflite import input_quant

    v = resolve(V1Q)
    field = sidecar_field(v, quant_dir)
    tflite = field[v.family.tflite_file(v)]
    quant = input_quant(quant_dir / v.family.tflite_file(v))
    assert (tflite["form"], tflite["scale"], tflite["zero_point"]) == ("uint8", quant.scale, quant.zero_point)
    assert field[v.family.twin_file(v)]["form"] == field[v.keras_weights]["form"] == "unit"
    assert {k: Preprocessing.from_json(e) for k, e in field.items()} == {
        k: preprocessing_for(quant_dir / k) for k in field}


def test_a_user_checkpoint_non_square(tmp_path):
    """A user's own checkpoint (not in the manifest): from plain values, and from a sidecar that states its
    family and input size; odd image sizes into a 200 x 160 input."""
    pre = Preprocessing.for_input(200, 160, family="v3")
    assert (pre.rows, pre.cols, pre.form) == (200, 160, "pixels")
    assert Preprocessing.for_input(200, 160, family="v3", include_preprocessing=False).form == "unit"
    assert Preprocessing.for_input(200, 160, family="v2").form == "unit"
    assert Preprocessing.for_input(200, 160, family="v3", output="twin").form == "unit"
    images = [rng_image(h, w, seed=14) for h, w in [(333, 517), (7, 5), (1, 1)]]
    np.testing.assert_allclose(pre(images), np.stack([tf1_unit(a, 200, 160) for a in images]) * 127.5 + 127.5,
                               atol=1e-4)
    v = resolve(V3)
    (tmp_path / "mine.h5").write_bytes(b"h5")
    (tmp_path / "mine.json").write_text(json.dumps(
        _facts(v, {"mine.h5": "0" * 64}, variant="my_mobilenet_v3", rows=200).to_json() | {"cols": 160}))
    assert preprocessing_for(tmp_path / "mine.h5") == pre
    assert preprocessing_for(tmp_path / "mine.json", include_preprocessing=False) == pre.with_form("unit")
    (tmp_path / "other.json").write_text(json.dumps(  # found by its files list, whatever its name
        _facts(resolve(V2), {"theirs.h5": "0" * 64}, variant="mine_v2", rows=160).to_json()))
    (tmp_path / "theirs.h5").write_bytes(b"h5")
    assert preprocessing_for(tmp_path / "theirs.h5") == Preprocessing.for_input(160, 160)


def test_json_round_trip():
    for pre in (Preprocessing.for_input(200, 160, family="v3"), preprocessing_for(V3_TFLITE), preprocessing_for(V1)):
        doc = json.loads(json.dumps(pre.to_json()))
        assert Preprocessing.from_json(doc) == pre
        assert doc["dtype"] == ("uint8" if pre.form == "uint8" else "float32")
    assert "central crop of 87.5%" in preprocessing_for(V1).describe()
    assert "round(x / 0.0078125) + 128" in preprocessing_for(V2_TFLITE).describe()


# --------------------------------------------------------------------------------------------------
# convert evaluate --preprocess slim goes through the API

def test_evaluate_slim_batches_are_the_apis_values(tmp_path, quant_dir):
    """evaluate's tf.data pipeline (graph mode), its scorers' mapping onto each model's input (V3's [0, 255],
    a .tflite's uint8) and the API give the same values, bit for bit: evaluate's top-1 is the API's."""
    from convert.evaluate import preprocess as ev_pre
    from convert.evaluate.dataset import Dataset
    from convert.evaluate.inputs import make_pipeline
    from convert.quant.tflite import input_quant

    files = []
    for i, (h, w) in enumerate([(333, 517), (7, 5), (120, 160), (1, 1)]):
        image = rng_image(h, w, seed=20 + i)
        path = tmp_path / f"im{i}.{'png' if i % 2 else 'jpg'}"
        path.write_bytes((tf.io.encode_png(image) if i % 2 else tf.io.encode_jpeg(image)).numpy())
        files.append(path)
    files.append(PANDA)
    for name in (V1, V2, V3):
        v = resolve(name)
        batches = list(make_pipeline(Dataset(tmp_path, files, [0] * len(files), "folders"), v.rows, ("slim",), 2))
        evaluated = np.concatenate([b["slim"].numpy() for b in batches])
        api = preprocessing_for(name)
        np.testing.assert_array_equal(np.stack([ev_pre.preprocess_file(f, v.rows, "slim") for f in files]), evaluated)
        model_input = to_keras_input(evaluated, v.family.keras_input_range)  # what keras_scorers feed
        np.testing.assert_array_equal(model_input, api(files))
        np.testing.assert_array_equal(evaluated, preprocessing_for(name, include_preprocessing=False)(files))
    v = resolve(V1Q)
    path = quant_dir / v.family.tflite_file(v)
    evaluated = np.stack([ev_pre.preprocess_file(f, v.rows, "slim") for f in files])
    np.testing.assert_array_equal(input_quant(path, v.rows).to_uint8(evaluated), preprocessing_for(path)(files))


# --------------------------------------------------------------------------------------------------
# bad input

def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(PreprocessingError, match=r"'1.0_2244' is neither an output file.*closest: 1.0_224"):
        preprocessing_for("1.0_2244")
    with pytest.raises(PreprocessingError, match=r"missing\.h5: no such file"):
        preprocessing_for(tmp_path / "missing.h5")
    (tmp_path / "stray.h5").write_bytes(b"")
    with pytest.raises(PreprocessingError, match=r"stray\.h5: no sidecar.*Preprocessing.for_input"):
        preprocessing_for(tmp_path / "stray.h5")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(PreprocessingError, match=r"broken\.json is not a readable sidecar"):
        preprocessing_for(tmp_path / "broken.json")
    (tmp_path / "fake.tflite").write_bytes(b"not a model")
    with pytest.raises(PreprocessingError, match=r"fake\.tflite"):
        preprocessing_for(tmp_path / "fake.tflite")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(PreprocessingError, match=r"cannot decode image .*bad\.jpg"):
        Preprocessing.for_input(96).load(tmp_path / "bad.jpg")
    assert issubclass(PreprocessingError, ValueError)
    pre = Preprocessing.for_input(96)
    with pytest.raises(PreprocessingError, match=r"must be uint8.*float64"):
        pre([np.zeros((5, 5, 3))])
    with pytest.raises(PreprocessingError, match=r"takes uint8 images.*got float32"):
        pre.apply(np.zeros((5, 5, 3), np.float32))
    with pytest.raises(PreprocessingError, match=r"H x W x 1, 3 or 4"):
        pre([np.zeros((5, 5, 2), np.uint8)])
    with pytest.raises(PreprocessingError, match=r"\.load\(path\)"):
        pre("panda.jpg")
    with pytest.raises(PreprocessingError, match=r"unknown family 'v9'; valid: v1, v2, v3"):
        Preprocessing.for_input(96, family="v9")
    with pytest.raises(PreprocessingError, match=r"unknown output kind 'onnx'; valid: h5, twin, tflite"):
        Preprocessing.for_input(96, output="onnx")
    with pytest.raises(PreprocessingError, match=r"'uint8' needs scale > 0"):
        Preprocessing.for_input(96, output="tflite")
    with pytest.raises(PreprocessingError, match=r"interpolation 'nearest'.*valid: bilinear_tf1"):
        dataclasses.replace(pre, interpolation="nearest")
    with pytest.raises(PreprocessingError, match=r"input_range \[0, 255\] contradicts form 'unit'"):
        Preprocessing.from_json({**pre.to_json(), "input_range": [0, 255]})
    with pytest.raises(PreprocessingError, match=r"unknown \['size'\]"):
        Preprocessing.from_json({**pre.to_json(), "size": 3})
