# Voila settings for the Binder route that JSON cannot hold: a function. binder/postBuild copies this file
# into the Jupyter config folder, where the server's voila extension reads it beside ../voila.json. (Not
# at the repository's root: a voila.py there would shadow the voila package for `python -m voila`.)


def give_page_its_xsrf_cookie(req, notebook, cwd):
    """Give the page the `_xsrf` cookie that its tab-close beacon (POST /voila/api/shutdown) must carry.

    Voila 0.5.13's page never gets one, so the server refuses every such shutdown with 403
    (voila-dashboards/voila#1458) and a closed tab's kernel, photos and all, waits for the idle culler.
    """
    _ = req.xsrf_token  # reading it sets the cookie on this response, before the page starts streaming


c.VoilaConfiguration.prelaunch_hook = give_page_its_xsrf_cookie  # noqa: F821 (c is the config loader's)
