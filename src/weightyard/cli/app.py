"""The Typer application every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="weightyard",
    help="Weightyard: keep, vet and serve open-weight models on your own ground.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
