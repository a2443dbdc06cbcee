"""The web page (``python web.py``): photos and the browser's camera, through the same ExpressionDetector.

``server`` starts Streamlit, ``page`` is the Streamlit script it runs for each visitor, ``photos``
and ``camera`` do the work. Streamlit puts the folder of its script on ``sys.path``; this package
holds nothing but the web modules, so no other module of the project becomes importable under a
bare name (``realtime/types.py`` as ``types``) that way.
"""
