"""Does the shipped model say "none of these" to photos of other things, and only to them? What does it cost?

    python benchmarks/none_of_these.py      # ~5 min on 2 cores, writes results/none-of-these.md

Through the serving path (`picsort.inference.classify.load_model()`, as the app, the CLI and the API run it):
1. all 3,925 Imagenette photos (../shared/datasets/imagenette: ten classes, none of them a bear): the fraction
   flagged "none of these" (goal >= 98 %);
2. the development bears (../shared/datasets/bears): the validation split the threshold was calibrated on,
   and all 416, the fraction wrongly flagged; also the accuracy of the top class on the validation split;
3. the cost of the check: one image, bytes in -> Prediction, with the check and with it switched off
   (the same model without its reference features), alternating, median of many runs (goal <= 1.05x).
"""

from __future__ import annotations

import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402
from results_table import publish  # noqa: E402

from picsort.foundation.folders import MODEL_DIR  # noqa: E402
from picsort.inference.classify import Classifier  # noqa: E402
from picsort.inference.none_of_these import NoneOfTheseCheck  # noqa: E402

SHARED = REPO.parent / "shared" / "datasets"
RESULTS = REPO / "benchmarks" / "results" / "none-of-these.md"


def predict_all(classifier: Classifier, files: list[Path]):
    return [p for start in range(0, len(files), 32) for p in classifier.predict_batch(files[start:start + 32])]


def validation_files() -> list[Path]:
    """The validation split train.ipynb used: RandomSplitter(0.2, seed=42) over the gathered photos."""
    import tempfile

    from fastai.vision.all import RandomSplitter, get_image_files

    from picsort.photos.cleaning import apply_cleaning
    from picsort.photos.sources import gather_from_folder

    scratch = Path(tempfile.mkdtemp(prefix="picsort-none-"))
    gather_from_folder(SHARED / "bears", scratch)
    apply_cleaning(scratch, MODEL_DIR / "cleaning.json")
    files = get_image_files(scratch)
    return [files[i] for i in RandomSplitter(valid_pct=0.2, seed=42)(files)[1]]


def one_image_cost(classifier: Classifier, data: bytes, runs: int = 60) -> tuple[float, float]:
    """Median seconds of predict(bytes) with the check, and with the check switched off."""
    plain = Classifier(MODEL_DIR)
    plain.none_of_these = NoneOfTheseCheck(None)
    for model in (classifier, plain):
        model.predict(data)
    timings = {id(classifier): [], id(plain): []}
    for _ in range(runs):
        for model in (classifier, plain):
            start = time.perf_counter()
            model.predict(data)
            timings[id(model)].append(time.perf_counter() - start)
    return statistics.median(timings[id(classifier)]), statistics.median(timings[id(plain)])


def main() -> None:
    torch.set_num_threads(2)
    classifier = Classifier(MODEL_DIR)
    others = sorted(f for f in (SHARED / "imagenette").rglob("*") if f.is_file() and f.suffix.lower() in (".jpeg", ".jpg"))
    bears = sorted((SHARED / "bears").rglob("*.jpg"))
    valid = validation_files()
    started = time.perf_counter()
    other_predictions = predict_all(classifier, others)
    other_seconds = time.perf_counter() - started
    bear_predictions = predict_all(classifier, bears)
    valid_predictions = predict_all(classifier, valid)
    flagged = lambda predictions: sum(p.none_of_these for p in predictions) / len(predictions)  # noqa: E731
    valid_right = sum(p.closest == f.parent.name for p, f in zip(valid_predictions, valid)) / len(valid)
    per_class = {}
    for file, prediction in zip(others, other_predictions):
        per_class.setdefault(file.parent.name, []).append(prediction.none_of_these)
    with_check, without_check = one_image_cost(classifier, (REPO / "examples" / "grizzly-1.jpg").read_bytes())
    card = classifier.card
    settings = card["none_of_these"]
    lines = [
        "# None of these: the shipped model on photos of other things (benchmarks/none_of_these.py)",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads. Model: {card['backbone']}, trained "
        f"{card['trained']}; check: {settings['method']}, k = {settings['k']}, threshold {settings['threshold']} "
        f"(calibration: {settings['calibration']}).",
        "",
        "| photos | count | flagged \"none of these\" | goal |",
        "|---|---|---|---|",
        f"| Imagenette, all (no bears) | {len(others)} | {flagged(other_predictions):.2%} | >= 98 % |",
        f"| development bears, validation split | {len(valid)} | {flagged(valid_predictions):.2%} | small |",
        f"| development bears, all 416 (most were trained on) | {len(bears)} | {flagged(bear_predictions):.2%} | |",
        "",
        f"Top class right on the validation split: {valid_right:.1%} ({len(valid)} photos).",
        "",
        "Imagenette per class, flagged: " + ", ".join(
            f"{name} {sum(values) / len(values):.1%}" for name, values in sorted(per_class.items())) + ".",
        "",
        f"Imagenette through the serving path: {len(others) / other_seconds:.1f} images/s.",
        "",
        "| one image, bytes in -> Prediction, median of 60 alternating | with the check | check switched off | ratio | goal |",
        "|---|---|---|---|---|",
        f"| examples/grizzly-1.jpg | {with_check * 1000:.1f} ms | {without_check * 1000:.1f} ms | "
        f"{with_check / without_check:.3f}x | <= 1.05x |",
    ]
    publish(lines, RESULTS, quick=False)


if __name__ == "__main__":
    main()
