"""``editlab app``: start the Streamlit app that installs with editlab (``pip install "editlab[app]"``).

It runs ``streamlit run`` on the installed ``editlab_app/serve.py`` (the app with the default model
loading while the server starts) in place of this process; Ctrl-C stops it. The
library never imports the app or Streamlit: this command only finds them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from editlab.cli.common import status


def register(sub) -> None:
    p = sub.add_parser("app", help="start the web app (Streamlit) on this machine: http://localhost:8501")
    p.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    p.add_argument(
        "--address",
        default="localhost",
        help="address to listen on (default localhost; 0.0.0.0 to serve other machines)",
    )
    p.add_argument(
        "--no-warm",
        action="store_true",
        help="do not load the default model while the server starts (the first page loads it)",
    )
    p.add_argument(
        "streamlit_args",
        nargs="*",
        metavar="-- STREAMLIT_ARGS",
        help="further `streamlit run` options after --, e.g. -- --server.headless true",
    )
    p.set_defaults(handler=run_app_cmd)


def app_command(port: int = 8501, address: str = "localhost", warm: bool = True, extra=()) -> list[str]:
    """The ``streamlit run`` command line for the installed app; ValueError saying what to install
    when the app package or Streamlit is missing."""
    spec = importlib.util.find_spec("editlab_app")
    if spec is None or not spec.origin:
        raise ValueError("the editlab app is not installed with this editlab; reinstall it: pip install 'editlab[app]'")
    if importlib.util.find_spec("streamlit") is None:
        raise ValueError("the app needs Streamlit, which is not installed: pip install 'editlab[app]'")
    if not 0 < int(port) < 65536:
        raise ValueError(f"--port {port}: give a port between 1 and 65535")
    script = Path(spec.origin).with_name("serve.py" if warm else "app.py")
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script),
        "--server.port",
        str(int(port)),
        "--server.address",
        address,
        "--browser.gatherUsageStats",
        "false",
        *extra,
    ]


def run_app_cmd(args) -> int:
    """Replace this process with ``streamlit run`` (so Ctrl-C and a service manager's stop signal
    reach the server itself and no orphan is left)."""
    import os

    cmd = app_command(args.port, args.address, not args.no_warm, args.streamlit_args)
    status(f"starting the app: http://{args.address}:{args.port} (Ctrl-C stops it)")
    sys.stdout.flush()
    os.execv(cmd[0], cmd)
    return 0  # pragma: no cover - execv does not return
