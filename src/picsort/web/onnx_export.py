"""The served model as one ONNX graph: photo pixels in, every class's probability and the "none of these" scores
out, the same arithmetic as `picsort.inference.classify.Classifier.scores`.

The graph takes the model view's pixels as the browser has them, `uint8` N×size×size×3 (RGB, rows first): the
normalisation `(pixels / 255 - mean) / std` is inside it, so the page hands over bytes and nothing is rounded
differently there. The page does the resize and the crop (`static/resize.js`, Pillow's bilinear filter to the
bit). Outputs: `probabilities` (N×classes, softmax), `similarity` (N, mean of the k best cosine similarities to
the training photos' pooled features) and `resemblance` (N, the ImageNet classifier's probability on the covered
classes); the thresholds that turn them into a "none of these" answer are in the site's `model-card.json`.
The reference features and the ImageNet classifier stay half precision in the file (as `reference.safetensors`
keeps them) and are widened in the graph, as `NoneOfTheseCheck.load` widens them.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

from picsort.inference.classify import Classifier
from picsort.inference.none_of_these import NoneOfTheseCheck

INPUT_NAME = "pixels"
OUTPUT_NAMES = ("probabilities", "similarity", "resemblance")
OPSET = 17


class ServedGraph(nn.Module):
    """`Classifier.scores` as one module taking uint8 model-view pixels (N×size×size×3)."""

    def __init__(self, classifier: Classifier):
        super().__init__()
        network = classifier.network.to(memory_format=torch.contiguous_format)
        self.body, self.head = network[0], network[1]
        self.register_buffer("scale", classifier._scale.reshape(1, 3, 1, 1).clone())
        self.register_buffer("shift", classifier._shift.reshape(1, 3, 1, 1).clone())
        check: NoneOfTheseCheck = classifier.none_of_these
        self.has_reference = check.reference is not None
        self.k = min(check.k, check.reference.shape[0]) if self.has_reference else 1
        if self.has_reference:
            self.register_buffer("reference", check.reference.half())  # widened in forward, as load widens it
        self.has_imagenet = check.imagenet is not None
        if self.has_imagenet:
            self.register_buffer("imagenet_weight", check.imagenet.weight.half())
            self.register_buffer("imagenet_bias", check.imagenet.bias.half())
            mask = torch.zeros(check.imagenet.weight.shape[0])
            mask[check.covered] = 1.0
            self.register_buffer("covered", mask)

    def forward(self, pixels: torch.Tensor):
        batch = pixels.permute(0, 3, 1, 2).float() * self.scale + self.shift
        features = self.body(batch)
        probabilities = torch.softmax(self.head(features), dim=1)
        pooled_features = features.mean(dim=(2, 3))
        ones = pooled_features[:, 0] * 0 + 1
        if self.has_reference:
            unit = nn.functional.normalize(pooled_features, dim=1)
            similarity = (unit @ self.reference.float().T).topk(self.k, dim=1).values.mean(dim=1)
        else:
            similarity = ones
        if self.has_imagenet:
            imagenet = torch.softmax(pooled_features @ self.imagenet_weight.float().T + self.imagenet_bias.float(),
                                     dim=1)
            resemblance = (imagenet * self.covered).sum(dim=1)
        else:
            resemblance = ones
        return probabilities, similarity, resemblance


def onnx_bytes(classifier: Classifier) -> bytes:
    """The ONNX file of `classifier`'s network and "none of these" check (see the module's docstring)."""
    graph = ServedGraph(classifier).eval()
    example = torch.zeros(1, classifier.size, classifier.size, 3, dtype=torch.uint8)
    buffer = io.BytesIO()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes are not the user's business
        # The TorchScript exporter: no onnxscript needed at export time, so a plain `pip install picsort` exports.
        torch.onnx.export(graph, (example,), buffer, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          dynamic_axes={INPUT_NAME: {0: "photos"}, **{name: {0: "photos"} for name in OUTPUT_NAMES}},
                          opset_version=OPSET, do_constant_folding=False, dynamo=False)
    return buffer.getvalue()


def export_onnx(classifier: Classifier, path: Path | str) -> Path:
    """Write `onnx_bytes(classifier)` to `path`; returns it."""
    path = Path(path)
    path.write_bytes(onnx_bytes(classifier))
    return path
