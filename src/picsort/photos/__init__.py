"""Photos and their labels: decoding what users hand us (images), the one label store (labels), class folders,
gathering photos (sources: search, download, a local folder) and cleaning and reviewing them.
"""
