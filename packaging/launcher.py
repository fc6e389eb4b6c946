"""Entry script of the frozen app (both executables, ``empanada-desktop`` and
``empanada-desktop-cli``, run this file).

``prepare()`` must come before anything else: in a multiprocessing worker started by "spawn" it
runs the worker and exits, so a worker never opens a second window or parses the command line.
Run from a source checkout (``python packaging/launcher.py ...``) it behaves like the
``empanada-desktop`` console script, which is how ``benchmarks/startup_time.py`` measures the
unfrozen app along the same path as the frozen one.
"""

import sys

if __name__ == "__main__":
    from empanada_desktop.frozen import prepare

    prepare()

    from empanada_desktop.cli import main

    sys.exit(main())
