"""The one place where TF-slim variable names and Keras weights meet: a family's name table
(:attr:`Family.names`), read in both directions, and the expected variable set derived from it and the
Keras architecture. Nothing is ever aligned by position.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .families import family as family_of
from .families.base import BN_LEAVES, LEAF_TO_KERAS, MOVING_STATS, Family, has_bn, kernel_leaf
from .keras_model import legacy_weights, model_for

EMA_SUFFIX = "ExponentialMovingAverage"


@dataclass(frozen=True)
class Target:
    """Where one TF model variable goes in Keras."""

    tf_name: str  # e.g. MobilenetV2/expanded_conv_3/expand/BatchNorm/gamma
    layer: str  # Keras layer, e.g. block_3_expand_BN
    weight: str  # Keras weight inside the layer, e.g. gamma
    kind: str  # the slim scope's kind: conv / depthwise / conv_bias / head
    leaf: str  # TF leaf: weights, depthwise_weights, biases, gamma, beta, moving_mean, moving_variance
    block: int | None  # the ``{block}`` number of the scope, None when the rule has none

    @property
    def is_moving_stat(self) -> bool:
        return self.leaf in MOVING_STATS

    @property
    def is_head(self) -> bool:
        return self.kind == "head"


@dataclass(frozen=True)
class Expected:
    target: Target
    shape: tuple[int, ...]  # the TF (checkpoint) shape


def _regex(template: str) -> re.Pattern:
    return re.compile("^" + re.escape(template).replace(r"\{block\}", r"(?P<block>[1-9][0-9]*)") + "$")


@functools.lru_cache(maxsize=None)
def _rules(key: str):
    return [(rule, _regex(rule.scope), _regex(rule.keras), rule.keras_bn and _regex(rule.keras_bn))
            for rule in family_of(key).names]


def _family(family: Family | str) -> str:
    return family if isinstance(family, str) else family.key


def keras_target(family: Family | str, tf_name: str) -> Target | None:
    """The Keras destination of a TF model variable (no shadow/slot suffix), or None if it is not one."""
    key = _family(family)
    scope_prefix = family_of(key).scope + "/"
    if not tf_name.startswith(scope_prefix):
        return None
    scope, _, leaf = tf_name[len(scope_prefix):].rpartition("/")
    in_bn = scope.endswith("/BatchNorm")
    if in_bn:
        scope = scope[: -len("/BatchNorm")]
    if leaf not in LEAF_TO_KERAS or in_bn != (leaf in BN_LEAVES):
        return None
    for rule, scope_re, _k, _b in _rules(key):
        m = scope_re.match(scope)
        if not m:
            continue
        groups = m.groupdict()
        if in_bn:
            if not has_bn(rule.kind):
                return None
            layer = rule.keras_bn.format(**groups)
        elif leaf == kernel_leaf(rule.kind) or (leaf == "biases" and not has_bn(rule.kind)):
            layer = rule.keras.format(**groups)
        else:
            return None
        block = int(groups["block"]) if "block" in groups else None
        return Target(tf_name, layer, LEAF_TO_KERAS[leaf], rule.kind, leaf, block)
    return None


def tf_name_for(family: Family | str, keras_layer: str, keras_weight: str) -> str | None:
    """Inverse of :func:`keras_target`: the TF model variable a Keras weight comes from, or None."""
    key = _family(family)
    for rule, _s, keras_re, bn_re in _rules(key):
        for regex, in_bn in ((keras_re, False), (bn_re, True)):
            m = regex.match(keras_layer) if regex is not None else None
            if not m:
                continue
            scope = f"{family_of(key).scope}/{rule.scope.format(**m.groupdict())}"
            if in_bn:
                name = f"{scope}/BatchNorm/{keras_weight}" if keras_weight in BN_LEAVES else None
            elif keras_weight == "kernel":
                name = f"{scope}/{kernel_leaf(rule.kind)}"
            elif keras_weight == "bias" and not has_bn(rule.kind):
                name = f"{scope}/biases"
            else:
                name = None
            target = keras_target(key, name) if name else None  # one table: the inverse must round-trip
            return name if target and (target.layer, target.weight) == (keras_layer, keras_weight) else None
    return None


def head_tf_shape(keras_shape: tuple[int, ...], leaf: str, label_offset: int) -> tuple[int, ...]:
    """Shape of the slim logits variable for a Keras head weight: the 1x1 conv kernel ``[1, 1, C, K + off]``
    for a Dense kernel ``[C, K]`` or a 1x1 conv kernel ``[1, 1, C, K]``; ``[K + off]`` for the bias. The one
    statement of the head's shape rule: the expected variable set and the .h5 writer's head hook
    (:func:`convert.keras_weights.head_hook`) both use it."""
    if leaf == "weights":
        *rest, k = keras_shape
        c = rest[-1]
        return (1, 1, c, k + label_offset)
    (k,) = keras_shape
    return (k + label_offset,)


@functools.lru_cache(maxsize=None)
def keras_weight_shapes(variant, include_top: bool = True) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    """(layer, weight, shape) of every weight of the variant's Keras model (with top, or without), in legacy order."""
    model = model_for(variant, include_top=include_top)
    return tuple((layer.name, w.name, tuple(int(d) for d in w.shape))
                 for layer in model.layers for w in legacy_weights(layer))


def expected_variables(variant, include_top: bool | None = None) -> dict[str, Expected]:
    """TF model variable -> (Keras target, checkpoint shape) for every weight of the Keras model with top
    (``include_top`` None: with top unless the variant is a backbone without head), in Keras model order."""
    include_top = variant.has_head if include_top is None else include_top
    out: dict[str, Expected] = {}
    for layer, weight, shape in keras_weight_shapes(variant, include_top):
        name = tf_name_for(variant.family_key, layer, weight)
        if name is None:
            raise RuntimeError(f"Keras weight {layer}/{weight} of {variant.name} has no TF counterpart in the "
                               f"{variant.family_key} name table")
        target = keras_target(variant.family_key, name)
        if target.is_head:
            shape = head_tf_shape(shape, target.leaf, variant.label_offset)
        out[name] = Expected(target, shape)
    return out
