"""The classifier as a static web site (`picsort export-web`): the served network and its "none of these" check
exported to ONNX (`onnx_export`), run in the visitor's own browser by ONNX Runtime Web (`static/vendor/`), with a
page that does what the app's classify part does (`static/`); `site.write_site` puts them in a folder.
"""
