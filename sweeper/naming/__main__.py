"""``python -m sweeper.naming {parse,canonical,compose,hash,explain,tokens,backbones}`` (imports neither torch nor MLflow)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from sweeper import naming

#: An override as on the sweep command line: a key (``+``/``~`` prefixed, dotted) and ``=``.
_OVERRIDE = re.compile(r"[+~]{0,2}[A-Za-z_][\w.@/-]*=")


def _is_overrides(args: Sequence[str]) -> bool:
    return all(_OVERRIDE.match(arg) for arg in args)


def _spec(args: Sequence[str]) -> str | list[str]:
    """A name (one argument that is not an override) or a list of overrides."""
    return list(args) if not args or _is_overrides(args) else " ".join(args)


def _tokens() -> list[str]:
    lines = [f"{'/'.join(t.examples) or t.pattern:<44} {t.slot:<20} {t.doc}" for t in naming.TABLE]
    lines.append(f"{'<key>-<value>':<44} {'escape':<20} {naming.codec.ESCAPE_DOC}")
    lines.append(f"backbone options: resnet50, resnet101, {naming.backbone_summary()}")
    return lines


def _run(args: argparse.Namespace) -> list[str]:
    if args.command == "parse":
        return naming.parse(args.name)
    if args.command == "canonical":
        return [naming.canonical(args.name)]
    if args.command == "compose":
        return [naming.compose_overrides(args.overrides)]
    if args.command == "hash":
        return [naming.hash_of(_spec(args.spec))]
    if args.command == "explain":
        return naming.explain(args.name)
    if args.command == "backbones":
        return _backbones(args.write)
    return _tokens()


def _backbones(write: bool) -> list[str]:
    """The generated DenseNet options that differ from conf/backbone/ (written with ``--write``)."""
    if write:
        changed = naming.configs.write_backbones()
        return [f"wrote {len(changed)} file(s) of conf/backbone/"] + changed
    stale, remove = naming.configs.stale_backbones()
    if stale or remove:
        raise naming.BadNameError(f"{len(stale) + len(remove)} generated file(s) of conf/backbone/ are stale "
                                  f"(e.g. {sorted([*stale, *(p.name for p in remove)])[0]}): run "
                                  f"`python -m sweeper.naming backbones --write`")
    return [f"conf/backbone/ holds the {len(naming.configs.generated_backbones())} generated DenseNet options"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweeper.naming", description=naming.__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("parse", help="print the Hydra overrides of a name, one per line").add_argument("name")
    sub.add_parser("canonical", help="print the canonical spelling of a name").add_argument("name")
    sub.add_parser("compose", help="print the canonical name of the config of overrides "
                   "(as on the sweep command line)").add_argument("overrides", nargs="*")
    sub.add_parser("hash", help="print the config hash of a name or of overrides").add_argument("spec", nargs="*")
    sub.add_parser("explain", help="print each token of a name and the config values it sets").add_argument("name")
    sub.add_parser("tokens", help="list the token table (canonical order) and the escape token")
    sub.add_parser("backbones", help="check (or --write) the generated conf/backbone/dense{L}k{K}.yaml files"
                   ).add_argument("--write", action="store_true", help="write the missing or stale files")
    args = parser.parse_args(argv)
    try:
        print("\n".join(_run(args)))
    except Exception as error:  # noqa: BLE001 - the CLI's contract: every failure one line, exit 2
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
