"""int8 graphs made from an encoder's exported fp32 ONNX graph with ``onnxruntime.quantization``.

* Transformers (MiniLM, mpnet): :func:`dynamic_int8` -- the weight MatMuls quantized per channel (int8 weights,
  activations quantized per batch at run time); the embedding lookups, LayerNorms, softmax and the mean pooling stay
  fp32 (only ``MatMul`` is quantized).
* CNNs (EfficientNet-Lite0, ResNet-50-1by2): :func:`static_int8` -- QDQ, weights int8 per channel, activations uint8
  with ranges calibrated (MinMax) on training posters. The ranges and the Ids of the posters they came from are
  recorded in ``calibration/<encoder>.json`` (written by :func:`calibrate`, via ``benchmarks/calibrate_int8.py``), so
  the graph is made the same way on any machine, without the dataset, and its version names that file.

The graphs are made once per encoder version and kept beside the fp32 bytes in ``<cache>/onnx/`` (base.cached_session).
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

PRECISIONS = ("fp32", "int8")  # encoder_precision's values (config.py reads them here)

CALIBRATION_DIR = Path(__file__).parent / "calibration"


class QuantizationError(RuntimeError):
    """An int8 graph cannot be made (no calibration recorded, or it does not fit the graph)."""


def calibration_path(name: str) -> Path:
    return CALIBRATION_DIR / f"{name}.json"


def calibration_tag(name: str) -> str:
    """A short fingerprint of ``name``'s recorded calibration (part of its int8 version); raises if none is recorded."""
    path = calibration_path(name)
    if not path.is_file():
        raise QuantizationError(f"no int8 calibration is recorded for encoder {name!r} ({path}); "
                                "make one with benchmarks/calibrate_int8.py")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:8]


def _quantization():
    import onnxruntime.quantization as q

    return q


def matmuls(fp32: bytes, where) -> list[str]:
    """The names of ``fp32``'s MatMul nodes for which ``where(name)`` holds."""
    import onnx

    return [n.name for n in onnx.load_from_string(fp32).graph.node if n.op_type == "MatMul" and where(n.name)]


def dynamic_int8(fp32: bytes, exclude: list[str] | None = None) -> bytes:
    """``fp32`` with its weight MatMuls quantized dynamically: int8 weights per channel, the rest fp32 (and the
    MatMul nodes named in ``exclude``)."""
    q = _quantization()
    with tempfile.TemporaryDirectory(prefix="movie-genres-int8-") as d:
        src, dst = Path(d) / "fp32.onnx", Path(d) / "int8.onnx"
        src.write_bytes(fp32)
        q.quantize_dynamic(src, dst, op_types_to_quantize=["MatMul"], per_channel=True, weight_type=q.QuantType.QInt8,
                           nodes_to_exclude=list(exclude or []), extra_options={"MatMulConstBOnly": True})
        return dst.read_bytes()


def prepared(fp32: bytes) -> bytes:
    """``fp32`` as onnxruntime's quantization pre-processing leaves it (shape inference, constant folding, Conv+BN/Mul/Add
    fusion), the graph the CNNs' ranges are calibrated on and their QDQ graphs are made from: without it the
    "SAME" padding arithmetic and the unfused scale layers stay in fp32 around every Conv and int8 gains little."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="movie-genres-int8-") as d:
        src, dst = Path(d) / "fp32.onnx", Path(d) / "prepared.onnx"
        src.write_bytes(fp32)
        quant_pre_process(str(src), str(dst), skip_optimization=False, skip_onnx_shape=False, skip_symbolic_shape=False)
        return dst.read_bytes()


class _Batches:
    """An onnxruntime ``CalibrationDataReader`` over ``{input: batch}`` dicts."""

    def __init__(self, feeds: Iterable[dict]):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def calibrate(fp32: bytes, input_name: str, batches: Iterable[np.ndarray]) -> dict[str, list[float]]:
    """MinMax activation ranges ``{tensor: [min, max]}`` of ``prepared(fp32)`` over ``batches`` (the tensors QDQ
    quantizes)."""
    q = _quantization()
    from onnxruntime.quantization.calibrate import create_calibrator

    with tempfile.TemporaryDirectory(prefix="movie-genres-calib-") as d:
        src = Path(d) / "fp32.onnx"
        src.write_bytes(prepared(fp32))
        calibrator = create_calibrator(src, None, augmented_model_path=str(Path(d) / "augmented.onnx"),
                                       calibrate_method=q.CalibrationMethod.MinMax)
        calibrator.collect_data(_Batches({input_name: np.asarray(b, dtype=np.float32)} for b in batches))
        data = calibrator.compute_data()
    return {name: [float(np.asarray(td.range_value[0]).min()), float(np.asarray(td.range_value[1]).max())]
            for name, td in data.data.items()}


def write_calibration(name: str, fp32_version: str, ids: list[str], ranges: dict[str, list[float]], how: str) -> Path:
    path = calibration_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"encoder": name, "fp32_version": fp32_version, "method": "MinMax", "posters": how, "ids": list(ids),
           "ranges": ranges}
    path.write_text(json.dumps(doc, indent=0, sort_keys=True) + "\n")
    return path


def read_calibration(name: str) -> dict:
    calibration_tag(name)  # a clear error where none is recorded
    return json.loads(calibration_path(name).read_text())


def static_int8(fp32: bytes, input_name: str, example: np.ndarray, name: str) -> bytes:
    """``prepared(fp32)`` as a QDQ graph (int8 weights per channel, uint8 activations) with the activation ranges recorded for
    encoder ``name``. onnxruntime's calibrator runs once on ``example`` only because ``quantize_static`` needs a
    reader; every tensor's range is then the recorded one (``TensorQuantOverrides`` rmin/rmax)."""
    q = _quantization()
    ranges = read_calibration(name)["ranges"]
    fp32 = prepared(fp32)
    with tempfile.TemporaryDirectory(prefix="movie-genres-int8-") as d:
        src, dst = Path(d) / "fp32.onnx", Path(d) / "int8.onnx"
        src.write_bytes(fp32)
        import onnx

        graph = onnx.load_from_string(fp32).graph
        names = {t for n in graph.node for t in n.output} | {i.name for i in graph.input}
        missing = sorted(set(ranges) - names)
        if missing:
            raise QuantizationError(f"{name}: the recorded calibration names tensors this graph lacks "
                                    f"({', '.join(missing[:3])}, ...); record it again with benchmarks/calibrate_int8.py")
        overrides = {t: [{"rmin": np.array(lo, dtype=np.float32), "rmax": np.array(hi, dtype=np.float32)}]
                     for t, (lo, hi) in ranges.items()}
        q.quantize_static(src, dst, _Batches([{input_name: np.asarray(example, dtype=np.float32)}]),
                          quant_format=q.QuantFormat.QDQ, per_channel=True, activation_type=q.QuantType.QUInt8,
                          weight_type=q.QuantType.QInt8, calibrate_method=q.CalibrationMethod.MinMax,
                          extra_options={"TensorQuantOverrides": overrides})
        return dst.read_bytes()
