"""Serving the app: Voila started by `picsort app` (voila_server), and what every route keeps: the kernel
websocket check, the kernel limit and the kernel's log going to the server, not the page.
"""
