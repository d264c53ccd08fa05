"""Sorting many photos: the streaming sort behind `picsort classify` (sort), its CSV (results), copies into
class folders (copies) and the Dask path (cluster).
"""
