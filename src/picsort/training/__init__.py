"""Making a model folder: train.ipynb's helpers (notebook), calibrating "none of these" (calibration),
exporting plain weights and a card (export), and teaching a model from class folders (teaching).
"""
