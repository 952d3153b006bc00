"""The typed records the pipeline passes between its modules and writes out, each with one ``to_json`` /
``from_json`` pair: what a conversion knows (:class:`ConversionFacts`), a parity check's figures
(:class:`ParityRecord`, a row of ``results/test_results.json``) and the pipeline's per-variant row
(:class:`RunRow`).

The JSON keeps the keys the README documents (the original converter's ``alpha rows pred_keras_score
pred_tf_score preds_agree max_vector_difference inference_time_tf inference_time_keras model`` plus the
parity figures); key lookups happen only in the ``from_json`` functions.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .evaluate.records import AccuracyRecord
from .guide import Accounting, Provenance
from .preprocessing import Preprocessing

# the keys of the original converter's report, which every parity record carries
LEGACY_KEYS = ("alpha", "rows", "pred_keras_score", "pred_tf_score", "preds_agree", "max_vector_difference",
               "inference_time_tf", "inference_time_keras", "model")


def _known(cls, data: dict) -> dict:
    """The entries of ``data`` that are fields of ``cls`` (a record written by another version of the
    converter may have more, or fewer: those take their defaults)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _require(cls, data: Any, keys: tuple[str, ...]) -> dict:
    if not isinstance(data, dict):
        raise ValueError(f"a {cls.__name__} must be a JSON object, got {type(data).__name__}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(f"{cls.__name__} lacks {', '.join(missing)} (has: {', '.join(sorted(data))})")
    return data


# --------------------------------------------------------------------------------------------------
# Conversion facts: what keras_weights.convert_guide knows about the files it wrote


@dataclass(frozen=True)
class ValuesUsed:
    """Which checkpoint values the converted weights hold."""

    requested: str  # auto / ema / raw
    mode: str  # what was used: ema or raw
    by_source: dict[str, int]  # "ema"/"raw" -> number of weights

    def summary(self) -> str | None:
        """e.g. ``ema 158, raw 104`` (None when nothing is known)."""
        return ", ".join(f"{k} {v}" for k, v in sorted(self.by_source.items())) or None


@dataclass(frozen=True)
class ConversionFacts:
    """One conversion of one variant: the .h5 files written and their sha256, the values used, where they
    came from and the package versions. The sidecar's conversion section is :meth:`to_json`."""

    variant: str
    family: str
    stem: str
    alpha: str
    rows: int
    kind: str | None
    minimalistic: bool
    files: dict[str, str]  # .h5 file name -> sha256
    provenance: Provenance
    values: ValuesUsed
    label_offset: int
    classes: int  # the Keras head's classes
    counts: Accounting
    versions: dict[str, str]

    def to_json(self) -> dict:
        return {"variant": self.variant, "family": self.family, "stem": self.stem, "alpha": self.alpha,
                "rows": self.rows, "kind": self.kind, "minimalistic": self.minimalistic, "files": dict(self.files),
                "provenance": {**dataclasses.asdict(self.provenance), "pin_status": self.provenance.pin_status},
                "weights": dataclasses.asdict(self.values), "label_offset": self.label_offset,
                "classes": self.classes, "counts": dataclasses.asdict(self.counts), "versions": dict(self.versions)}

    @classmethod
    def from_json(cls, data: Any) -> ConversionFacts:
        d = _require(cls, data, ("variant", "family", "files", "provenance", "weights", "counts"))
        return cls(variant=d["variant"], family=d["family"], stem=d.get("stem"), alpha=d.get("alpha"),
                   rows=d.get("rows"), kind=d.get("kind"), minimalistic=d.get("minimalistic", False),
                   files=dict(d["files"]), provenance=Provenance(**_known(Provenance, d["provenance"])),
                   values=ValuesUsed(**_known(ValuesUsed, d["weights"])), label_offset=d.get("label_offset", 1),
                   classes=d.get("classes", 1000), counts=Accounting(**_known(Accounting, d["counts"])),
                   versions=dict(d.get("versions") or {}))

    def source(self, location: str | None = None) -> Source:
        """What parity reports these weights were made from; ``location`` is the archive's URL or path
        (default: the URL it was downloaded from, else its path)."""
        p = self.provenance
        return Source(location or p.url or p.archive, p.archive_sha256, p.pin_status, self.values.summary())


@dataclass(frozen=True)
class Source:
    """What a parity check is told about the converted weights it checks (it never reads the sidecar)."""

    location: str | None = None  # the archive's URL or path
    sha256: str | None = None  # the archive's sha256
    pin_status: str | None = None  # matches / differs / no pin / unknown
    values: str | None = None  # the checkpoint values the weights hold, e.g. "ema 158, raw 104"


# --------------------------------------------------------------------------------------------------
# Parity


@dataclass(frozen=True)
class Comparison:
    """Parity figures of one candidate's logits against one reference's (see ``parity.compare``)."""

    max_abs_dlogit: float
    tolerance: float
    max_abs_ref_logit: float
    max_abs_dprob: float
    top1_agree: int
    top5_agree: int
    inputs: int
    passed: bool
    ref_top1: list[int]
    keras_top1: list[int]
    pred_tf_score: float
    pred_keras_score: float


@dataclass(frozen=True)
class RewriteFigures:
    """Parity against one of the family's rewritten reference graphs (V3: the SE gate constant)."""

    description: str
    constants: int  # how many constants the rewrite changed
    max_abs_dlogit: float
    tolerance: float
    top1_agree: int
    top5_agree: int | None  # None: not measured (a quantized variant's float figures have no top-5)
    passed: bool
    no_top_max_abs_diff: float | None  # None: not measured

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> RewriteFigures:
        return cls(**_known(cls, _require(cls, data, ("description", "constants", "max_abs_dlogit", "passed"))))


@dataclass(frozen=True)
class Digests:
    top: str
    no_top: str


# the keys of a failure row (a variant that could not be converted or verified)
_FAILURE_KEYS = ("model", "name", "family", "alpha", "rows", "passed", "error", "archive_source",
                 "pred_keras_score", "pred_tf_score", "preds_agree", "max_vector_difference", "inference_time_tf",
                 "inference_time_keras")
_OPTIONAL_KEYS = ("frozen_max_abs_dlogit", "frozen_vs_raw_max_abs_dlogit")  # written only when measured


# ----------------------------------------------------------------- a quantized variant's three proofs
@dataclass(frozen=True)
class FloatFigures:
    """(a) the float .h5 against the bypassed graph (``rewrite``: the graph rewritten, e.g. V3's gate)."""

    rewrite: str | None
    max_abs_dlogit: float
    tolerance: float
    top1_agree: int
    passed: bool  # logits within tolerance, top-1 identical, and the no-top features within tolerance
    constants: int = 0  # how many constants the rewrite changed (0 as is)
    # the no-top .h5's average-pooled features against this graph's pooled node (tolerance · max(1, max |pooled|))
    no_top_max_abs_diff: float | None = None


@dataclass(frozen=True)
class TwinFigures:
    """(b) the twin's logits against the archive's graph as it is (``rewrite``: or rewritten)."""

    rewrite: str | None
    logit_step: float  # the step of the graph's logit quantizer
    max_abs_dlogit: float
    max_steps: float  # max |Δlogit| / logit_step
    top1_agree: int
    passed: bool


@dataclass(frozen=True)
class TfliteFigures:
    """(c) our .tflite against the archive's .tflite on the same uint8 inputs."""

    top1_agree: int
    top1_ties: int  # inputs where either uint8 output ties several classes first (any of them counts as first)
    max_abs_dprob: float
    top5_identical: float  # fraction of inputs with identical (ordered) top-5 lists
    top5_up_to_ties: float  # fraction whose top-5 lists are each a valid top-5 of the other's uint8 output
    archive_output: str  # "probabilities" | "logits" (what the archive's .tflite outputs)
    input_scale: float
    input_zero_point: int
    passed: bool


@dataclass
class QuantParity:
    variant: str
    inputs: int
    images: list[str]
    seed: int
    reference: str  # the archive graph the figures are against (path relative to the extraction)
    reference_kind: str | None = None  # eval_pbtxt | ckpt_meta | graph_pb | frozen_pb
    reference_logits: str | None = None  # the logits tensor found in it (by structure)
    # where the quantizers' ranges were read: "variables" (the graph's range variables, from the checkpoint)
    # or "constants" (a frozen graph's, each matched to its checkpoint variables by scope and value)
    ranges: str | None = None
    passed_over: list[str] = field(default_factory=list)  # the layout's graphs not taken, and why
    floats: list[FloatFigures] = field(default_factory=list)  # as-is first, then the rewrites
    twin: list[TwinFigures] = field(default_factory=list)
    tflite: TfliteFigures | None = None
    # where the no-top .h5 differs from the no-top model loaded from the top .h5 (must be none)
    no_top_file_mismatches: list[str] = field(default_factory=list)

    @property
    def float_passed(self) -> bool:
        """Float parity as-is (or, with rewrites, on the last rewrite, as for the float families), the
        no-top file holding exactly the no-top model's weights."""
        floats = self.floats[-1:] if len(self.floats) > 1 else self.floats
        return bool(floats) and all(f.passed for f in floats) and not self.no_top_file_mismatches

    @property
    def passed(self) -> bool:
        """The float .h5 files (:attr:`float_passed`), the twin on the graph as is, and the .tflite top-1."""
        return (self.float_passed and bool(self.twin) and self.twin[0].passed
                and self.tflite is not None and self.tflite.passed)

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "passed": self.passed}

    @classmethod
    def from_json(cls, data: Any) -> QuantParity:
        data = dict(_require(cls, data, ("variant", "inputs", "floats", "twin", "tflite")))
        data.pop("passed", None)
        tfl = data.pop("tflite")
        return cls(**_known(cls, {k: v for k, v in data.items() if k not in ("floats", "twin")}),
                   floats=[FloatFigures(**_known(FloatFigures, f)) for f in data["floats"]],
                   twin=[TwinFigures(**_known(TwinFigures, t)) for t in data["twin"]],
                   tflite=TfliteFigures(**_known(TfliteFigures, tfl)) if tfl else None)



@dataclass(frozen=True)
class ParityRecord:
    """One variant's parity check (or its failure: ``error`` set, the figures None): a row of
    ``results/test_results.{p,json}``; the sidecar and model card carry a part of it."""

    model: str  # the variant's stem, the key of a results row
    name: str
    family: str
    alpha: str
    rows: int
    passed: bool
    error: str | None = None
    archive_source: str | None = None  # URL or path of the archive the reference came from
    archive_pin: str | None = None
    archive_sha256: str | None = None
    weight_source: str | None = None  # the values the converted weights hold, e.g. "ema 158, raw 104"
    kind: str | None = None
    minimalistic: bool = False
    # the figures (see parity.compare)
    max_abs_dlogit: float | None = None
    tolerance: float | None = None
    tolerance_factor: float | None = None
    max_abs_ref_logit: float | None = None
    max_abs_dprob: float | None = None
    top1_agree: int | None = None
    top5_agree: int | None = None
    inputs: int | None = None
    ref_top1: list[int] = field(default_factory=list)
    keras_top1: list[int] = field(default_factory=list)
    pred_tf_score: float | None = None
    pred_keras_score: float | None = None
    no_top_max_abs_diff: float | None = None
    no_top_file_mismatches: list[str] = field(default_factory=list)
    no_top_passed: bool | None = None
    rewrites: dict[str, RewriteFigures] = field(default_factory=dict)
    frozen: str | None = None  # which values the frozen graph matches: ema / raw / neither / absent / is the reference
    frozen_max_abs_dlogit: float | None = None
    frozen_vs_raw_max_abs_dlogit: float | None = None
    # the reference
    reference: str | None = None  # eval_pbtxt | ckpt_meta | graph_pb | frozen_pb
    reference_graph: str | None = None
    reference_checkpoint: str | None = None
    reference_sources: dict[str, int] = field(default_factory=dict)
    reference_logits: str | None = None  # the logits tensor of the reference graph (found by structure)
    reference_passed_over: list[str] = field(default_factory=list)  # the layout's graphs not taken, and why
    inference_time_tf: float | None = None
    inference_time_keras: float | None = None
    # the inputs and the environment
    images: list[str] = field(default_factory=list)
    random_inputs: int | None = None
    seed: int | None = None
    sha256: Digests | None = None  # of the checked .h5 files
    tf_version: str | None = None
    keras_version: str | None = None
    verified_at: str | None = None
    quant: QuantParity | None = None  # a quantized variant's three proofs (the float figures above are its (a))

    @property
    def preds_agree(self) -> bool:
        return self.error is None and self.top1_agree is not None and self.top1_agree == self.inputs

    @property
    def max_vector_difference(self) -> float | None:
        return self.max_abs_dlogit

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update(preds_agree=self.preds_agree, max_vector_difference=self.max_vector_difference)
        if self.error is not None:
            return {k: out[k] for k in _FAILURE_KEYS}
        del out["error"]
        for key in _OPTIONAL_KEYS:
            if out[key] is None:
                del out[key]
        out["rewrites"] = {name: r.to_json() for name, r in self.rewrites.items()}
        out["sha256"] = self.sha256 and dataclasses.asdict(self.sha256)
        if self.quant is None:
            del out["quant"]
        else:
            out["quant"] = self.quant.to_json()
        return out

    @classmethod
    def from_json(cls, data: Any) -> ParityRecord:
        d = _require(cls, data, ("model", "name", "passed", *LEGACY_KEYS))
        fields = _known(cls, d)
        fields["rewrites"] = {n: RewriteFigures.from_json(r) for n, r in (d.get("rewrites") or {}).items()}
        fields["sha256"] = Digests(**d["sha256"]) if d.get("sha256") else None
        fields["quant"] = QuantParity.from_json(d["quant"]) if d.get("quant") else None
        fields.setdefault("family", "v2")  # rows written before V1/V3 existed
        return cls(**fields)

    @classmethod
    def of_quant(cls, variant, quant: QuantParity, source: Source, digests: Digests, tf_version: str,
                 keras_version: str, verified_at: str, random_inputs: int) -> ParityRecord:
        """A quantized variant's row: its three proofs in ``quant``, and the float .h5's figure against the
        archive graph with every FakeQuant bypassed as the row's own (as is; the rewrites beside it)."""
        first = quant.floats[0]
        rewrites = {f.rewrite: RewriteFigures(f"{f.rewrite}, FakeQuants bypassed", f.constants, f.max_abs_dlogit,
                                              f.tolerance, f.top1_agree, None, f.passed, f.no_top_max_abs_diff)
                    for f in quant.floats[1:]}
        return cls(model=variant.stem, name=variant.name, family=variant.family_key, alpha=variant.alpha,
                   rows=variant.rows, passed=quant.passed, kind=variant.kind, minimalistic=variant.minimalistic,
                   archive_source=source.location, archive_sha256=source.sha256, archive_pin=source.pin_status,
                   weight_source=source.values, max_abs_dlogit=first.max_abs_dlogit, tolerance=first.tolerance,
                   top1_agree=first.top1_agree, inputs=quant.inputs, rewrites=rewrites,
                   no_top_max_abs_diff=first.no_top_max_abs_diff, no_top_file_mismatches=list(quant.no_top_file_mismatches),
                   no_top_passed=quant.float_passed,
                   reference="bypassed", reference_graph=quant.reference, reference_logits=quant.reference_logits,
                   reference_passed_over=list(quant.passed_over), images=list(quant.images),
                   random_inputs=random_inputs, seed=quant.seed, sha256=digests, tf_version=tf_version,
                   keras_version=keras_version, verified_at=verified_at, quant=quant)

    @classmethod
    def failure(cls, variant, error: str, archive_source: str | None = None) -> ParityRecord:
        """The row of a variant that could not be converted or verified."""
        return cls(model=variant.stem, name=variant.name, family=variant.family_key, alpha=variant.alpha,
                   rows=variant.rows, passed=False, error=error, archive_source=archive_source)


@dataclass(frozen=True)
class RewriteSummary:
    description: str
    constants: int
    max_abs_dlogit: float
    tolerance: float
    passed: bool


@dataclass(frozen=True)
class ParitySummary:
    """The part of a parity record the sidecar and model card carry."""

    passed: bool
    max_abs_dlogit: float | None
    tolerance: float | None
    top1_agree: int | None
    top5_agree: int | None
    inputs: int | None
    max_abs_dprob: float | None
    no_top_max_abs_diff: float | None
    reference: str | None
    reference_graph: str | None
    reference_checkpoint: str | None
    frozen: str | None
    verified_at: str | None
    rewrites: dict[str, RewriteSummary] = field(default_factory=dict)

    @classmethod
    def of(cls, record: ParityRecord) -> ParitySummary:
        names = {f.name for f in dataclasses.fields(cls)} - {"rewrites"}
        rewrites = {n: RewriteSummary(r.description, r.constants, r.max_abs_dlogit, r.tolerance, r.passed)
                    for n, r in record.rewrites.items()}
        return cls(**{n: getattr(record, n) for n in names}, rewrites=rewrites)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> ParitySummary:
        d = _require(cls, data, ("passed",))
        fields = {f.name: d.get(f.name) for f in dataclasses.fields(cls)}
        fields["rewrites"] = {n: RewriteSummary(**_known(RewriteSummary, r)) for n, r in (d.get("rewrites") or {}).items()}
        return cls(**fields)


ACCURACY_KEYS = tuple(f.name for f in dataclasses.fields(AccuracyRecord)
                      if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


@dataclass(frozen=True)
class QuantOutputs:
    """A quantized variant's outputs beyond the .h5 files, and its three parity proofs: the sidecar's
    ``quant`` section (the card renders it)."""

    files: dict[str, str]  # the twin .keras and the .tflite: file name -> sha256
    parity: QuantParity | None = None  # None until verified

    def to_json(self) -> dict:
        return {"files": dict(self.files), "parity": None if self.parity is None else self.parity.to_json()}

    @classmethod
    def from_json(cls, data) -> QuantOutputs:
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            raise ValueError(f"a sidecar's quant section must be an object with 'files', got {data!r}")
        parity = data.get("parity")
        return cls(dict(data["files"]), QuantParity.from_json(parity) if parity else None)


@dataclass(frozen=True)
class LabelsFile:
    """One labels file beside the weights (one class name a line, line k naming output k)."""

    sha256: str
    classes: int  # its lines


@dataclass(frozen=True)
class Labels:
    """The class names of a variant's outputs: the sidecar's ``labels`` section. ``source``: ``imagenet``
    (keras' class index, shipped) or ``user`` (a user checkpoint's ``--labels``); ``files``: each labels file
    written beside the weights; ``outputs``: each output file -> the labels file in the order of its output."""

    source: str
    files: dict[str, LabelsFile]
    outputs: dict[str, str]

    def to_json(self) -> dict:
        return {"source": self.source, "files": {n: dataclasses.asdict(f) for n, f in self.files.items()},
                "outputs": dict(self.outputs)}

    @classmethod
    def from_json(cls, data: Any) -> Labels:
        d = _require(cls, data, ("source", "files", "outputs"))
        if not isinstance(d["files"], dict) or not isinstance(d["outputs"], dict):
            raise ValueError(f"a sidecar's labels section needs objects 'files' and 'outputs', got {data!r}")
        return cls(d["source"], {n: LabelsFile(**_known(LabelsFile, _require(LabelsFile, f, ("sha256", "classes"))))
                                 for n, f in d["files"].items()}, dict(d["outputs"]))


@dataclass(frozen=True)
class Sidecar:
    """The JSON next to a variant's converted files: the conversion facts, the parity summary, the measured
    accuracy (evaluate's records), for a quantized variant its other outputs and three proofs, each output
    file's input preprocessing (``preprocessing``: file name -> :class:`~convert.preprocessing.Preprocessing`,
    machine-readable; what ``preprocessing_for`` reads) and the class names (``labels``); the model card
    renders the same data. A sidecar written before a section existed reads with it empty (None)."""

    facts: ConversionFacts
    parity: ParitySummary | None = None
    accuracy: list[AccuracyRecord] = field(default_factory=list)
    quant: QuantOutputs | None = None
    preprocessing: dict[str, Preprocessing] = field(default_factory=dict)
    labels: Labels | None = None

    def to_json(self, card: dict) -> dict:
        out = self.facts.to_json()
        if self.parity is not None:
            out["parity"] = self.parity.to_json()
        if self.accuracy:
            out["accuracy"] = [a.to_json() for a in self.accuracy]
        if self.quant is not None:
            out["quant"] = self.quant.to_json()
        if self.preprocessing:
            out["preprocessing"] = {name: p.to_json() for name, p in sorted(self.preprocessing.items())}
        if self.labels is not None:
            out["labels"] = self.labels.to_json()
        return {**out, "card": card}

    @classmethod
    def from_json(cls, data: Any) -> Sidecar:
        d = _require(cls, data, ("variant",))
        parity, quant, labels = d.get("parity"), d.get("quant"), d.get("labels")
        pre = d.get("preprocessing") or {}
        if not isinstance(pre, dict):
            raise ValueError(f"a sidecar's preprocessing section must map file names to entries, got {pre!r}")
        return cls(ConversionFacts.from_json(d), ParitySummary.from_json(parity) if parity else None,
                   [AccuracyRecord.from_json(_require(AccuracyRecord, a, ACCURACY_KEYS)) for a in d.get("accuracy") or []],
                   QuantOutputs.from_json(quant) if quant else None,
                   {name: Preprocessing.from_json(e) for name, e in pre.items()},
                   Labels.from_json(labels) if labels else None)


# --------------------------------------------------------------------------------------------------
# The pipeline's row


STAGES = ("extract", "write_h5", "write_quant", "verify")  # the pipeline's stages, in order (write_quant: quantized)


def _figure(row: RunRow, name: str) -> float | None:
    return None if row.record is None else getattr(row.record, name)


@dataclass
class RunRow:
    """What the pipeline did for one variant: the stages run or skipped and their seconds, the outcome
    (the parity record, or an error), and the process that did it."""

    name: str
    passed: bool = False
    error: str | None = None
    downloaded: bool | None = None
    stage_status: dict[str, str] = field(default_factory=dict)  # pipeline stage -> "ran" / "skipped"
    timings: dict[str, float] = field(default_factory=dict)  # pipeline stage -> seconds
    record: ParityRecord | None = None
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)  # convert.timing's exclusive stage seconds
    pid: int | None = None
    rss_mb: float | None = None
    finished: float | None = None  # time.time() when the row was done

    # the record's figures, None without a record
    max_abs_dlogit = property(lambda self: _figure(self, "max_abs_dlogit"))
    tolerance = property(lambda self: _figure(self, "tolerance"))
    inference_time_tf = property(lambda self: _figure(self, "inference_time_tf"))
    inference_time_keras = property(lambda self: _figure(self, "inference_time_keras"))

    def to_json(self) -> dict:
        out = {"name": self.name, "passed": self.passed, "seconds": self.seconds, "stages": dict(self.stages),
               "pid": self.pid, "rss_mb": self.rss_mb, "finished": self.finished}
        if self.error is not None:
            out["error"] = self.error
        if self.downloaded is not None:
            out["downloaded"] = self.downloaded
        out.update(self.stage_status)
        if self.record is not None and self.error is None:
            out.update(max_abs_dlogit=self.max_abs_dlogit, tolerance=self.tolerance, timings=dict(self.timings),
                       inference_time_tf=self.inference_time_tf, inference_time_keras=self.inference_time_keras,
                       record=self.record.to_json())
        return out

    @classmethod
    def from_json(cls, data: Any) -> RunRow:
        d = _require(cls, data, ("name", "passed"))
        record = d.get("record")
        return cls(name=d["name"], passed=d["passed"], error=d.get("error"), downloaded=d.get("downloaded"),
                   stage_status={s: d[s] for s in STAGES if s in d}, timings=dict(d.get("timings") or {}),
                   record=ParityRecord.from_json(record) if record else None, seconds=d.get("seconds", 0.0),
                   stages=dict(d.get("stages") or {}), pid=d.get("pid"), rss_mb=d.get("rss_mb"),
                   finished=d.get("finished"))
