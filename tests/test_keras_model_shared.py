"""One Keras model per architecture, on an input of any size, serves every resolution of it; the
pipeline hands a worker the variants of one architecture one after another.

The oracle is keras.applications' own constructor at the variant's fixed input shape: the files written
from the shared ``(None, None, 3)`` model must be the ones written from that model, and the constructor
must load them."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py  # noqa: E402
import keras  # noqa: E402

from _worker_faults import DIES, die_on_one, no_init  # noqa: E402
from convert import pipeline  # noqa: E402
from convert.factory import fixtures  # noqa: E402
from convert.checkpoint import extract  # noqa: E402
from convert.download import FetchFailure  # noqa: E402
from convert.guide import load_layer_guide  # noqa: E402
from convert.keras_model import ARCHITECTURE_FIELDS, architecture, model_for, release  # noqa: E402
from convert.keras_weights import assign_guide, convert_guide, write_legacy_h5  # noqa: E402
from convert.manifest import default_manifest, resolve  # noqa: E402

ONE_PER_FAMILY = ["mobilenet_v1_0.25_128", "0.35_96", "v3-large_224_0.75_float"]


def constructor_model(v, include_top: bool, **kwargs):
    """keras.applications' model of ``v`` at its fixed input shape, as a user builds it (the input layer
    named as in the legacy files, so the two files can be compared whole)."""
    apps, shape = keras.applications, (v.rows, v.rows, 3)
    common = dict(alpha=float(v.alpha), input_shape=shape, include_top=include_top, classes=1000, **kwargs)
    if v.family_key == "v1":
        return apps.MobileNet(**common)
    if v.family_key == "v2":
        return apps.MobileNetV2(**common)
    ctor = apps.MobileNetV3Large if v.kind == "large" else apps.MobileNetV3Small
    return ctor(minimalistic=v.minimalistic, **common)


def h5_content(path: Path) -> tuple[list[str], dict[str, list[str]], dict[str, bytes]]:
    """Layer names in order, each layer's weight names, and every dataset's dtype, shape and bytes."""
    with h5py.File(path, "r") as f:
        layers = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        names = {l: [n.decode() if isinstance(n, bytes) else n for n in f[l].attrs["weight_names"]] for l in layers}
        data = {f"{l}/{n}": f"{f[l][n].dtype}{f[l][n].shape}".encode() + f[l][n][()].tobytes()
                for l in layers for n in names[l]}
    return layers, names, data


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_shared_model_writes_the_fixed_shape_constructors_files(name, tmp_path):
    v = resolve(name)
    guide = load_layer_guide(extract(v, archive=fixtures.cached_archive(v.name), out_dir=tmp_path / "work"))
    release()
    for _ in range(3):  # auto-named layers made earlier in the process must not change the written names
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dropout(0.1), keras.layers.Rescaling(1.0)
    convert_guide(guide, v, tmp_path / "shared")  # the conversion's own path: model_for
    assert model_for(v, True).input_shape == (None, None, None, 3), "not the shared any-size model"

    for include_top, written in ((True, tmp_path / "shared" / v.keras_weights),
                                 (False, tmp_path / "shared" / v.keras_weights_no_top)):
        keras.backend.clear_session()
        fixed = constructor_model(v, include_top, weights=None,
                                  input_tensor=keras.Input((v.rows, v.rows, 3), name="input_1"))
        reference = write_legacy_h5(fixed, assign_guide(fixed, guide, v, include_top, assign=False),
                                    tmp_path / "fixed" / written.name)
        ours, theirs = h5_content(written), h5_content(reference)
        assert ours[0] == theirs[0], "layer names differ"
        assert ours[1] == theirs[1], "weight names differ"
        assert ours[2].keys() == theirs[2].keys()
        differing = [k for k in theirs[2] if ours[2][k] != theirs[2][k]]
        assert not differing, f"weights differ: {differing[:5]}"
        assert written.read_bytes() == reference.read_bytes()

        loaded = constructor_model(v, include_top, weights=str(written))  # what a user of the file does
        with h5py.File(written, "r") as f:
            for layer in loaded.layers:
                got = [np.asarray(w.numpy()) for w in layer.weights]
                stored = [f[layer.name][n][()] for n in f[layer.name].attrs["weight_names"]] if layer.weights else []
                assert len(got) == len(stored) and all(a.tobytes() == b.tobytes() for a, b in zip(got, stored)), \
                    layer.name
    release()


def test_the_architecture_is_every_field_a_constructor_reads_but_rows():
    """The families' constructors read no variant field but the input size and ARCHITECTURE_FIELDS, so that
    variants equal in those have the same layers and weights (one per family, and V3 small minimalistic)."""

    class Recording:
        def __init__(self, variant):
            self._variant, self.read = variant, set()

        def __getattr__(self, field):
            self.read.add(field)
            return getattr(self._variant, field)

    for name in [*ONE_PER_FAMILY, "v3-small-minimalistic_224_1.0_float"]:
        v = resolve(name)
        proxy = Recording(v)
        keras.backend.clear_session()
        v.family.keras_model(proxy, True, classifier_activation=None)
        size = {"rows", "input_size"}  # the input size (rows, or (rows, cols)): what the shared model leaves open
        assert proxy.read & size and proxy.read - size <= set(ARCHITECTURE_FIELDS), (name, proxy.read)


def test_one_model_serves_every_resolution_of_an_architecture():
    a, b, other = resolve("0.35_96"), resolve("0.35_224"), resolve("0.5_96")
    release()
    first = model_for(a, True)
    assert model_for(b, True) is first and model_for(b, False) is model_for(a, False)
    assert model_for(other, True) is not first
    release()
    # the 44 variants: V1 16 -> 4 alphas, V2 22 -> 6 alphas, V3 6 -> 6 architectures (the manifest's tables)
    variants = default_manifest().variants
    by_family = {f: {architecture(v) for v in variants if v.family_key == f} for f in ("v1", "v2", "v3")}
    assert {f: sum(v.family_key == f for v in variants) for f in by_family} == {"v1": 16, "v2": 22, "v3": 6}
    assert {f: len(archs) for f, archs in by_family.items()} == {"v1": 4, "v2": 6, "v3": 6}


def test_dispatch_hands_a_worker_whole_architectures():
    variants = list(default_manifest().variants)
    random.Random(0).shuffle(variants)
    ordered = pipeline.by_architecture(variants)
    assert sorted(v.name for v in ordered) == sorted(v.name for v in variants)
    runs = [architecture(v) for i, v in enumerate(ordered) if i == 0 or architecture(v) != architecture(ordered[i - 1])]
    assert len(runs) == len(set(runs)) == 16, "an architecture's variants are not next to each other"

    # 85 variants. Fair share ceil(85 / 2) = 43: whole architectures, the largest V2 alpha 1.0's 5 float + 5
    # quantized rows (a quantized variant's float .h5 is its float sibling's model); ceil(85 / 16) = 6
    for workers, largest in ((2, 10), (16, 6)):
        groups = pipeline._Groups(variants, workers)
        sent = []
        arrivals = list(variants)
        random.Random(1).shuffle(arrivals)  # downloads finish in any order
        for v in arrivals:
            sent += groups.arrived(FetchFailure(v, "not used"), waits=v.name != "1.0_224")  # one settled
        sent += groups.leftover()
        names = [item.variant.name for group in sent for item in group]
        assert sorted(names) == sorted(v.name for v in variants if v.name != "1.0_224"), "lost or repeated"
        assert all(len({architecture(i.variant) for i in group}) == 1 for group in sent)
        assert max(len(group) for group in sent) == largest
    small = [resolve(n) for n in ("0.35_96", "0.35_128", "0.35_160")]  # one architecture, two workers
    groups = pipeline._Groups(small, 2)
    sent = [g for v in small for g in groups.arrived(FetchFailure(v, "not used"), waits=True)]
    assert [[i.variant.name for i in g] for g in sent] == [["0.35_96", "0.35_128"], ["0.35_160"]]


def test_a_worker_that_dies_in_a_group_fails_only_its_own_variant():
    """A group whose middle variant kills its worker: every variant of the group is tried again alone; only
    the one that kills its worker by itself fails."""
    names = ["0.5_96", "0.5_128", "0.5_160"]
    assert DIES in names and all(architecture(resolve(n)) == architecture(resolve(DIES)) for n in names)
    group = [FetchFailure(resolve(n), "not used") for n in names]
    workers = pipeline._Workers(pipeline.Options(jobs=2), len(group), fn=die_on_one, init=no_init)
    try:
        workers.submit_group(group)
        rows = dict((item.variant.name, row) for item, row in workers.finished(block=True))
    finally:
        workers.close()
    assert {n: r.passed for n, r in rows.items()} == {n: n != DIES for n in names}
    assert "worker process died while converting it, alone" in rows[DIES].error
