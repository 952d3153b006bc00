"""Families are data: their file-name templates give keras.applications' own weight file names, their
constructor names are keras.applications constructors, and a sibling family is a change of data."""
from __future__ import annotations

import dataclasses

import pytest

from convert.families import FAMILIES
from convert.manifest import default_manifest, resolve

# Expected names, written out by hand from keras' source (keras 3.15, keras/src/applications/):
KERAS_NAMES = {
    # mobilenet.py: alpha_text "1_0" / "7_5" / "5_0" / "2_5"; "mobilenet_%s_%d_tf.h5" and "..._tf_no_top.h5"
    "mobilenet_v1_1.0_224": ("mobilenet_1_0_224_tf.h5", "mobilenet_1_0_224_tf_no_top.h5"),
    "mobilenet_v1_0.75_192": ("mobilenet_7_5_192_tf.h5", "mobilenet_7_5_192_tf_no_top.h5"),
    "mobilenet_v1_0.5_160": ("mobilenet_5_0_160_tf.h5", "mobilenet_5_0_160_tf_no_top.h5"),
    "mobilenet_v1_0.25_128": ("mobilenet_2_5_128_tf.h5", "mobilenet_2_5_128_tf_no_top.h5"),
    # mobilenet_v2.py: "mobilenet_v2_weights_tf_dim_ordering_tf_kernels" f"_{float(alpha)}_{rows}.h5" / "..._no_top.h5"
    "1.4_224": ("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.4_224.h5",
                "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.4_224_no_top.h5"),
    "0.35_96": ("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96.h5",
                "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"),
    "0.75_128": ("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.75_128.h5",
                 "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.75_128_no_top.h5"),
    # mobilenet_v3.py: the WEIGHTS_HASHES keys as model_name; f"weights_mobilenet_v3_{model_name}.h5" / "..._no_top_v2.h5"
    "v3-large_224_0.75_float": ("weights_mobilenet_v3_large_224_0.75_float.h5",
                                 "weights_mobilenet_v3_large_224_0.75_float_no_top_v2.h5"),
    "v3-large_224_1.0_float": ("weights_mobilenet_v3_large_224_1.0_float.h5",
                                "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5"),
    "v3-large-minimalistic_224_1.0_float": ("weights_mobilenet_v3_large_minimalistic_224_1.0_float.h5",
                                             "weights_mobilenet_v3_large_minimalistic_224_1.0_float_no_top_v2.h5"),
    "v3-small_224_0.75_float": ("weights_mobilenet_v3_small_224_0.75_float.h5",
                                 "weights_mobilenet_v3_small_224_0.75_float_no_top_v2.h5"),
    "v3-small_224_1.0_float": ("weights_mobilenet_v3_small_224_1.0_float.h5",
                                "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"),
    "v3-small-minimalistic_224_1.0_float": ("weights_mobilenet_v3_small_minimalistic_224_1.0_float.h5",
                                             "weights_mobilenet_v3_small_minimalistic_224_1.0_float_no_top_v2.h5"),
}
# keras.applications' constructor per family (and V3 kind), from the same files
CONSTRUCTORS = {"mobilenet_v1_0.25_128": "MobileNet", "0.35_96": "MobileNetV2",
                "v3-large_224_1.0_float": "MobileNetV3Large", "v3-small-minimalistic_224_1.0_float": "MobileNetV3Small",
                # the quantization-aware archives' float weights load into their float sibling's constructor
                "mobilenet_v1_0.25_128_quant": "MobileNet", "quantized_v2_96_35": "MobileNetV2",
                "v3-large-minimalistic_224_1.0_uint8": "MobileNetV3Large", "v3-small_224_1.0_uint8": "MobileNetV3Small"}


@pytest.mark.parametrize("name", sorted(KERAS_NAMES))
def test_keras_file_names_from_the_templates_are_keras_own(name):
    variant = resolve(name)
    assert variant.family.keras_files(variant) == KERAS_NAMES[name]


def test_every_v3_variant_is_among_keras_weight_files():
    v3 = [v for v in default_manifest() if v.family_key == "v3"]
    assert len(v3) == 6 and all(v.name in KERAS_NAMES for v in v3)


@pytest.mark.parametrize("name", sorted(CONSTRUCTORS))
def test_constructor_names_are_keras_applications(name):
    import keras

    variant = resolve(name)
    assert variant.family.keras_constructor(variant) == CONSTRUCTORS[name]
    assert callable(getattr(keras.applications, CONSTRUCTORS[name]))


def test_a_sibling_family_is_a_change_of_data():
    """A quantized V2 sibling (other stem and layout, same Keras files) needs no code: its names follow."""
    v2 = FAMILIES["v2"]
    quant = dataclasses.replace(
        v2, key="v2-quant", files=dataclasses.replace(v2.files, stem="quantized_v2_{rows}_{alpha_percent}",
                                                      short_name=None),
        layout=dataclasses.replace(v2.layout, frozen="{stem}_frozen.pb", info=None))
    variant = resolve("0.35_96")
    assert quant.stem(variant) == "quantized_v2_96_35"
    assert quant.short_name(variant) == "quantized_v2_96_35"
    assert quant.keras_files(variant) == v2.keras_files(variant)
    assert quant.keras_call(variant) == v2.keras_call(variant)


def test_lookup_tables_reject_a_value_outside_them():
    """A name part looked up from a field validates that field (V3's kind)."""
    variant = dataclasses.replace(resolve("v3-large_224_1.0_float"), kind="medium")
    assert variant.family.validate(variant) == "field 'kind' is 'medium'; valid kinds: large, small"
