"""ImageNet-style datasets: which image files, and their Keras class indices.

Layouts: ``DIR/<wnid>/*.JPEG`` (the ILSVRC2012 val folder layout), or a flat folder with a labels file:
slim's ``imagenet_2012_validation_synset_labels.txt`` (one wnid per line, for the files in sorted name
order) or lines ``filename,wnid`` (a header line, file names without extension and more fields after the
wnid, as in Kaggle's ``LOC_val_solution.csv``, are accepted). Class ids are Keras'
(``convert/data/imagenet_class_index.json``, the 1000 ILSVRC2012 wnids in sorted order).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import UserError

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
CLASS_INDEX_PATH = DATA_DIR / "imagenet_class_index.json"
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".gif")
_WNID = re.compile(r"^n\d{8}$")


@lru_cache(maxsize=1)
def class_index() -> tuple[tuple[str, str], ...]:
    """The 1000 ILSVRC2012 classes in Keras order: ((wnid, name), …) (shipped, never downloaded)."""
    doc = json.loads(CLASS_INDEX_PATH.read_text())
    return tuple(tuple(doc[str(i)]) for i in range(len(doc)))


def wnid_to_class() -> dict[str, int]:
    """wnid -> Keras class index (0..999)."""
    return {wnid: i for i, (wnid, _) in enumerate(class_index())}


@dataclass
class Dataset:
    """Image files and their Keras class indices (parallel lists), in evaluation order."""

    root: Path
    files: list[Path]
    labels: list[int]
    layout: str  # "folders" | "synset-lines" | "filename,wnid"

    def __len__(self) -> int:
        return len(self.files)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _folder_layout(root: Path) -> tuple[list[Path], list[int]]:
    known = wnid_to_class()
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [p.name for p in folders if p.name not in known]
    if unknown:
        raise UserError(f"{root}: unknown wnid folder(s) {', '.join(repr(u) for u in unknown[:5])}"
                        f"{' …' if len(unknown) > 5 else ''}; expected only ILSVRC2012 class folders such as "
                        f"n01440764/ (or a flat folder with --labels FILE)")
    files, labels = [], []
    for folder in folders:
        for path in sorted(folder.iterdir()):
            if _is_image(path):
                files.append(path)
                labels.append(known[folder.name])
    return files, labels


def _filename_wnid_layout(lines, labels_file: Path, root: Path, images: list[Path], cls) -> list[int]:
    """Labels of ``images`` from ``filename,wnid`` lines (also Kaggle's LOC_val_solution.csv: a header,
    names without extension, boxes after the wnid)."""
    by_name: dict[str, int] = {}
    for n, line in lines:
        name, _, rest = (part.strip() for part in line.partition(","))
        wnid = rest.split()[0] if rest.split() else ""
        if n == lines[0][0] and not _WNID.match(wnid):
            continue  # a header line
        if not name:
            raise UserError(f"{labels_file}:{n}: expected 'filename,wnid', got {line!r}")
        if name in by_name:
            raise UserError(f"{labels_file}:{n}: {name!r} is listed twice")
        by_name[name] = cls(n, wnid)
    key = lambda p: p.name if p.name in by_name else p.stem  # noqa: E731 (file name, or without extension)
    present = {key(p) for p in images}
    missing = [name for name in by_name if name not in present]
    unlabelled = [p.name for p in images if key(p) not in by_name]
    if missing or unlabelled:
        parts = []
        if missing:
            parts.append(f"{len(missing)} listed file(s) not in {root} (e.g. {', '.join(missing[:3])})")
        if unlabelled:
            parts.append(f"{len(unlabelled)} image(s) in {root} not listed (e.g. {', '.join(unlabelled[:3])})")
        raise UserError(f"labels file {labels_file} does not match the files: {'; '.join(parts)}")
    return [by_name[key(p)] for p in images]


def _read_labels(labels_file: Path, root: Path) -> tuple[list[Path], list[int], str]:
    known = wnid_to_class()
    try:
        lines = [(i + 1, line.strip()) for i, line in enumerate(labels_file.read_text().splitlines())]
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read labels file {labels_file}: {exc}") from None
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise UserError(f"labels file {labels_file} is empty")
    images = sorted(p for p in root.iterdir() if _is_image(p))
    if not images:
        raise UserError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)}) for labels file {labels_file}")

    def cls(n: int, wnid: str) -> int:
        if wnid not in known:
            raise UserError(f"{labels_file}:{n}: {wnid!r} is not an ILSVRC2012 wnid (like n01440764)")
        return known[wnid]

    if "," in lines[0][1]:
        return images, _filename_wnid_layout(lines, labels_file, root, images, cls), "filename,wnid"
    if len(lines) != len(images):
        raise UserError(f"labels file {labels_file} does not match the files: it has {len(lines)} wnid line(s) "
                        f"but {root} holds {len(images)} image(s) (one wnid per image, in sorted file-name order)")
    return images, [cls(n, line) for n, line in lines], "synset-lines"


def balanced_subset(files: list[Path], labels: list[int], limit: int) -> tuple[list[Path], list[int]]:
    """A deterministic class-balanced subset: round-robin over the classes (sorted), each class's files
    in sorted order, until ``limit`` images are taken."""
    by_class: dict[int, list[Path]] = {}
    for path, label in zip(files, labels):
        by_class.setdefault(label, []).append(path)
    order = sorted(by_class)
    queues = [sorted(by_class[c]) for c in order]
    out_files, out_labels, depth = [], [], 0
    while len(out_files) < limit and any(depth < len(q) for q in queues):
        for c, q in zip(order, queues):
            if depth < len(q) and len(out_files) < limit:
                out_files.append(q[depth])
                out_labels.append(c)
        depth += 1
    return out_files, out_labels


def scan_dataset(root: str | Path, labels_file: str | Path | None = None, limit: int | None = None) -> Dataset:
    """The images of an ImageNet-style folder and their Keras class indices; bad input is a UserError."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--imagenet-dir {root} is not a directory")
    if labels_file is not None:
        labels_file = Path(labels_file)
        if not labels_file.is_file():
            raise UserError(f"labels file not found: {labels_file}")
        files, labels, layout = _read_labels(labels_file, root)
    else:
        if not any(p.is_dir() for p in root.iterdir()):
            loose = any(_is_image(p) for p in root.iterdir())
            raise UserError(f"{root} holds no images" if not loose else
                            f"{root} holds images but no <wnid>/ class folders; give --labels FILE for a flat folder")
        files, labels = _folder_layout(root)
        layout = "folders"
    if not files:
        raise UserError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if limit is not None:
        if limit < 1:
            raise UserError(f"--limit must be at least 1, got {limit}")
        files, labels = balanced_subset(files, labels, limit)
    return Dataset(root, files, labels, layout)
