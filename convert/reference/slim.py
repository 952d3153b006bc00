"""slim's own vocabulary, stated here and nowhere else on the reference side: the variable leaves of a
layer, ``_make_divisible``, the layer and block records the builders lay out, and the float constants of
slim's activations. Nothing here is read from the Keras-side family data (``convert/families``): the
reference graph must stay an implementation of slim that a wrong Keras-side constant cannot leak into."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# slim's variable scopes of the three nets (``mobilenet_v1.py``'s and ``mobilenet.py``'s default ``scope``)
SCOPES = {"v1": "MobilenetV1", "v2": "MobilenetV2", "v3": "MobilenetV3"}
HEAD_SCOPE = "Logits/Conv2d_1c_1x1"


def classifier_endpoints(arch, pooled: str, logits: str = "Logits/output") -> dict[str, str | None]:
    """Node names of a slim graph's endpoints: the logits (below the model's scope), the ``pooled`` node, the
    head conv and the softmax (a backbone has only ``pooled``)."""
    s, head = arch.scope, arch.head
    return {"logits": f"{s}/{logits}" if head else None, "pooled": pooled,
            "head": f"{s}/{HEAD_SCOPE}/Conv2D" if head else None, "softmax": f"{s}/Predictions/Softmax" if head else None}
BN_LEAVES = ("gamma", "beta", "moving_mean", "moving_variance")
MOVING_STATS = ("moving_mean", "moving_variance")
BN_EPSILON = 1e-3  # slim's batch_norm_params epsilon in every MobileNet training/arg scope

# mobilenet_v3.py: hard_sigmoid's gate in squeeze_excite is ``relu6(x + 3) * 0.16667``; ``hard_swish`` is
# ``x * relu6(x + 3) * (1. / 6.)`` (both in float32)
SE_GATE = np.float32(0.16667)
HARD_SWISH_SCALE = np.float32(1.0 / 6.0)


def kernel_leaf(kind: str) -> str:
    """The kernel variable's leaf of a layer kind (slim.separable_conv2d with ``num_outputs=None``:
    ``depthwise_weights``)."""
    return "depthwise_weights" if kind == "depthwise" else "weights"


def has_bn(kind: str) -> bool:
    """Whether a layer kind is followed by slim.batch_norm (else by biases)."""
    return kind in ("conv", "depthwise")


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """slim's ``_make_divisible`` (``nets/mobilenet/mobilenet.py``): the nearest multiple of ``divisor``, at
    least ``min_value`` (default ``divisor``), raised by one step when rounding lost more than 10 %."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


@dataclass(frozen=True)
class Layer:
    """One variable-owning slim scope (graph order): a conv, depthwise conv, biased conv or the logits conv."""

    scope: str  # full scope, e.g. "MobilenetV3/expanded_conv_3/squeeze_excite/Conv"
    kind: str  # "conv" | "depthwise" | "conv_bias" | "head"
    kernel: int  # spatial kernel size (1, 3 or 5)
    cin: int
    cout: int

    def variables(self) -> dict[str, tuple[tuple[int, ...], bool]]:
        """The scope's model variables: name -> (shape, trainable); the BN moving statistics are not trainable."""
        k, s = self.kernel, self.scope
        if self.kind == "depthwise":
            out = {f"{s}/{kernel_leaf(self.kind)}": ((k, k, self.cin, 1), True)}
        else:
            out = {f"{s}/weights": ((k, k, self.cin, self.cout), True)}
        if not has_bn(self.kind):
            out[f"{s}/biases"] = ((self.cout,), True)
            return out
        for leaf in BN_LEAVES:
            out[f"{s}/BatchNorm/{leaf}"] = ((self.cout,), leaf not in MOVING_STATS)
        return out


@dataclass(frozen=True)
class Block:
    """One ``expanded_conv`` block (V2, V3) as slim builds it."""

    scope: str  # full scope, e.g. "MobilenetV3/expanded_conv_3"
    cin: int
    inner: int  # expansion width (== cin when there is no expand conv)
    cout: int
    kernel: int
    stride: int
    squeeze: int  # squeeze-excite bottleneck width, 0 without squeeze-excite
    act: str  # inner activation: "relu6", "relu" or "hard_swish"

    @property
    def expands(self) -> bool:
        return self.inner > self.cin

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.cin == self.cout

    def layers(self) -> list[Layer]:
        """The block's variable-owning scopes in graph order."""
        out = [Layer(f"{self.scope}/expand", "conv", 1, self.cin, self.inner)] if self.expands else []
        out.append(Layer(f"{self.scope}/depthwise", "depthwise", self.kernel, self.inner, self.inner))
        if self.squeeze:
            out.append(Layer(f"{self.scope}/squeeze_excite/Conv", "conv_bias", 1, self.inner, self.squeeze))
            out.append(Layer(f"{self.scope}/squeeze_excite/Conv_1", "conv_bias", 1, self.squeeze, self.inner))
        out.append(Layer(f"{self.scope}/project", "conv", 1, self.inner, self.cout))
        return out


def base_layers(scope: str, first_channels: int, blocks) -> list:
    """The stem conv ``Conv`` (3x3, stride 2, from RGB) and the layers of the ``expanded_conv`` blocks (V2, V3)."""
    out = [Layer(f"{scope}/Conv", "conv", 3, 3, first_channels)]
    for b in blocks:
        out += b.layers()
    return out
