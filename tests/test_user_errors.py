"""``convert checkpoint``'s bad inputs (issue 21, point 5): each is an error naming the input and what would be
valid, with exit code 2, and nothing is written to ``--out``."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run_main
from convert.factory import fixtures
from convert.user.cli import main

V2 = "0.35_96"


def _save(tmp: Path, variables: dict[str, np.ndarray]) -> Path:
    """A TF1 checkpoint of exactly ``variables`` (what tf.compat.v1's Saver writes)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    prefix = tmp / "model.ckpt-100"
    with tf.Graph().as_default():
        made = {n: v1.get_variable(n, initializer=tf.constant(a), use_resource=False) for n, a in variables.items()}
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            v1.train.Saver(made).save(sess, str(prefix), write_meta_graph=False, write_state=True)
    return prefix


def _empty_out(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    return out


def test_a_checkpoint_that_is_no_mobilenet_names_the_scopes_found(tmp_path, capsys):
    rng = np.random.default_rng(0)
    resnet = {f"resnet_v1_50/block{b}/unit_1/bottleneck_v1/conv1/weights": rng.standard_normal((1, 1, 8, 8)).astype(np.float32)
              for b in range(1, 4)}
    resnet["resnet_v1_50/logits/biases"] = np.zeros(10, np.float32)
    resnet["global_step"] = np.array(100, np.int64)
    _save(tmp_path, resnet)
    out = _empty_out(tmp_path)
    code, _, err = run_main(main, [str(tmp_path), "--out", str(out)], capsys)
    assert code == 2 and "resnet_v1_50" in err and "MobilenetV" in err, err
    assert list(out.iterdir()) == []


def test_a_truncated_data_file_is_named(tmp_path, capsys):
    src = Path(fixtures.cached_checkpoint(V2))
    for f in src.parent.glob(src.name + ".*"):
        shutil.copy(f, tmp_path / f.name)
    data = next(tmp_path.glob("*.data-*"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    out = _empty_out(tmp_path)
    code, _, err = run_main(main, [str(tmp_path / src.name), "--rows", "96", "--out", str(out)], capsys)
    assert code == 2 and data.name in err and "truncated" in err, err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("args, words", [
    (["--family", "v1"], ["--family", "v1", "MobilenetV2"]),
    (["--alpha", "1.0"], ["alpha", "1.0", "0.35"]),
    (["--classes", "5"], ["classes", "5", "1001"]),
    (["--label-offset", "1001"], ["--label-offset 1001", "0..1000"]),
    (["--rows", "16"], ["16", "32"]),
    (["--name", "../escape"], ["--name", "../escape"]),
])
def test_contradicting_or_impossible_options_are_named(args, words, tmp_path, capsys):
    out = _empty_out(tmp_path)
    code, _, err = run_main(main, [fixtures.cached_checkpoint(V2), "--out", str(out), *args], capsys)
    assert code == 2 and all(w in err for w in words), err
    assert list(out.iterdir()) == []


def test_an_out_that_is_or_is_under_a_file_or_dangles_is_refused_before_any_work(tmp_path, capsys):
    weights = tmp_path / "weights"
    weights.write_text("not a folder")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for out, words in ((weights, f"{weights} is a file"), (weights / "sub", f"{weights} is a file"),
                       (tmp_path / "dangling", "is a link to nothing")):
        code, stdout, err = run_main(main, [fixtures.cached_checkpoint(V2), "--rows", "96", "--out", str(out)], capsys)
        assert code == 2 and f"--out {out}" in err and words in err and "checkpoint" not in stdout, err
    assert weights.read_text() == "not a folder" and sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "weights"]


def test_a_path_without_a_checkpoint_says_what_it_holds(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no checkpoint here")
    out = _empty_out(tmp_path)
    code, _, err = run_main(main, [str(tmp_path), "--out", str(out)], capsys)
    assert code == 2 and "no TF checkpoint" in err and "notes.txt" in err, err
    code, _, err = run_main(main, [str(tmp_path / "model.ckpt-7"), "--out", str(out)], capsys)
    assert code == 2 and "model.ckpt-7" in err and "PREFIX.index" in err, err
    assert sorted(p.name for p in out.iterdir()) == []


def test_labels_of_the_wrong_count_are_refused(tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("daisy\ntulip\n")
    out = _empty_out(tmp_path)
    code, _, err = run_main(main, [fixtures.cached_checkpoint(V2), "--rows", "96", "--labels", str(labels),
                                   "--out", str(out)], capsys)
    assert code == 2 and "2 class names" in err and "1000 classes" in err, err
    assert list(out.iterdir()) == []


def test_a_training_graph_given_as_graph_is_refused(tmp_path, capsys):
    """A training .meta (the quantized training form's) as --graph: refused, naming why."""
    import tensorflow as tf

    root = fixtures.cached_extracted("quantized_v2_96_35", form="training_meta")
    meta = next(root.rglob("*.meta"))
    graph = tf.compat.v1.MetaGraphDef()
    graph.ParseFromString(meta.read_bytes())
    path = tmp_path / "graph.pb"
    path.write_bytes(graph.graph_def.SerializeToString())
    from convert.manifest import resolve
    from convert.user.prove import GraphError, given_reference

    with pytest.raises(GraphError) as exc:
        given_reference(path, resolve("0.35_96"), Path(fixtures.cached_checkpoint(V2)), "ema")
    assert "training graph" in str(exc.value) and "FakeQuant range(s) updated" in str(exc.value)


def test_a_graph_of_another_input_size_is_named(tmp_path, capsys):
    """A --graph whose placeholder has a fixed size other than the conversion's: named, with the option to pass."""
    from convert.manifest import resolve
    from convert.user.prove import GraphError, given_reference

    graph = next(fixtures.cached_extracted(V2).glob("*_frozen.pb"))  # input [1, 96, 96, 3]? or [None, 96, 96, 3]
    variant = resolve("0.35_224")  # 224 x 224
    with pytest.raises(GraphError) as exc:
        given_reference(graph, variant, Path(fixtures.cached_checkpoint(V2)), "ema")
    assert "96 x 96" in str(exc.value) and "224 x 224" in str(exc.value) and "--input-size 96 96" in str(exc.value)


def test_too_few_verify_inputs_and_labels_for_a_backbone_are_refused(tmp_path, capsys):
    out = _empty_out(tmp_path)
    code, _, err = run_main(main, [fixtures.cached_checkpoint(V2), "--random", "0", "--out", str(out)], capsys)
    assert code == 2 and "--random 0" in err, err
    assert list(out.iterdir()) == []


def test_slims_own_labels_file_is_read_in_id_order_and_a_gap_is_named(tmp_path):
    """TF-slim's labels.txt as datasets/dataset_utils.write_label_file writes it ("%d:%s" a line)."""
    from convert.labels import LabelsError, read_labels

    names = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    slim = tmp_path / "labels.txt"
    slim.write_text("".join("%d:%s\n" % (i, names[i]) for i in (3, 0, 4, 1, 2)))
    assert read_labels(slim) == names
    plain = tmp_path / "plain.txt"
    plain.write_text("daisy\n7:00 news\n")  # not every line ID:NAME: a plain file, names verbatim
    assert read_labels(plain) == ["daisy", "7:00 news"]
    slim.write_bytes(b"\xef\xbb\xbf0:daisy\r\n1:roses\r\n")  # a BOM and CRLF, as Windows editors save it
    assert read_labels(slim) == ["daisy", "roses"]
    slim.write_text("0:daisy\n2:roses\n")
    with pytest.raises(LabelsError, match=r"missing ID\(s\) 1"):
        read_labels(slim)
    slim.write_text("0:daisy\n0:roses\n")
    with pytest.raises(LabelsError, match="label ID 0 twice"):
        read_labels(slim)
