"""picsort: build, share and demo your own image classifier (fast.ai lesson 2)."""

import os

# Keeps picsort off the Hugging Face hub: timm asks it for weights unless told not to, and
# without internet it retries for about a minute before failing. picsort's weights are local files, so the
# hub is never needed. Set here, before anything in picsort can import huggingface_hub (which reads it once).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

__version__ = "0.1.0"


def teach(source, out, **options):
    """Teach a new model the photos in `source` (one sub-folder per class, or a labels zip) and write its model
    folder to `out`; returns a `picsort.training.teaching.Taught` (its str() is the summary). See picsort.training.teaching.teach
    for the options. Here so `picsort.teach(...)` works while `import picsort` stays light (no torch)."""
    from picsort.training.teaching import teach as teach_photos

    return teach_photos(source, out, **options)

# fastai 2.8.12's import calls torch.jit.script, which torch 2.14 marks deprecated: a warning (with this machine's
# paths) in the notebook that a learner can do nothing about. Only that message is silenced.
import warnings  # noqa: E402

warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
