"""efficientnet_lite.py: the plain-torch EfficientNet-Lite that serving uses instead of timm's."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from picsort.foundation.folders import MODEL_DIR
from picsort.inference.efficientnet_lite import EfficientNetLite
from picsort.inference.model import WEIGHTS_NAME, build_network, read_card


def test_plain_torch_lite0_equals_timm_on_the_shipped_weights():
    card = read_card(MODEL_DIR)
    weights = load_file(MODEL_DIR / WEIGHTS_NAME)
    plain, with_timm = build_network(card).eval(), build_network(card, use_timm=True).eval()
    assert any(isinstance(part, EfficientNetLite) for part in plain.modules())  # picsort's plain-torch network
    plain.load_state_dict(weights)
    with_timm.load_state_dict(weights)
    batch = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.allclose(plain(batch), with_timm(batch), atol=1e-5)
