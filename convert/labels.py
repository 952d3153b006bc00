"""Class names: ImageNet's 1000 (keras' own class index, shipped with the project), a user checkpoint's own,
the labels files beside the weights, and a ``decode_predictions`` that works offline.

A labels file is the format TFLite's examples ship (``labels.txt``): one class name a line, line k naming
output k; TF-slim's own ``labels.txt`` (``ID:NAME`` lines) is read too. ``imagenet_labels.txt`` holds the 1000
ImageNet names in Keras class order (keras' ``imagenet_class_index.json`` entry k's name on line k, verbatim); a ``.tflite`` gets ``<stem>_labels.txt``
in the order of its output. keras' own ``keras.applications.imagenet_utils.decode_predictions`` downloads
that class index on first use and offers no public argument to point it at a local copy (it finds one only
in ``$KERAS_HOME/models/``); :func:`decode_predictions` here reads the shipped copy and returns the same
lists. Importing this module imports neither TensorFlow nor Keras.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import ConversionError
from .evaluate.dataset import CLASS_INDEX_PATH, class_index

IMAGENET_LABELS = "imagenet_labels.txt"  # beside the weights, in weights/
LABELS_SUFFIX = "_labels.txt"  # <stem>_labels.txt: a .tflite's (or a user checkpoint's) own labels file
BACKGROUND = "background"  # slim's class 0, which a 1001-class output (an archive's own .tflite) keeps

__all__ = ["IMAGENET_LABELS", "LabelsError", "decode_predictions", "imagenet_names", "labels_file_name",
           "labels_text", "read_labels", "CLASS_INDEX_PATH"]


class LabelsError(ConversionError):
    """Bad class names or predictions (a count that does not match, a name with a line break, ...)."""


def imagenet_names() -> list[str]:
    """The 1000 ImageNet class names in Keras class order (keras' class index, shipped; never downloaded)."""
    return [name for _, name in class_index()]


def labels_file_name(output_file: str) -> str:
    """The labels file of an output file (``x.tflite`` -> ``x_labels.txt``)."""
    return Path(output_file).stem + LABELS_SUFFIX


def check_names(names: Sequence[str], what: str = "labels") -> list[str]:
    """``names`` as a list of non-empty one-line strings (a labels file holds one a line)."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise LabelsError(f"{what} must be a list of class names, got {type(names).__name__}")
    out = []
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip() or "\n" in name or "\r" in name:
            raise LabelsError(f"{what}: class {i} is {name!r}; each name must be a non-empty string on one line")
        out.append(name.strip())
    if not out:
        raise LabelsError(f"{what}: no class names")
    return out


def labels_text(names: Sequence[str]) -> bytes:
    """The labels file's bytes: one name a line, UTF-8, a final newline."""
    return "".join(f"{n}\n" for n in check_names(names)).encode("utf-8")


_SLIM_LINE = re.compile(r"^(\d+):(.*)$")


def read_labels(path: str | Path) -> list[str]:
    """The names of a labels file, in class order: one name a line (blank lines at the end are ignored), or
    TF-slim's own ``labels.txt`` (``datasets/dataset_utils.write_label_file``: ``ID:NAME`` a line, the dataset's
    label IDs 0 .. N-1, as ``download_and_convert_data.py`` writes it beside the TFRecords), put in ID order."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # a BOM (Windows editors) dropped
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(f"cannot read labels file {path}: {exc}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    matches = [_SLIM_LINE.match(line.strip()) for line in lines]
    if lines and all(matches):  # slim's ID:NAME map
        by_id: dict[int, str] = {}
        for line_no, m in enumerate(matches, 1):
            label = int(m.group(1))
            if label in by_id:
                raise LabelsError(f"{path}: label ID {label} twice (line {line_no}); slim's labels.txt has one "
                                  f"ID:NAME line per label")
            by_id[label] = m.group(2)
        missing = sorted(set(range(len(by_id))) - set(by_id))
        if missing:
            raise LabelsError(f"{path}: slim's ID:NAME labels must number the labels 0 .. {len(by_id) - 1}; "
                              f"missing ID(s) {', '.join(map(str, missing[:10]))}")
        return check_names([by_id[i] for i in range(len(by_id))], str(path))
    return check_names(lines, str(path))


def names_for_outputs(names: Sequence[str], outputs: int, label_offset: int = 0, what: str = "labels",
                      background: bool = False) -> list[str]:
    """``names`` for an output of ``outputs`` classes: as given when they are as many; when there is one name
    more per background class (``label_offset``: slim's class 0), the first ``label_offset`` are dropped;
    ``background``: the names lack slim's background class and the output keeps it (an archive's own
    1001-class ``.tflite``): ``background`` is put first."""
    names = check_names(names, what)
    if len(names) == outputs:
        return names
    if label_offset and len(names) == outputs + label_offset:
        return names[label_offset:]
    if background and label_offset and len(names) + label_offset == outputs:
        return [BACKGROUND] * label_offset + names
    raise LabelsError(f"{what}: {len(names)} class names for an output of {outputs} classes"
                      + (f" (or {outputs + label_offset} with slim's background class first)" if label_offset else ""))


def decode_predictions(preds, top: int = 5, labels: str | Path | Sequence[str] | None = None) -> list[list[tuple]]:
    """The ``top`` classes of each row of ``preds`` (a batch [n, classes] of probabilities or logits), best
    first, as keras' ``decode_predictions`` returns them: one list per row of ``(wnid, name, score)``, for the
    1000 ImageNet classes in Keras order (the shipped class index; offline).

    ``labels``: a labels file (one name a line, e.g. a ``.tflite``'s ``<stem>_labels.txt``) or a list of
    names, for outputs in another order or of other classes (a user checkpoint's): then each tuple is
    ``(class index, name, score)``, and ``preds`` must have one column per name."""
    preds = np.asarray(preds)
    if labels is None:
        ids, names = zip(*class_index())
    else:
        names = read_labels(labels) if isinstance(labels, (str, Path)) else check_names(labels)
        ids = range(len(names))
    if preds.ndim != 2 or preds.shape[1] != len(names):
        raise LabelsError(f"decode_predictions expects a batch of predictions [samples, {len(names)}] "
                          f"({'the 1000 ImageNet classes' if labels is None else 'one column per label'}), "
                          f"got shape {list(preds.shape)}")
    if not isinstance(top, (int, np.integer)) or isinstance(top, bool) or top < 1:
        raise LabelsError(f"top must be a positive integer, got {top!r}")
    out = []
    for row in preds:
        best = row.argsort()[-int(top):][::-1]  # keras' own selection and order
        result = [(ids[i], names[i], float(row[i])) for i in best]
        result.sort(key=lambda x: x[2], reverse=True)
        out.append(result)
    return out
