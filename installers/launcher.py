"""The installed program's entry point (PyInstaller's script), for both faces of Tandem.

`tandem` and `tandem app [ARGS]` open the desktop app; `tandem COMMAND ...` (chat, bench, models, hw,
--help, --version) is the command line. Windows and macOS also get a windowed `tandem-app` (no console
window), which always opens the app. A frozen program has no `python -m app` to exec, so the dispatch that
`engine.cli.app` does with a second interpreter happens here, in-process.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str], program: str) -> int:
    if program == "tandem-app" or not argv or argv[0] == "app":
        from app.main import main as app_main

        return app_main(argv if program == "tandem-app" else argv[1:])
    from engine.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    name = os.path.splitext(os.path.basename(sys.executable))[0].lower()
    sys.exit(main(sys.argv[1:], name))
