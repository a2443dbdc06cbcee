"""The expression detector as an HTTP API for programs: POST a photo, get the JSON record main.py --json prints.

  python serve.py                                  http://127.0.0.1:8000, this machine only
  python serve.py --port 8080 --host 0.0.0.0 --workers 2
  curl -F image=@photo.jpg http://127.0.0.1:8000/detect

Built on the same ExpressionDetector as main.py (see realtime/http_api/); Ctrl-C stops it.
"""

import sys

from realtime.http_api.cli import main

if __name__ == "__main__":
    sys.exit(main())
