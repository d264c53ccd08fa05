"""The web page app.ipynb shows (page), its photo cards, Teach mode (teach_panel, teach_session) and the
anywidget widgets, whose front-end code is in static/.
"""
