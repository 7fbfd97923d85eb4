"""``python -m sweeper status [SWEEP] [--watch]`` | ``python -m sweeper server [...]``."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if argv[:1] == ["status"]:
        from sweeper.status import main as status

        return status(argv[1:])
    if argv[:1] == ["server"]:
        from sweeper.server import main as server

        return server(argv[1:])
    print("usage: python -m sweeper status [SWEEP] [--watch [SECONDS]]\n"
          "       python -m sweeper server [--port 5000] [--store sqlite:///mlflow.db] [--artifacts DIR]",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
