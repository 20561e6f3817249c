"""Command line: ``mmspec demo | simulate | train | evaluate | predict | bench``.

Each sub-command lives beside the code it drives; this module only collects
them.  A module contributes a command through ``register(subparsers)``, which
adds its parser and sets ``func`` (called with the parsed arguments, returning
an exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import MMSpecError

#: module that provides each sub-command, in the order shown by ``--help``
COMMANDS = {
    "demo": "mmspec_widgets.demo",
    "simulate": "mmspec_widgets.simulate.cli",
    "train": "mmspec_widgets.learn.cli",
    "evaluate": "mmspec_widgets.learn.cli",
    "predict": "mmspec_widgets.learn.cli",
    "bench": "mmspec_widgets.bench",
    "validate": "mmspec_widgets.validate",
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="mmspec",
        description="Local structure of NMC cathodes from fused core-level spectra.",
    )
    parser.add_argument("--version", action="version", version=f"mmspec_widgets {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    registered = set()
    for module_name in dict.fromkeys(COMMANDS.values()):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:  # command not available in this build
                continue
            raise
        if module_name not in registered:
            module.register(sub)
            registered.add(module_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MMSpecError as err:
        print(f"mmspec {args.command}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # unreadable input, read-only or full output folder ...
        print(f"mmspec {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mmspec {args.command}: interrupted; finished work is kept and a rerun resumes.",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
