"""The expression detector as a web page: upload photos or use the browser's camera, see every face labelled.

  python web.py                        http://127.0.0.1:8501, this machine only
  python web.py --port 8080 --host 0.0.0.0

Built on the same ExpressionDetector as main.py (see realtime/web/); Ctrl-C stops it.
"""

import sys

from realtime.web.server import main

if __name__ == "__main__":
    sys.exit(main())
