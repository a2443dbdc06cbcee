"""The HTTP API (``python serve.py``): photos in, the JSON record ``main.py --json`` prints out, on FastAPI + uvicorn.

``uploads`` reads a request's photo into memory (capped, never spooled to disk), ``pool`` holds the
detectors (one per worker thread, never shared between threads), ``app`` is the FastAPI application,
``cli`` starts it. Detection, preprocessing and drawing are the Python API's (``realtime.api``).
"""
