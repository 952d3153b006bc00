"""``python -m convert evaluate``: ImageNet top-1/top-5 of the converted weights and of the slim graph.

No ImageNet here: seeded images, each labelled with the slim graph's own top-1 under slim preprocessing,
so the slim graph must score 100 % and the converted weights the same. One variant per family.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from conftest import quant_outputs, run_main  # noqa: E402
from convert.evaluate import cli as ev_cli  # noqa: E402
from convert.evaluate import dataset as ev_data  # noqa: E402
from convert.evaluate import evaluation as ev_eval  # noqa: E402
from convert.evaluate import preprocess as ev_pre  # noqa: E402
from convert.evaluate import records as ev_rec  # noqa: E402
from convert.evaluate import scorers as ev_scorers  # noqa: E402
from convert.factory import fixtures  # noqa: E402
from convert import cards  # noqa: E402
from convert.archive import find_checkpoint  # noqa: E402
from convert.checkpoint import extract  # noqa: E402
from convert.guide import load_layer_guide  # noqa: E402
from convert.keras_weights import convert_guide  # noqa: E402
from convert.manifest import resolve  # noqa: E402
from convert.parity import checkpoint_feeds, run_graph  # noqa: E402

V2, V1, V3 = "0.35_96", "mobilenet_v1_0.25_128", "v3-small-minimalistic_224_1.0_float"
VARIANTS = [V2, V1, V3]
IMAGES = 20  # labelled images per variant (the best-separated of CANDIDATES)
CANDIDATES = 32
SIZES = [(120, 160), (200, 150), (96, 96), (257, 311)]
KERAS_MD5 = "c2c37ea517e94d9795004a39431a14cb"  # keras.applications.imagenet_utils' file_hash of the class index
# the keys every accuracy.json record has carried since the first release (readers depend on them)
RECORD_KEYS = ("name", "model", "preprocessing", "images", "top1", "top5", "published_top1", "published_top5",
               "images_per_s")


def write_images(folder: Path, count: int, seed: int = 0, sizes=SIZES) -> list[Path]:
    """Seeded smooth-noise images (JPEG and PNG alternately) of a few sizes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        h, w = sizes[i % len(sizes)]
        coarse = rng.uniform(0, 255, (int(rng.integers(2, 9)), int(rng.integers(2, 9)), 3))
        image = tf.image.resize(coarse, (h, w), method="bilinear").numpy() + rng.normal(0, 20, (h, w, 3))
        image = np.clip(image, 0, 255).astype(np.uint8)
        png = i % 2 == 1
        path = folder / f"img_{i:03d}.{'png' if png else 'JPEG'}"
        path.write_bytes((tf.io.encode_png(image) if png else tf.io.encode_jpeg(image, quality=95)).numpy())
        out.append(path)
    return out


def slim_logits(variant, files) -> np.ndarray:
    """The archive's slim graph (EMA values) on the slim-preprocessed files, Keras classes only."""
    root = fixtures.cached_extracted(variant.name)
    graph_def = ev_scorers.cached_archive_graph(root, variant)[0]  # memoised: the CLI runs below reuse it
    assert graph_def is not None
    prefix, _ = find_checkpoint(root, variant, "ema")
    batch = np.stack([ev_pre.preprocess_file(f, variant.rows, "slim") for f in files])
    logits = run_graph(graph_def, batch, checkpoint_feeds(graph_def, str(prefix)).slim, variant.family.nodes.logits)
    return np.asarray(logits).reshape(len(files), -1)[:, variant.label_offset:]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Per variant: factory archive, converted weights (EMA; V2 also raw), and a labelled <wnid>/ dataset."""
    base = tmp_path_factory.mktemp("evaluate")
    candidates = write_images(base / "candidates", CANDIDATES)
    wnids = [w for w, _ in ev_data.class_index()]
    out = {}
    for name in VARIANTS:
        v = resolve(name)
        archive = fixtures.cached_archive(v.name)
        cards.write(base / "weights", v,
                    convert_guide(load_layer_guide(extract(v, archive=archive, out_dir=base / "work")), v, base / "weights"))
        logits = slim_logits(v, candidates)
        top2 = np.sort(logits, axis=1)[:, -2:]
        keep = sorted(np.argsort(top2[:, 0] - top2[:, 1])[:IMAGES])  # the clearest top-1s
        labels = logits.argmax(1)
        dataset = base / f"ds_{name}"
        for i in keep:
            folder = dataset / wnids[labels[i]]
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(candidates[i], folder / candidates[i].name)
        out[name] = {"variant": v, "archive": archive, "dataset": dataset,
                     "files": [candidates[i] for i in keep], "labels": [int(labels[i]) for i in keep]}
    v = resolve(V2)
    convert_guide(load_layer_guide(extract(v, archive=out[V2]["archive"], value_source="raw", out_dir=base / "work_raw")),
                  v, base / "weights_raw")
    return {"base": base, "weights": base / "weights", "weights_raw": base / "weights_raw", "candidates": candidates,
            **out}


def cli(argv, capsys):
    return run_main(ev_cli.main, [str(a) for a in argv], capsys)


def records_by(results: Path) -> dict:
    rows = json.loads((results / ev_rec.ACCURACY_JSON).read_text())
    return {(r["name"], r["model"], r["preprocessing"]): r for r in rows}


# --------------------------------------------------------------------------------------------------
# The class index

def test_class_index_is_keras_file_with_1000_sorted_wnids():
    assert hashlib.md5(ev_data.CLASS_INDEX_PATH.read_bytes()).hexdigest() == KERAS_MD5
    doc = json.loads(ev_data.CLASS_INDEX_PATH.read_text())
    assert sorted(doc, key=int) == [str(i) for i in range(1000)]
    wnids = [doc[str(i)][0] for i in range(1000)]
    assert len(set(wnids)) == 1000 and wnids == sorted(wnids)
    assert all(len(w) == 9 and w[0] == "n" and w[1:].isdigit() for w in wnids)
    assert doc["0"] == ["n01440764", "tench"] and doc["999"] == ["n15075141", "toilet_tissue"]
    assert ev_data.wnid_to_class()["n01440764"] == 0


# --------------------------------------------------------------------------------------------------
# Scores

@pytest.fixture(scope="module")
def evaluated(setup):
    """``convert evaluate`` (folder layout, both preprocessings) for each family in turn, into one results
    folder; returns (results dir, {name: stdout})."""
    import contextlib
    import io

    results = setup["base"] / "results"
    outputs = {}
    for name in VARIANTS:
        s = setup[name]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = ev_cli.main([name, "--imagenet-dir", str(s["dataset"]), "--weights-dir", str(setup["weights"]),
                            "--archive", str(s["archive"]), "--results", str(results), "--batch-size", "8"])
        assert code == 0
        outputs[name] = out.getvalue()
    return results, outputs


@pytest.mark.parametrize("name", VARIANTS)
def test_slim_graph_scores_100_and_converted_the_same(setup, evaluated, name):
    v = setup[name]["variant"]
    results, outputs = evaluated
    recs = records_by(results)
    assert {k for k in recs if k[0] == v.name} == {(v.name, m, p) for m in ("converted", "slim")
                                                   for p in ("slim", "keras")}
    assert {k[0] for k in recs} == set(VARIANTS)  # every name's records kept side by side
    for r in (r for k, r in recs.items() if k[0] == v.name):
        assert set(RECORD_KEYS) <= set(r) and r["images"] == IMAGES and r["unreadable"] == []
        assert r["published_top1"] == v.top1 and r["published_top5"] == v.top5 and r["images_per_s"] > 0
    assert recs[(v.name, "slim", "slim")]["top1"] == 100.0
    assert recs[(v.name, "converted", "slim")]["top1"] == 100.0
    assert recs[(v.name, "converted", "slim")]["top5"] == recs[(v.name, "slim", "slim")]["top5"] == 100.0
    # under keras preprocessing the inputs differ; both models still agree with each other (V3 to within a
    # couple of images: slim's SE gate constant 0.16667 differs from keras' 1/6)
    k_conv, k_slim = recs[(v.name, "converted", "keras")]["top1"], recs[(v.name, "slim", "keras")]["top1"]
    assert abs(k_conv - k_slim) <= (10.0 if v.family_key == "v3" else 0.0)
    md = (results / ev_rec.ACCURACY_MD).read_text()
    assert "| name | model | preprocessing |" in md and md.count(f"| {v.name} |") == 4
    assert f"| {v.name} | converted | slim | {IMAGES} | 100.00 | {100 - v.top1:+.2f} |" in md  # Δ vs published
    assert f"top-1 100.00 ({100 - v.top1:+.2f})" in outputs[name]
    card = (setup["weights"] / (Path(v.keras_weights).stem + "_card.md")).read_text()  # the model card has them too
    assert "| converted | slim | " + f"{IMAGES} | 100.00 | 100.00 |" in card and "not evaluated" not in card


def test_raw_weights_score_measurably_lower(setup, evaluated):
    s = setup[V2]
    assert records_by(evaluated[0])[(V2, "converted", "slim")]["top1"] == 100.0  # the EMA conversion
    raw = ev_eval.evaluate_variant(s["variant"], ev_data.scan_dataset(s["dataset"]), weights_dir=setup["weights_raw"],
                              model_dir=None, preprocessings=("slim",), include_slim=False)
    assert raw.records[0].images == IMAGES
    assert raw.records[0].top1 <= 80.0, raw.records[0].top1

def test_preprocessing_paths_give_different_inputs(setup, tmp_path):
    path = next(p for p in setup["candidates"] if p.suffix == ".png")  # lossless: pixels known exactly
    pixels = tf.io.decode_png(path.read_bytes(), channels=3).numpy().astype(np.float32)
    rows = 96
    slim = ev_pre.preprocess_file(path, rows, "slim")
    keras_px = ev_pre.preprocess_file(path, rows, "keras")
    assert slim.shape == keras_px.shape == (rows, rows, 3)
    assert -1.0 <= slim.min() and slim.max() <= 1.0 and 0.0 <= keras_px.min() and keras_px.max() <= 255.0
    assert np.max(np.abs(slim - ev_pre.to_unit_range(keras_px))) > 0.1
    import keras

    # the families' preprocess_input: V1/V2 x / 127.5 - 1 (what to_unit_range computes); V3 the identity (the
    # model's own Rescaling layer does it)
    for module in (keras.applications.mobilenet, keras.applications.mobilenet_v2):
        np.testing.assert_allclose(module.preprocess_input(keras_px.copy()), ev_pre.to_unit_range(keras_px), atol=1e-6)
    np.testing.assert_array_equal(keras.applications.mobilenet_v3.preprocess_input(keras_px.copy()), keras_px)
    # keras: load_img's nearest resize of the whole image (PIL NEAREST samples floor((i + 0.5) * in / out))
    h, w = pixels.shape[:2]
    ys = np.minimum(np.floor((np.arange(rows) + 0.5) * h / rows).astype(int), h - 1)
    xs = np.minimum(np.floor((np.arange(rows) + 0.5) * w / rows).astype(int), w - 1)
    np.testing.assert_array_equal(keras_px, pixels[ys][:, xs])
    # slim: central 87.5 % crop, TF1 bilinear (corner-aligned source grid y * in / out), (x - 0.5) * 2
    top, left = int((h - h * 0.875) / 2), int((w - w * 0.875) / 2)
    crop = pixels[top:h - top, left:w - left] / 255.0
    ch, cw = crop.shape[:2]
    fy, fx = np.arange(rows) * ch / rows, np.arange(rows) * cw / rows
    y0, x0 = np.floor(fy).astype(int), np.floor(fx).astype(int)
    y1, x1 = np.minimum(y0 + 1, ch - 1), np.minimum(x0 + 1, cw - 1)
    dy, dx = (fy - y0)[:, None, None], (fx - x0)[None, :, None]
    rowmix = lambda y: crop[y][:, x0] * (1 - dx) + crop[y][:, x1] * dx
    expected = (rowmix(y0) * (1 - dy) + rowmix(y1) * dy - 0.5) * 2
    np.testing.assert_allclose(slim, expected, atol=1e-5)


@pytest.mark.parametrize("fmt", ["synset-lines", "filename,wnid"])
def test_labels_file_layout_gives_the_same_numbers(setup, evaluated, fmt, tmp_path, capsys):
    s = setup[V2]
    flat = tmp_path / "flat"
    flat.mkdir()
    wnids = [w for w, _ in ev_data.class_index()]
    entries = sorted((f.name, wnids[c]) for f, c in zip(s["files"], s["labels"]))
    for f in s["files"]:
        shutil.copy(f, flat / f.name)
    labels = tmp_path / "labels.txt"
    if fmt == "synset-lines":
        labels.write_text("".join(f"{w}\n" for _, w in entries))
    else:
        labels.write_text("".join(f"{n},{w}\n" for n, w in reversed(entries)))  # any order
    code, _, err = cli([V2, "--weights-dir", setup["weights"], "--archive", s["archive"], "--imagenet-dir", flat,
                        "--labels", labels, "--results", tmp_path / "r"], capsys)
    assert code == 0, err
    folders, flat_recs = records_by(evaluated[0]), records_by(tmp_path / "r")
    assert set(flat_recs) == {k for k in folders if k[0] == V2}
    for key, r in flat_recs.items():
        assert (r["images"], r["top1"], r["top5"]) == (folders[key]["images"], folders[key]["top1"],
                                                       folders[key]["top5"])
        assert r["layout"] == fmt and folders[key]["layout"] == "folders"
    assert flat_recs[(V2, "slim", "slim")]["top1"] == 100.0

# --------------------------------------------------------------------------------------------------
# Datasets and bad input

def test_limit_is_a_deterministic_class_balanced_subset(tmp_path):
    wnids = [w for w, _ in ev_data.class_index()]
    for c, n in ((5, 4), (2, 1), (9, 3)):
        folder = tmp_path / wnids[c]
        folder.mkdir()
        for i in range(n):
            (folder / f"x{n - i}.JPEG").write_bytes(b"")
    ds = ev_data.scan_dataset(tmp_path, limit=5)
    assert [(f.parent.name, f.name) for f in ds.files] == [
        (wnids[2], "x1.JPEG"), (wnids[5], "x1.JPEG"), (wnids[9], "x1.JPEG"), (wnids[5], "x2.JPEG"),
        (wnids[9], "x2.JPEG")]
    assert ds.labels == [2, 5, 9, 5, 9]
    assert len(ev_data.scan_dataset(tmp_path, limit=100)) == 8


def test_kaggle_style_labels_file(tmp_path):
    wnids = [w for w, _ in ev_data.class_index()]
    for i in range(3):
        (tmp_path / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(b"")
    labels = tmp_path.parent / f"{tmp_path.name}_LOC_val_solution.csv"
    labels.write_text("ImageId,PredictionString\n" + "".join(
        f"ILSVRC2012_val_{i:08d},{wnids[10 * i + 1]} 1 2 3 4 {wnids[10 * i + 1]} 5 6 7 8\n" for i in (2, 0, 1)))
    ds = ev_data.scan_dataset(tmp_path, labels)
    assert [f.name for f in ds.files] == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(3)]
    assert ds.labels == [1, 11, 21] and ds.layout == "filename,wnid"


def _bad(argv, capsys, *fragments):
    code, _, err = cli([V2, *argv], capsys)
    assert code == 2, err
    assert err.splitlines()[-1].startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_bad_input_is_a_clear_error(setup, tmp_path, capsys):
    wnids = [w for w, _ in ev_data.class_index()]
    png = next(p for p in setup["candidates"] if p.suffix == ".png")
    # an unknown wnid folder
    bad = tmp_path / "unknown"
    (bad / wnids[3]).mkdir(parents=True)
    (bad / "n99999999").mkdir()
    shutil.copy(png, bad / wnids[3] / png.name)
    _bad(["--imagenet-dir", bad], capsys, "unknown wnid folder", "'n99999999'")
    # an empty directory, and class folders without images
    (tmp_path / "empty").mkdir()
    _bad(["--imagenet-dir", tmp_path / "empty"], capsys, "holds no images")
    (tmp_path / "hollow" / wnids[3]).mkdir(parents=True)
    _bad(["--imagenet-dir", tmp_path / "hollow"], capsys, "holds no images")
    _bad(["--imagenet-dir", tmp_path / "nowhere"], capsys, "is not a directory")
    # a flat folder without --labels
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        shutil.copy(png, flat / f"f{i}.png")
    _bad(["--imagenet-dir", flat], capsys, "--labels")
    # labels files that do not match the files
    labels = tmp_path / "labels.txt"
    labels.write_text(f"{wnids[1]}\n{wnids[2]}\n")
    _bad(["--imagenet-dir", flat, "--labels", labels], capsys, "does not match", "2 wnid line(s)", "3 image(s)")
    labels.write_text(f"f0.png,{wnids[1]}\nf1.png,{wnids[1]}\nf7.png,{wnids[2]}\n")
    _bad(["--imagenet-dir", flat, "--labels", labels], capsys, "does not match", "f7.png", "f2.png")
    labels.write_text(f"f0.png,{wnids[1]}\nf1.png,n0000000x\nf2.png,{wnids[2]}\n")
    _bad(["--imagenet-dir", flat, "--labels", labels], capsys, f"{labels}:2", "'n0000000x'")
    _bad(["--imagenet-dir", flat, "--labels", tmp_path / "missing.txt"], capsys, "labels file not found")
    labels.write_text(f"f0.png,{wnids[1]}\nf1.png,{wnids[1]}\nf0.png,{wnids[2]}\n")
    _bad(["--imagenet-dir", flat, "--labels", labels], capsys, f"{labels}:3", "listed twice")
    _bad(["--imagenet-dir", bad, "--limit", "0"], capsys, "--limit must be at least 1")


@pytest.fixture
def stub_models(monkeypatch):
    """Cheap stand-in models: 'converted' predicts class 7 always, 'slim' the image's mean brightness class."""
    def fake_keras(variant, model, preprocessings, weights):
        return [ev_scorers.Scorer(model, p, lambda x: np.eye(1000)[np.full(len(x), 7)]) for p in preprocessings]

    def fake_slim(stack, variant, model_dir, preprocessings):
        return [ev_scorers.Scorer("slim", p, lambda x: -np.ones((len(x), 1000))) for p in preprocessings]

    monkeypatch.setattr(ev_eval, "keras_scorers", fake_keras)
    monkeypatch.setattr(ev_eval, "slim_scorers", fake_slim)


def _tiny_dataset(root: Path, count: int, broken: int) -> Path:
    wnids = [w for w, _ in ev_data.class_index()]
    rng = np.random.default_rng(1)
    for i in range(count):
        folder = root / wnids[7 if i % 2 else 8]
        folder.mkdir(parents=True, exist_ok=True)
        data = tf.io.encode_png(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).numpy()
        (folder / f"i{i:03d}.png").write_bytes(b"not an image" if i < broken else data)
    return root


def test_one_unreadable_image_in_120_is_listed_and_excluded(setup, stub_models, tmp_path, capsys):
    data = _tiny_dataset(tmp_path / "ds", 120, broken=1)
    code, out, err = cli([V2, "--imagenet-dir", data, "--weights-dir", setup["weights"], "--archive",
                          setup[V2]["archive"], "--results", tmp_path / "r", "--preprocess", "keras"], capsys)
    assert code == 0, err
    broken = f"{ev_data.class_index()[8][0]}/i000.png"
    assert "1 unreadable image(s)" in err and broken in err
    assert "\r" not in err and "img/s" not in err  # stderr is no terminal here: no progress bar in it
    recs = records_by(tmp_path / "r")
    conv = recs[(V2, "converted", "keras")]
    assert conv["images"] == 119 and conv["unreadable"] == [broken]
    assert conv["top1"] == pytest.approx(100 * 60 / 119)  # the 60 class-7 images; the broken one was class 8
    assert broken in (tmp_path / "r" / ev_rec.ACCURACY_MD).read_text()


def test_more_than_one_percent_unreadable_is_an_error(setup, stub_models, tmp_path, capsys):
    data = _tiny_dataset(tmp_path / "ds", 120, broken=2)
    _bad(["--imagenet-dir", data, "--weights-dir", setup["weights"], "--archive", setup[V2]["archive"],
          "--results", tmp_path / "r"], capsys, "2 of 120 images", "unreadable", "i000.png", "i001.png")
    assert not (tmp_path / "r" / ev_rec.ACCURACY_JSON).exists()


def test_results_merge_per_name(setup, stub_models, tmp_path, capsys):
    data = _tiny_dataset(tmp_path / "ds", 4, broken=0)
    results = tmp_path / "r"
    for name in (V2, V1, V2):
        weights = tmp_path / "w"
        weights.mkdir(exist_ok=True)
        (weights / resolve(name).keras_weights).write_bytes(b"")
        preprocess = "slim" if name == V1 else ("keras" if (results / ev_rec.ACCURACY_JSON).exists() else "both")
        code, _, err = cli([name, "--imagenet-dir", data, "--weights-dir", weights, "--archive", setup[name]["archive"],
                            "--results", results, "--preprocess", preprocess], capsys)
        assert code == 0, err
    recs = records_by(results)
    # V2 re-evaluated under keras only: its both-preprocessing records are replaced; V1's are kept
    assert sorted(recs) == sorted([(V2, "converted", "keras"), (V2, "slim", "keras"),
                                   (V1, "converted", "slim"), (V1, "slim", "slim")])
    assert not list(results.glob(".*.tmp"))


def test_missing_weights_archive_and_offline_keras_are_errors(setup, tmp_path, capsys, monkeypatch):
    s = setup[V2]
    base = ["--imagenet-dir", s["dataset"], "--results", tmp_path / "r"]
    _bad([*base, "--weights-dir", tmp_path / "none", "--archive", s["archive"]], capsys,
         "converted weights of 0.35_96 not found")
    _bad([*base, "--weights-dir", setup["weights"], "--archive", tmp_path / "x.tgz"], capsys, "archive not found")
    _bad([*base, "--weights-dir", setup["weights"], "--cache", tmp_path / "cache"], capsys,
         "no archive of 0.35_96 in cache", "--archive")
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- [Errno -3] "
                        "Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", offline)
    _bad([*base, "--weights-dir", setup["weights"], "--archive", s["archive"], "--compare-keras", "--preprocess",
          "slim"], capsys, "weights=\"imagenet\"", "URL fetch failure", "--compare-keras")


def test_evaluate_after_an_up_to_date_run_extracts_the_cached_archive(setup, tmp_path, capsys):
    """Issue 15's sequence: `convert run NAME --cache C` (up to date: no extraction), then `convert evaluate
    NAME --cache C --imagenet-dir D` takes the verified archive from C/archives/ and extracts it itself."""
    from convert import pipeline

    v = setup[V2]["variant"]
    cache, weights = tmp_path / "cache", tmp_path / "weights"
    mirror = fixtures.publish([V2], tmp_path / "mirror")  # a local folder as the mirror
    run = [V2, "--cache", cache, "--mirror", mirror, "--ignore-pins", "--work", tmp_path / "work",
           "--weights-dir", weights, "--results", tmp_path / "run_results", "--quiet"]
    assert pipeline.main([str(a) for a in run]) == 0
    assert (cache / "extracted" / V2).is_dir()  # the first run extracted into the cache (it converted) …
    shutil.rmtree(cache / "extracted")
    assert pipeline.main([str(a) for a in run]) == 0  # … an up-to-date run does not
    assert not (cache / "extracted").exists() and (cache / "archives" / v.archive_filename).is_file()
    code, _, err = cli([V2, "--cache", cache, "--imagenet-dir", setup[V2]["dataset"], "--weights-dir", weights,
                        "--results", tmp_path / "r", "--preprocess", "slim"], capsys)
    assert code == 0, err
    recs = records_by(tmp_path / "r")
    assert recs[(V2, "slim", "slim")]["top1"] == recs[(V2, "converted", "slim")]["top1"] == 100.0
    assert recs[(V2, "slim", "slim")]["images"] == IMAGES
    assert not (cache / "extracted").exists()  # extracted into a temporary folder, the cache left as it was


def test_extracted_archive_is_temporary_and_a_corrupt_one_is_named(setup, tmp_path):
    from convert.errors import ConversionError
    from convert.extraction import extracted

    v = setup[V2]["variant"]
    with extracted(v, setup[V2]["archive"]) as root:
        prefix, _ = find_checkpoint(root, v, "ema")  # the layout's checkpoint is there
        assert prefix.with_name(prefix.name + ".index").is_file()
    assert not root.exists()
    corrupt = tmp_path / v.archive_filename
    corrupt.write_bytes(setup[V2]["archive"].read_bytes()[:5000])  # truncated
    with pytest.raises(ConversionError, match=f"cannot use archive {corrupt}"):
        with extracted(v, corrupt):
            pass
    with pytest.raises(FileNotFoundError, match="archive not found"):
        with extracted(v, tmp_path / "none.tgz"):
            pass


def test_help_and_registration(capsys):
    from convert.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--imagenet-dir" in out and "--preprocess" in out and "--compare-keras" in out


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_keras_path_gives_exactly_what_keras_load_img_gives(fmt, tmp_path):
    """The keras preprocessing runs inside tf.data, so it is held against keras.utils.load_img (Pillow)
    itself: the same pixels, bit for bit, for PNG and JPEG and odd sizes."""
    import keras
    from PIL import Image

    rng = np.random.default_rng(5)
    for i, (h, w) in enumerate([(375, 500), (333, 251), (97, 96)]):
        path = tmp_path / f"{i}.{fmt}"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        for rows in (96, 224):
            want = np.asarray(keras.utils.load_img(path, target_size=(rows, rows)), dtype=np.float32)
            assert np.array_equal(ev_pre.preprocess_file(path, rows, "keras"), want), (path.name, rows)


# --------------------------------------------------------------------------------------------------
# Quantized variants: five models, slim preprocessing only, the published figure labelled

QV2 = "quantized_v2_96_35"  # the smallest quantized variant
Q_IMAGES, Q_CANDIDATES = 6, 12
Q_MODELS = ("converted", "twin", "tflite", "archive-tflite", "slim")
MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"


def manifest_entry(file: str, **match) -> dict:
    """A variant's entry read from the manifest file itself (the catalogue's figures as the project pins them)."""
    doc = json.loads((MANIFESTS / file).read_text())
    return next(e for e in doc["variants"] if all(e.get(k) == v for k, v in match.items()))


@pytest.fixture(scope="module")
def quant_setup(tmp_path_factory, run_dir):
    """The factory's QAT archive of QV2 converted as tests/test_quant.py converts it (.h5, .keras, .tflite with
    the quant modules) and a <wnid>/ dataset labelled by the archive graph's own top-1 (FakeQuants included)."""
    from convert.quant import parity as qparity

    base = tmp_path_factory.mktemp("evaluate_quant")
    v = resolve(QV2)
    root, weights = fixtures.cached_extracted(QV2), quant_outputs(QV2, run_dir)  # shared with test_quant
    candidates = write_images(base / "candidates", Q_CANDIDATES, seed=3)
    batch = np.stack([ev_pre.preprocess_file(f, v.rows, "slim") for f in candidates])
    ref = qparity.graph_reference(root, v)
    logits = np.asarray(run_graph(ref.graph_def, batch, ref.feeds, v.family.nodes.logits)).reshape(len(batch), -1)
    logits = logits[:, v.label_offset:]
    top2 = np.sort(logits, axis=1)[:, -2:]
    gaps = top2[:, 1] - top2[:, 0]
    keep = sorted(np.argsort(-gaps)[:Q_IMAGES])  # the clearest top-1s
    assert np.all(gaps[keep] > 0)  # a unique top-1 on the graph's logit grid
    wnids = [w for w, _ in ev_data.class_index()]
    dataset = base / "dataset"
    for i in keep:
        folder = dataset / wnids[int(logits[i].argmax())]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(candidates[i], folder / candidates[i].name)
    return {"variant": v, "weights": weights, "dataset": dataset, "archive": fixtures.cached_archive(QV2),
            "base": base}


@pytest.fixture(scope="module")
def quant_evaluated(quant_setup):
    """``convert evaluate quantized_v2_96_35`` with the default --preprocess both: (results dir, stdout)."""
    import contextlib
    import io

    s, results, out = quant_setup, quant_setup["base"] / "results", io.StringIO()
    with contextlib.redirect_stdout(out):
        code = ev_cli.main([QV2, "--imagenet-dir", str(s["dataset"]), "--weights-dir", str(s["weights"]),
                            "--archive", str(s["archive"]), "--results", str(results), "--batch-size", "4"])
    assert code == 0
    return results, out.getvalue()


def test_quantized_variant_scores_five_models_under_slim_only(quant_setup, quant_evaluated):
    results, _ = quant_evaluated
    recs = records_by(results)
    assert set(recs) == {(QV2, m, "slim") for m in Q_MODELS}  # no keras-preprocessing rows
    for r in recs.values():
        assert r["images"] == Q_IMAGES and r["unreadable"] == [] and r["images_per_s"] > 0
        assert r["top1"] is not None and r["top5"] is not None
    # the archive's own graph (FakeQuants included) on its own labels
    assert recs[(QV2, "slim", "slim")]["top1"] == recs[(QV2, "slim", "slim")]["top5"] == 100.0
    # the twin reproduces the graph's quantized logits: the same top-1 on every image
    assert recs[(QV2, "twin", "slim")]["top1"] == recs[(QV2, "slim", "slim")]["top1"]
    md = (results / ev_rec.ACCURACY_MD).read_text()
    assert all(md.count(f"| {QV2} | {m} | slim | {Q_IMAGES} |") == 1 for m in Q_MODELS)


def test_v2_quant_published_figure_is_labelled_the_float_siblings(quant_setup, quant_evaluated):
    results, stdout = quant_evaluated
    sibling = manifest_entry("mobilenet_v2_quant.json", alpha="0.35", rows=96)
    assert sibling["top1"] is None and sibling["float_sibling_top1"] == 45.5  # the catalogue: V2 float 0.35_96
    for r in records_by(results).values():
        assert r["published_top1"] is None and r["published_top5"] is None  # nothing published of the quant model
        assert r["float_sibling_top1"] == 45.5
    rows = [line for line in (results / ev_rec.ACCURACY_MD).read_text().splitlines() if line.startswith(f"| {QV2} |")]
    assert len(rows) == len(Q_MODELS)
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[5] == "–" and cells[7] == "–"  # no Δ against the sibling's figure
        assert cells[-1] == "float sibling: 45.5"
        assert "45.5" not in cells[:-1]
    assert stdout.count("published top-1 float sibling: 45.5") == len(Q_MODELS)


def test_quantized_variant_under_keras_preprocessing_is_refused(quant_setup, tmp_path, capsys):
    s = quant_setup
    code, _, err = cli([QV2, "--imagenet-dir", s["dataset"], "--weights-dir", s["weights"], "--archive",
                        s["archive"], "--results", tmp_path / "r", "--preprocess", "keras"], capsys)
    assert code == 2 and "slim" in err.splitlines()[-1] and QV2 in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # refused before anything is written


def test_quantized_variant_without_twin_or_tflite_is_named(quant_setup, tmp_path, capsys):
    s, v = quant_setup, quant_setup["variant"]
    for missing in (v.family.twin_file(v), v.family.tflite_file(v)):
        weights = tmp_path / f"w_{Path(missing).suffix[1:]}"
        shutil.copytree(s["weights"], weights)
        (weights / missing).unlink()
        code, _, err = cli([QV2, "--imagenet-dir", s["dataset"], "--weights-dir", weights, "--archive", s["archive"],
                            "--results", tmp_path / "r", "--preprocess", "slim"], capsys)
        assert code == 2 and str(weights / missing) in err and "not found" in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name,file,match,top1,top5", [
    # the catalogue's table (tensorflow/models research/mobilenet README): mobilenet_v1_0.25_128_quant 39.9 / 65.8
    ("mobilenet_v1_0.25_128_quant", "mobilenet_v1_quant.json", {"alpha": "0.25", "rows": 128}, 39.9, 65.8),
    ("v3-small_224_1.0_uint8", "mobilenet_v3_quant.json", {"kind": "small"}, 64.9, None),  # catalogue: 64.9
])
def test_v1_and_v3_quant_records_carry_their_own_published_figures(name, file, match, top1, top5, monkeypatch,
                                                                    tmp_path):
    """The quantized model's own catalogue figure (no sibling label), through stand-in models."""
    from convert import report

    entry = manifest_entry(file, **match)
    assert entry["top1"] == top1 and entry.get("top5") == top5 and "float_sibling_top1" not in entry
    v = resolve(name)
    constant = lambda model: (lambda variant, *a, **k: [  # noqa: E731
        ev_scorers.Scorer(m, p, lambda x: np.eye(1000)[np.full(len(x), 7)]) for m in model for p in ("slim",)])
    monkeypatch.setattr(ev_eval, "keras_scorers", constant(["converted"]))
    monkeypatch.setattr(ev_eval, "quant_scorers", constant(["twin", "tflite"]))
    (tmp_path / v.keras_weights).write_bytes(b"")
    result = ev_eval.evaluate_variant(v, ev_data.scan_dataset(_tiny_dataset(tmp_path / "ds", 4, broken=0)),
                                      weights_dir=tmp_path, model_dir=None)
    assert [(r.model, r.preprocessing) for r in result.records] == [("converted", "slim"), ("twin", "slim"),
                                                                    ("tflite", "slim")]  # slim only
    assert all((r.published_top1, r.published_top5, r.float_sibling_top1) == (top1, top5, None)
               for r in result.records)
    report.write_accuracy(tmp_path / "r", result.records)
    md = (tmp_path / "r" / ev_rec.ACCURACY_MD).read_text()
    assert f"| {name} | twin | slim | 4 | 50.00 | {50 - top1:+.2f} |" in md  # 2 of the 4 images are class 7
    rows = [line for line in md.splitlines() if line.startswith(f"| {name} |")]
    assert len(rows) == 3 and all(line.endswith(f"| {top1:.1f} |") and "sibling" not in line for line in rows)
