"""Images in, every class's probability out, by two calls on a `Classifier` that share one answering rule
(`Classifier.answers`: a forward pass, then a second look at a reduced photo whose answer is near an edge):

- one photo: `Classifier.classify` (the app, `predict`) decodes it once, answers it, and hands back the decoded
  picture with the answer, so whoever shows, labels or explains it decodes nothing again;
- many photos: `classify_stream` (`predict_batch`, the CLI and Dask workers through `picsort.inference.batches`)
  decodes ahead on threads and answers a model batch at a time, with memory flat however many there are.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence, TypeVar

import numpy as np

from picsort.foundation.cpu_quota import let_idle_threads_sleep

let_idle_threads_sleep()  # before torch loads OpenMP: this module serves the app, the CLI and the API
import torch
from PIL import Image

from picsort.foundation.vocabulary import NONE_LABEL
from picsort.inference.model import DEFAULT_THRESHOLD, feature_width, load_network, model_dir, read_card
from picsort.inference.none_of_these import NoneOfTheseCheck
from picsort.photos.images import (
    DecodedImage,
    ImageInput,
    UnusableImageError,
    decode_image,
    image_from_any,
    is_file_object,
    read_file_object,
)

__all__ = ["BATCH_SIZE", "Classified", "Classifier", "Prediction", "Prepared", "classify_stream", "load_model",
           "prepared_ahead"]

# Images per forward pass. On 2 cores (benchmarks/app_speed.py) passes of 4-8 images ran 1.6-3x more images
# per second than one pass over 64, whose activations (hundreds of MB) miss the caches and are mapped
# fresh from the kernel on every call; one image at a time wastes the batching.
FORWARD_CHUNK = 8
# Images per model batch of `classify_stream` when the caller does not say: a multiple of FORWARD_CHUNK, so the
# API's forward passes hold the same images as one call over the whole list would.
BATCH_SIZE = 4 * FORWARD_CHUNK

# A photo decoded reduced (`Classifier.decode`) gets the answers of the photo decoded whole where the network is
# sure, but near an edge its small pixel differences move them. There the answer is computed again from the whole
# photo (tests/test_classify.py): a top probability under DECODE_WHOLE_BELOW, or a similarity within
# DECODE_WHOLE_WITHIN of the "none of these" threshold. With the shipped logistic-regression head, on the 416
# development photos at 12 MP decoded reduced, answers with a top probability of 0.9 or more were at most 0.013
# from fastai's (all of them: 0.027); the 12 below 0.9 are decoded whole.
DECODE_WHOLE_BELOW = 0.9
DECODE_WHOLE_WITHIN = 0.05
# ... or a resemblance within this fraction of its threshold (a probability mass: near it, small changes count).
DECODE_WHOLE_NEAR = 0.5


@dataclass(repr=False)
class Prediction:
    """One image's classification: the answer (`label`), the closest class and every class's probability.

    `label` is the answer to show and to act on: the top class, or `NONE_LABEL` ("none") when `none_of_these`,
    that is when the photo looks like none of the training photos (a dog shown to a bears model); then the top
    class means little. `closest` is always the top class and `probability` its probability, so
    `probabilities[closest] == probability`, while `probabilities[label]` raises KeyError for a "none of these"
    answer rather than quietly giving the probability of a class the answer is not.
    `similarity` and `resemblance`: the scores behind `none_of_these` (picsort.inference.none_of_these): how near the
    training photos it lies, and how much of the ImageNet classifier's probability falls on the ImageNet classes
    the training photos resemble (higher = more like them; 1 for a model without that classifier).
    `unsure`: the top probability is low, so which class is unclear (it may be none of them).
    """

    closest: str
    probability: float
    probabilities: dict[str, float]
    unsure: bool = False
    none_of_these: bool = False
    similarity: float = 1.0
    resemblance: float = 1.0

    @property
    def label(self) -> str:
        # Derived, not stored: the answer can never disagree with `none_of_these`.
        return NONE_LABEL if self.none_of_these else self.closest

    def __repr__(self) -> str:
        shown = ", ".join(f"{field.name}={getattr(self, field.name)!r}" for field in fields(self))
        return f"Prediction(label={self.label!r}, {shown})"


class Prepared(NamedTuple):
    """One photo as the network takes it: its input tensor, whether it was decoded reduced (`DecodedImage`), and
    what it was decoded from, to decode it whole when its answer is near an edge."""

    tensor: torch.Tensor
    reduced: bool
    source: ImageInput


@dataclass(frozen=True, eq=False)
class Classified:
    """One photo as `Classifier.classify` left it: the answer, and the upright RGB picture it was decoded to (no
    larger than the network needs) with whether that was reduced. `image` is the decode the answer came from: keep it
    to show or explain the photo instead of decoding it again. Not reduced, it was decoded whole with every check
    `picsort.photos.images` makes, so the file is known usable (what a label store checks before keeping it)."""

    prediction: Prediction
    image: Image.Image
    reduced: bool


class Classifier:
    """A trained model loaded once from a model folder (plain weights + card), ready to classify."""

    def __init__(self, folder: Path | str | None = None):
        self.folder = model_dir(folder)
        # Every file is checked (card, reference, the weights' shapes) before the network is built: a folder that
        # cannot be served says why (ModelFolderError) without allocating what its card asks for.
        card = read_card(self.folder)
        none_of_these = NoneOfTheseCheck.load(self.folder, card, feature_width(card))
        network, card = load_network(self.folder, card)
        self._use(network, card, none_of_these)

    @classmethod
    def from_network(cls, network: torch.nn.Module, card: dict,
                     none_of_these: NoneOfTheseCheck | None = None) -> "Classifier":
        """A Classifier for a network and card not (yet) in a model folder: `picsort.teach` prepares its photos
        with one, so it sees them exactly as the app will."""
        classifier = cls.__new__(cls)
        classifier.folder = None
        classifier._use(network.eval(), card, none_of_these or NoneOfTheseCheck(None))
        return classifier

    def _use(self, network: torch.nn.Module, card: dict, none_of_these: NoneOfTheseCheck) -> None:
        self.network, self.card, self.none_of_these = network, card, none_of_these
        # Channels-last runs this CNN 1.3-2x faster on CPU for batches of 4 or more, no slower for one (2 cores).
        self.network = self.network.to(memory_format=torch.channels_last)
        self.classes: list[str] = list(self.card["classes"])
        self.threshold: float = float(self.card.get("threshold", DEFAULT_THRESHOLD))
        prep = self.card["preprocessing"]
        self.size, self.extra = int(prep["size"]), int(prep["extra"])
        self.mean = torch.tensor(prep["mean"], dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(prep["std"], dtype=torch.float32).view(3, 1, 1)
        # (pixels / 255 - mean) / std as one multiply-add on the 0-255 values
        self._scale, self._shift = 1 / (255 * self.std), -self.mean / self.std

    # -- preparing images -------------------------------------------------------------------------------

    def decode(self, item: ImageInput, name: str | None = None) -> DecodedImage:
        """An upright RGB image from anything `image_from_any` takes, decoded no larger than `model_view` needs,
        and whether that made it smaller than stored (decoded reduced).

        Bad input raises `UnusableImageError`; `name` is what its message calls the image.
        """
        # Twice the resize's size, as Pillow's thumbnail drafts (reducing_gap=2): photos under 2x are decoded as
        # fastai decodes them, larger ones stay close to its answers, and `answered_whole_near_edges` decodes those
        # near an edge whole (tests/test_classify.py; benchmarks/phone_photos.py has what each costs).
        return decode_image(item, min_side=2 * (self.size + self.extra), name=name)

    def to_image(self, item: ImageInput, name: str | None = None) -> Image.Image:
        """`decode(item, name)`'s picture alone, for showing or explaining it."""
        return self.decode(item, name).image

    def prepare(self, item: ImageInput, decoded: DecodedImage | None = None) -> Prepared:
        """`item` as the network takes it: decoded (unless `decoded` is `decode(item)` already), then `to_tensor`.

        An open file is read here, once: its bytes are what a near-edge answer decodes whole again. With
        `decoded`, `item` must still be readable (bytes, a path, a picture: not a file read already).
        """
        if decoded is None:
            name = None
            if is_file_object(item):
                item, name = read_file_object(item)
            decoded = self.decode(item, name)
        return Prepared(self.to_tensor(decoded.image), decoded.reduced, item)

    def model_view(self, image: Image.Image) -> Image.Image:
        """The image as the network sees it: the learner's validation resize, done the same way in PIL."""
        scaled = self.size + self.extra
        # fastai squishes the whole image (no aspect kept) with bilinear resampling, then crops the centre.
        view = image.resize((scaled, scaled), Image.BILINEAR)
        if self.extra:
            left = self.extra // 2
            view = view.crop((left, left, left + self.size, left + self.size))
        return view

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        """A normalised 3×size×size float tensor for one RGB image."""
        pixels = torch.from_numpy(np.asarray(self.model_view(image), dtype=np.uint8).copy())
        return torch.addcmul(self._shift, pixels.permute(2, 0, 1), self._scale)

    @staticmethod
    def to_batch(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """One N×3×size×size batch of `to_tensor` results, laid out channels-last as the network takes it."""
        # to_tensor's results are already channels-last in memory: stacking them that way saves a copy.
        return torch.stack([tensor.permute(1, 2, 0) for tensor in tensors]).permute(0, 3, 1, 2)

    # -- classifying ------------------------------------------------------------------------------------

    def feature_maps(self, batch: torch.Tensor):
        """The body's feature maps of a prepared batch, FORWARD_CHUNK images at a time (call in inference mode)."""
        body = self.network[0]
        for chunk in batch.split(FORWARD_CHUNK):
            yield body(chunk.contiguous(memory_format=torch.channels_last))

    def scores(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Softmax probabilities (N×classes), similarity to the training photos (N) and resemblance (N) for a
        prepared batch (N×3×size×size).

        One forward pass: the body's feature map feeds both the head and the "none of these" check.
        """
        head = self.network[1]
        probabilities, similarities, resemblances = [], [], []
        with torch.inference_mode():
            for features in self.feature_maps(batch):
                probabilities.append(torch.softmax(head(features), dim=1))
                similarities.append(self.none_of_these.similarity(features))
                resemblances.append(self.none_of_these.resemblance(features))
        return torch.cat(probabilities), torch.cat(similarities), torch.cat(resemblances)

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """The network's softmax alone, without the "none of these" check: the bare model benchmarks compare with."""
        head = self.network[1]
        with torch.inference_mode():
            return torch.cat([torch.softmax(head(features), dim=1) for features in self.feature_maps(batch)])

    def predictions(self, batch: torch.Tensor, threshold: float | None = None) -> list[Prediction]:
        """A `Prediction` per image of a prepared batch; `threshold` overrides the card's for `unsure`."""
        probabilities, similarities, resemblances = self.scores(batch)
        return [self.prediction(row, similarity, threshold, resemblance)
                for row, similarity, resemblance in zip(probabilities.tolist(), similarities.tolist(),
                                                        resemblances.tolist())]

    def prediction(self, row: Sequence[float], similarity: float, threshold: float | None = None,
                   resemblance: float = 1.0) -> Prediction:
        """A `Prediction` from one row of class probabilities and the photo's "none of these" scores."""
        probabilities = {name: float(p) for name, p in zip(self.classes, row)}
        closest = max(probabilities, key=probabilities.__getitem__)
        probability = probabilities[closest]
        unsure = probability < (self.threshold if threshold is None else threshold)
        return Prediction(closest, probability, probabilities, unsure=unsure,
                          none_of_these=self.none_of_these.is_none_of_these(similarity, resemblance),
                          similarity=float(similarity), resemblance=float(resemblance))

    def answers(self, photos: Sequence[Prepared], threshold: float | None = None) -> list[Prediction]:
        """The answer for each prepared photo: one forward pass over them (`predictions`), then a second look at
        each reduced photo whose answer is near an edge (`answered_whole_near_edges`). Both calls answer by it."""
        if not photos:
            return []
        predictions = self.predictions(self.to_batch([photo.tensor for photo in photos]), threshold)
        return self.answered_whole_near_edges(photos, predictions, threshold)

    def classify(self, item: ImageInput, name: str | None = None, threshold: float | None = None) -> Classified:
        """Classify one photo (path, bytes, open file, PIL image or array), decoding it once: its answer and the
        picture it was decoded to. Bad input raises `UnusableImageError`; `name` is what its message calls it."""
        if is_file_object(item):
            item, read_name = read_file_object(item)  # read once: a near-edge answer decodes the bytes whole
            name = name or read_name
        decoded = self.decode(item, name)
        (prediction,) = self.answers([self.prepare(item, decoded)], threshold)
        return Classified(prediction, decoded.image, decoded.reduced)

    def predict(self, item: ImageInput) -> Prediction:
        """Classify one image (path, bytes or PIL image): `classify(item).prediction`."""
        return self.classify(item).prediction

    def predict_batch(self, items: Iterable[ImageInput]) -> list[Prediction]:
        """Classify several images, in batches (`classify_stream`); any unusable image raises `UnusableImageError`."""
        return _every_answer(classify_stream(items, self))

    def near_an_edge(self, prediction: Prediction) -> bool:
        """Whether a small change of pixels could move this answer noticeably (see DECODE_WHOLE_BELOW)."""
        check = self.none_of_these
        near_threshold = check.threshold is not None and abs(prediction.similarity - check.threshold) < DECODE_WHOLE_WITHIN
        near_resemblance = (check.resemblance_threshold is not None
                            and abs(prediction.resemblance - check.resemblance_threshold)
                            < DECODE_WHOLE_NEAR * check.resemblance_threshold)
        return prediction.probability < DECODE_WHOLE_BELOW or near_threshold or near_resemblance

    def answered_whole_near_edges(self, photos: Sequence[Prepared], predictions: list[Prediction],
                                  threshold: float | None = None) -> list[Prediction]:
        """`predictions` (one per photo) with each answer for a photo decoded reduced that is near an edge computed
        again from the photo decoded whole."""
        answers = list(predictions)
        for index, (photo, prediction) in enumerate(zip(photos, predictions)):
            if not (photo.reduced and self.near_an_edge(prediction)):
                continue
            try:
                whole = image_from_any(photo.source)
            except UnusableImageError:
                continue  # read once already (a file that changed since): the reduced picture's answer stands
            batch = self.to_tensor(whole).unsqueeze(0)
            del whole  # one whole photo in memory at a time
            answers[index] = self.predictions(batch, threshold)[0]
        return answers

    # -- explaining -------------------------------------------------------------------------------------

    def heatmap(self, image: Image.Image, class_name: str | None = None) -> np.ndarray:
        """Grad-CAM on the body's last feature map: where the picture drove `class_name` (default: top class).

        Returns a float array in [0, 1] the size of `image`.
        """
        body, head = self.network[0], self.network[1]
        batch = self.to_tensor(image).unsqueeze(0)
        with torch.enable_grad():
            features = body(batch).detach().requires_grad_(True)
            scores = head(features)[0]
            index = int(scores.argmax()) if class_name is None else self.classes.index(class_name)
            (gradients,) = torch.autograd.grad(scores[index], features)
        weights = gradients.mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * features).sum(dim=1))[0].detach()
        cam = cam / cam.max() if float(cam.max()) > 0 else cam
        # Map the feature grid back to the picture: it covers the centre crop of the squished image.
        crop = Image.fromarray((cam.numpy() * 255).astype(np.uint8)).resize((self.size, self.size), Image.BILINEAR)
        # The border the crop cut off fades to zero rather than stepping there, so the overlay has no hard edge.
        left = self.extra // 2
        canvas = Image.fromarray(np.pad(np.asarray(crop), ((left, self.extra - left),) * 2, mode="linear_ramp",
                                        end_values=0))
        return np.asarray(canvas.resize(image.size, Image.BILINEAR), dtype=np.float32) / 255

    def explain(self, image: Image.Image, class_name: str | None = None, opacity: float = 0.5) -> Image.Image:
        """The picture with its Grad-CAM heatmap laid over it (red = what drove the prediction most)."""
        cam = self.heatmap(image, class_name)
        # A blue → yellow → red ramp, computed here so the app needs no matplotlib.
        colours = np.stack([np.clip(2 * cam, 0, 1), np.clip(2 - 2 * cam, 0, 1) * np.clip(2 * cam, 0, 1),
                            np.clip(1 - 2 * cam, 0, 1)], axis=-1)
        base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
        alpha = opacity * cam[..., None] + 0.15
        blended = (1 - alpha) * base + alpha * colours
        return Image.fromarray((np.clip(blended, 0, 1) * 255).astype(np.uint8))


Item = TypeVar("Item")
_END = object()


def classify_stream(items: Iterable[Item], classifier: Classifier, batch_size: int = BATCH_SIZE, *,
                    prepare: Callable[[Item], Prepared] | None = None, workers: int = 0,
                    threshold: float | None = None) -> Iterator[list[tuple[Item, Prediction | UnusableImageError]]]:
    """The path for many photos: yields, per model batch, `(item, Prediction or UnusableImageError)` in input order.

    Each item is made the network's input by `prepare` (default `classifier.prepare`: decode, model view, tensor)
    on `workers` threads at most two batches ahead of the model (`workers=0`: on the calling thread, between
    batches), so memory stays flat however many items there are. A batch is answered by `classifier.answers`,
    as one photo is by `Classifier.classify`. An item `prepare` cannot use (`UnusableImageError`) is answered with that
    error; any other exception ends the stream. `threshold` overrides the model card's for `Prediction.unsure`.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if workers < 0:
        raise ValueError("workers must be 0 or more")
    def run(batch: list[tuple[Item, Prepared | UnusableImageError]]) -> list[tuple[Item, Prediction |
                                                                                   UnusableImageError]]:
        photos = [photo for _, photo in batch if not isinstance(photo, UnusableImageError)]
        answers = iter(classifier.answers(photos, threshold))
        return [(item, photo if isinstance(photo, UnusableImageError) else next(answers)) for item, photo in batch]

    batch: list[tuple[Item, Prepared | UnusableImageError]] = []
    good = 0
    # Two batches ahead: one batch decoding while the model runs the other. closing: a caller stopping early
    # stops the decoding at once.
    with closing(prepared_ahead(items, prepare or classifier.prepare, workers=workers, ahead=2 * batch_size)) as ahead:
        for item, photo in ahead:
            batch.append((item, photo))
            good += not isinstance(photo, UnusableImageError)
            # A batch is full when it holds batch_size usable images; bad ones ride along for free, up to a
            # limit, so a folder of mostly bad files still gets its rows out (and saved) as it goes.
            if good == batch_size or len(batch) >= 2 * batch_size:
                yield run(batch)
                batch, good = [], 0
    if batch:
        yield run(batch)


def prepared_ahead(items: Iterable[Item], prepare: Callable[[Item], Prepared], *, workers: int, ahead: int
                   ) -> Iterator[tuple[Item, Prepared | UnusableImageError]]:
    """`(item, prepare(item))` in input order, or `(item, UnusableImageError)` for an item that cannot be used,
    prepared on `workers` threads (0: on the calling thread, when asked for) at most `ahead` items ahead, so memory
    stays flat however many items there are. Any other exception from `prepare` ends it."""
    items = iter(items)
    pending: deque[tuple[Item, Future]] = deque()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="picsort-decode") if workers else _InlinePool()

    def top_up() -> None:
        while len(pending) < ahead:
            item = next(items, _END)
            if item is _END:
                return
            pending.append((item, pool.submit(prepare, item)))

    try:
        top_up()
        while pending:
            item, future = pending.popleft()
            top_up()
            try:
                yield item, future.result()
            except UnusableImageError as error:
                yield item, error
    finally:
        # The caller may stop early (break, Ctrl-C): drop queued decodes, and don't wait for the one in hand
        # (a file on a stuck network drive must not hold up the stop).
        pool.shutdown(wait=False, cancel_futures=True)


class _InlinePool:
    """Stands in for the thread pool when `workers=0`: prepares on the calling thread."""

    @staticmethod
    def submit(function, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(function(*args))
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the future, as a pool would
            future.set_exception(exc)
        return future

    @staticmethod
    def shutdown(wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def _every_answer(batches: Iterator[list[tuple[object, Prediction | UnusableImageError]]]) -> list[Prediction]:
    """The answers of `classify_stream`, in order; the first unusable image raises its `UnusableImageError`."""
    answers = []
    try:
        for batch in batches:
            for _, answer in batch:
                if isinstance(answer, UnusableImageError):
                    raise answer
                answers.append(answer)
    finally:
        batches.close()
    return answers


_loaded: dict[Path, Classifier] = {}


def load_model(folder: Path | str | None = None) -> Classifier:
    """The `Classifier` for a model folder (default: the shipped `model/`), loaded once per process."""
    key = model_dir(folder).resolve()
    if key not in _loaded:
        _loaded[key] = Classifier(key)
    return _loaded[key]
