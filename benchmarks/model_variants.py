"""Which training recipe keeps what the pretrained network knows? The comparison train.ipynb shows.

    python benchmarks/model_variants.py            # all variants (~15 min on 2 cores), writes results/model-variants.md

Each variant is trained the way train.ipynb trains (fastai DataBlock, vision_learner, the same validation split:
RandomSplitter(0.2, seed=42) over ../shared/datasets/bears as gathered by picsort.photos.sources), then measured on:
- the validation split: error rate and loss;
- "shifted" validation photos: each validation photo changed the way photos from another source differ (a tighter
  crop, low resolution, other light and colour, strong JPEG compression, grey scale); the validation split cannot
  show domain shift, these changes at least show which recipes lean on this one scrape's look;
- "none of these": the fraction of all Imagenette photos (../shared/datasets/imagenette, 10 classes, no bears)
  flagged, and of validation photos wrongly flagged, with the threshold calibrated as export_model does;
- seconds of training (the fit calls only).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402
from PIL import Image, ImageEnhance, ImageOps  # noqa: E402
from results_table import publish  # noqa: E402

SHARED = REPO.parent / "shared" / "datasets"
RESULTS = REPO / "benchmarks" / "results" / "model-variants.md"


def shifted(image: Image.Image, kind: str) -> Image.Image:
    """One validation photo changed the way another source's photos differ."""
    w, h = image.size
    if kind == "tight crop":
        return image.crop((w // 6, h // 6, w - w // 6, h - h // 6))
    if kind == "low resolution":
        return image.resize((max(1, w // 5), max(1, h // 5)), Image.BILINEAR)
    if kind == "warm light":
        r, g, b = image.split()
        return Image.merge("RGB", (r.point(lambda v: min(255, int(v * 1.25))), g, b.point(lambda v: int(v * 0.75))))
    if kind == "dark":
        return ImageEnhance.Brightness(image).enhance(0.55)
    if kind == "jpeg q10":
        import io
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=10)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    if kind == "grey":
        return ImageOps.grayscale(image).convert("RGB")
    raise ValueError(kind)


SHIFTS = ("tight crop", "low resolution", "warm light", "dark", "jpeg q10", "grey")

# name -> how train.ipynb would train it. "frozen": the pretrained body and its batch norm stay as they are
# (train_bn=False and BnFreeze), only the head learns; "fine_tune": the course's fine_tune, head then whole body.
VARIANTS = {
    "Lite0, fine_tune(3, freeze_epochs=2) (the previous model's recipe)":
        dict(backbone="efficientnet_lite0", fit="fine_tune", epochs=3, lr=1e-3, freeze_epochs=2),
    "Lite0, frozen body, fastai's default head":
        dict(backbone="efficientnet_lite0", fit="frozen", epochs=4, lr=2e-3),
    "Lite2, frozen body, fastai's default head":
        dict(backbone="efficientnet_lite2", fit="frozen", epochs=4, lr=2e-3),
    "Lite2, frozen body, linear head on average pool (the previous shipped model)":
        dict(backbone="efficientnet_lite2", fit="frozen", epochs=4, lr=1e-2, lin_ftrs=[], concat_pool=False),
    "Lite2, frozen body, linear head fitted as a logistic regression, C=0.1 (shipped: fit_linear_head)":
        dict(backbone="efficientnet_lite2", fit="logistic", C=0.1, lin_ftrs=[], concat_pool=False, first_bn=False, ps=0),
    "Lite2, frozen body, linear head fitted as a logistic regression, C=0.01":
        dict(backbone="efficientnet_lite2", fit="logistic", C=0.01, lin_ftrs=[], concat_pool=False, first_bn=False, ps=0),
    "Lite0, frozen body, linear head fitted as a logistic regression, C=0.1":
        dict(backbone="efficientnet_lite0", fit="logistic", C=0.1, lin_ftrs=[], concat_pool=False, first_bn=False, ps=0),
    "Lite2, linear head then whole body gently (slice(1e-6, 1e-4), 1 epoch)":
        dict(backbone="efficientnet_lite2", fit="frozen+gentle", epochs=4, lr=1e-2, lin_ftrs=[], concat_pool=False),
}


def gather(scratch: Path) -> Path:
    from picsort.photos.cleaning import apply_cleaning
    from picsort.photos.sources import gather_from_folder

    data = scratch / "data"
    gather_from_folder(SHARED / "bears", data)
    apply_cleaning(data, REPO / "model" / "cleaning.json")
    return data


def train(data: Path, variant: dict):
    from fastai.callback.training import BnFreeze
    from fastai.vision.all import error_rate, set_seed, vision_learner

    from picsort.inference.backbones import learner_architecture, native_size
    from picsort.training.notebook import training_datablock

    set_seed(42)
    dls = training_datablock(native_size(variant["backbone"])).dataloaders(data, bs=32, num_workers=0)
    arch, options = learner_architecture(variant["backbone"])
    head = {key: variant[key] for key in ("lin_ftrs", "concat_pool", "first_bn", "ps") if key in variant}
    frozen = variant["fit"].startswith("frozen") or variant["fit"] == "logistic"
    learn = vision_learner(dls, arch, metrics=error_rate, train_bn=not frozen, cbs=[BnFreeze()] if frozen else [],
                           **head, **options)
    start = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        if variant["fit"] == "fine_tune":
            learn.fine_tune(variant["epochs"], base_lr=variant["lr"], freeze_epochs=variant["freeze_epochs"])
        elif variant["fit"] == "logistic":
            from picsort.training.notebook import fit_linear_head

            fit_linear_head(learn, C=variant["C"])
        else:
            learn.fit_one_cycle(variant["epochs"], variant["lr"])
            if variant["fit"] == "frozen+gentle":
                learn.unfreeze()
                learn.fit_one_cycle(1, slice(1e-6, 1e-4))
    return learn, time.perf_counter() - start


def shifted_photos(learn, scratch: Path) -> tuple[list[Path], list[int]]:
    """The validation photos changed as SHIFTS describes (all shifts pooled), and their true classes."""
    folder = scratch / "shifted"
    folder.mkdir(exist_ok=True)
    files, truth = [], []
    for index, path in enumerate(learn.dls.valid_ds.items):
        image = Image.open(path).convert("RGB")
        for number, kind in enumerate(SHIFTS):
            target = folder / f"{index}-{number}.png"
            if not target.exists():
                shifted(image, kind).save(target)
            files.append(target)
            truth.append(learn.dls.vocab.o2i[path.parent.name])
    return files, truth


def shifted_accuracy(learn, files: list[Path], truth: list[int]) -> float:
    """Accuracy on the shifted validation photos."""
    with learn.no_bar():
        probabilities, _ = learn.get_preds(dl=learn.dls.test_dl(files, num_workers=0))
    return float((probabilities.argmax(1) == torch.tensor(truth)).float().mean())


def imagenette_files(per_class: int | None, skip: int = 0) -> list[Path]:
    folders = sorted(p for p in (SHARED / "imagenette").iterdir() if p.is_dir())
    return [f for folder in folders for f in sorted(folder.iterdir())[skip:None if per_class is None else skip + per_class]]


def none_of_these(learn, others_for_calibration: list[Path], others: list[Path], shifted: list[Path]
                  ) -> tuple[float, float, float]:
    """Calibrate as export_model does, then the fraction of `others` (held-out Imagenette photos), of the
    validation photos and of the shifted validation photos that are flagged "none of these"."""
    from picsort.inference.none_of_these import NoneOfTheseCheck
    from picsort.training.calibration import calibrate, pooled_features

    reference, settings = calibrate(learn, others=others_for_calibration)
    index = NoneOfTheseCheck(reference, settings["k"], settings["threshold"])
    def flagged(files: list[Path]) -> float:
        # similarity_of_pooled takes unit-length features; pooled_features gives them raw (since the ImageNet check).
        unit = torch.nn.functional.normalize(pooled_features(learn, files), dim=1)
        return float((index.similarity_of_pooled(unit) < index.threshold).float().mean())

    return flagged(others), settings["calibration"]["validation_flagged"], flagged(shifted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only the variants whose name contains this text (its table is printed, "
                                       "not written over the whole one)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory(prefix="picsort-variants-") as scratch:
        scratch = Path(scratch)
        data = gather(scratch)
        for name, variant in VARIANTS.items():
            if args.only and args.only not in name:
                continue
            learn, seconds = train(data, variant)
            loss, error = (float(v) for v in learn.validate()[:2])
            files, truth = shifted_photos(learn, scratch)
            shifted_acc = shifted_accuracy(learn, files, truth)
            others_flagged, valid_flagged, shifted_flagged = none_of_these(
                learn, imagenette_files(10), imagenette_files(30, skip=10), files)
            rows.append((name, error, loss, shifted_acc, others_flagged, valid_flagged, shifted_flagged, seconds))
            print(f"{name}: error {error:.2%} loss {loss:.3f} shifted accuracy {shifted_acc:.2%} "
                  f"imagenette flagged {others_flagged:.1%} validation flagged {valid_flagged:.1%} "
                  f"shifted flagged {shifted_flagged:.1%} {seconds:.0f} s", flush=True)
    write(rows, partial=bool(args.only))


def write(rows, partial: bool) -> None:
    lines = [
        "# Training recipes compared (benchmarks/model_variants.py)",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; other jobs shared the machine, so "
        "seconds compare only within this table.",
        "",
        "Validation split: 83 of the 416 development photos (RandomSplitter(0.2, seed=42)); one photo is 1.2 %.",
        "Shifted: the same 83 photos changed six ways (" + ", ".join(SHIFTS) + "), 498 in all.",
        "",
        "None of these: the threshold calibrated as export_model does (picsort.training.calibration.choose_threshold, with 10 "
        "Imagenette photos per class as photos of other things), then measured on 30 other Imagenette photos per "
        "class (300), on the validation photos and on the shifted ones (photos of the classes that should not be "
        "flagged).",
        "",
        "| recipe | validation error | validation loss | shifted accuracy | Imagenette flagged | validation flagged "
        "| shifted flagged | training s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {name} | {error:.1%} | {loss:.3f} | {shifted:.1%} | {others:.1%} | {valid:.1%} | {moved:.1%} "
              f"| {seconds:.0f} |" for name, error, loss, shifted, others, valid, moved, seconds in rows]
    publish(lines, RESULTS, partial)


if __name__ == "__main__":
    main()
