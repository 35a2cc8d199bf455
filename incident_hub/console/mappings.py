"""`incident-hub mappings export|import|validate`: a connector's mapping document as a YAML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from incident_hub.console.errors import OperatorError
from incident_hub.console.output import as_json
from incident_hub.console.session import hub_session
from incident_hub.mapping.store import MappingInvalid

app = typer.Typer(help="Mapping documents (YAML), one versioned history per connector.", no_args_is_help=True)

ACTOR = "incident-hub cli"


def _read(file: Path) -> str:
    if str(file) == "-":
        return typer.get_text_stream("stdin").read()
    try:
        return file.read_text(encoding="utf-8")
    except OSError as error:
        raise OperatorError(f"cannot read {file}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise OperatorError(f"{file} is not UTF-8 text") from None


@app.command("export")
def export_mapping(
    connector_id: str,
    file: Annotated[
        Path | None, typer.Argument(help="Where to write it; none or -: standard output.")
    ] = None,
    version: Annotated[int | None, typer.Option(help="An older version (default: the current one).")] = None,
) -> None:
    """Write the connector's mapping (current version, or `--version`) as YAML, exactly as stored."""
    with hub_session() as hub:
        found = hub.mappings.get(connector_id, version) if version else hub.mappings.current(connector_id)
    if file is None or str(file) == "-":
        typer.echo(found.yaml, nl=not found.yaml.endswith("\n"))
        return
    try:
        file.write_text(found.yaml, encoding="utf-8")
    except OSError as error:
        raise OperatorError(f"cannot write {file}: {error.strerror}") from None
    typer.echo(f"{connector_id} mapping version {found.version} written to {file}", err=True)


@app.command("validate")
def validate_mapping(
    connector_id: str,
    file: Annotated[Path, typer.Argument(help="The YAML document (- for standard input).")],
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of lines.")] = False,
) -> None:
    """Check a document for the connector without storing it: every problem, one a line; exit 1 if any."""
    text = _read(file)
    with hub_session() as hub:
        problems = hub.mappings.validate(connector_id, text)
    if json_:
        as_json({"valid": not problems, "problems": problems})
    elif problems:
        for problem in problems:
            typer.echo(f"{problem.location}: {problem.message}")
    else:
        typer.echo(f"{file}: valid mapping for {connector_id}")
    if problems:
        raise typer.Exit(1)


@app.command("import")
def import_mapping(
    connector_id: str,
    file: Annotated[Path, typer.Argument(help="The YAML document (- for standard input).")],
    comment: Annotated[str | None, typer.Option(help="Why (kept with the version).")] = None,
) -> None:
    """Store the document as the connector's newest mapping version (validated first; the next sync uses
    it). Exit 1, storing nothing, if it has problems."""
    text = _read(file)
    with hub_session() as hub:
        try:
            saved = hub.mappings.save(connector_id, text, ACTOR, comment)
        except MappingInvalid as invalid:
            for problem in invalid.problems:
                typer.echo(f"{problem.location}: {problem.message}", err=True)
            raise OperatorError(f"{file}: not stored: {len(invalid.problems)} problem(s)") from None
        hub.audit.record(ACTOR, "mapping.save", connector_id, {"version": saved.version, "comment": comment})
    typer.echo(f"{connector_id} mapping version {saved.version} stored")
