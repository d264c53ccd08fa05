"""The served model: the model folder and its card (model), the networks (backbones, efficientnet_lite),
classifying photos one at a time or in batches (classify, batches) and the "none of these" check.
"""
