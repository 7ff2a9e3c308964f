"""The `serve` command: options -> ServeSettings -> uvicorn running the app.

Its embedding options are the other commands' own (cli/options.py), and a library error
reaches `main`, which prints it with the same flag hints as every other command.
"""

from __future__ import annotations

import signal
import sys

import click

from imgsim_index.cli.options import (
    backend_option,
    batch_size_option,
    build_settings,
    device_option,
    model_option,
    wait_option,
    weights_option,
)


@click.command("serve")
@click.option("--index", "index_dir", required=True, type=click.Path(file_okay=False),
              help="The index folder to serve (built with `build`).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but the loopback needs --token.")
@click.option("--port", default=8750, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port to listen on (0: any free port).")
@click.option("--token", envvar="IMGSIM_TOKEN", default=None,
              help="Every request must send `Authorization: Bearer TOKEN` [env IMGSIM_TOKEN].")
@click.option("--inbox", type=click.Path(file_okay=False), default=None,
              help="Folder where uploaded images are saved before being added.")
@click.option("--output", default="results", show_default=True, type=click.Path(file_okay=False),
              help="Where dedupe jobs write report folders (the review page reads them).")
@click.option("--move-root", type=click.Path(file_okay=False), default=None,
              help="The review page moves files only into folders under this one "
                   "[default: the --output folder].")
@click.option("--max-upload-mb", default=50.0, show_default=True, type=click.FloatRange(0.001),
              help="Largest accepted upload.")
@click.option("--max-megapixels", default=100.0, show_default=True,
              type=click.FloatRange(0.000001),
              help="Largest image a query or upload may decode, read from its header first.")
@click.option("--decode-slots", default=0, show_default=True, type=click.IntRange(0, 256),
              help="Requests decoding images at once; more get 429 (0: one per CPU core).")
@model_option
@weights_option
@device_option
@backend_option
@batch_size_option
@click.option("--workers", default=0, show_default=True, type=click.IntRange(0, 64),
              help="Decoding processes for adds (0: decode on the writer thread).")
@click.option("--load-model/--lazy-model", default=False, show_default=True,
              help="Load the model at start rather than on the first query or add.")
@wait_option
def serve(index_dir: str, host: str, port: int, token: str | None, inbox: str | None,
          output: str, move_root: str | None, max_upload_mb: float, max_megapixels: float,
          decode_slots: int, model: str | None, weights: str | None, device: str,
          backend: str, batch_size: int, workers: int, load_model: bool, wait: bool) -> None:
    """Serve an index over HTTP: query, add, new pairs, dedupe jobs, and a review page.

    The service holds the index's writer lock while it runs; stop it with Ctrl-C or
    SIGTERM, which commits what was embedded."""
    import dataclasses

    import uvicorn

    from imgsim_index.serve.app import create_app
    from imgsim_index.serve.security import check_bind
    from imgsim_index.serve.service import IndexService, ServeSettings

    check_bind(host, token)
    build = dataclasses.replace(
        build_settings(model=model, weights=weights, device=device, backend=backend,
                       batch_size=batch_size, workers=workers, wait=wait),
        checkpoint_images=256, checkpoint_seconds=5.0)
    settings = ServeSettings(index=index_dir, output=output, inbox=inbox,
                             max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                             token=token or None, move_root=move_root,
                             max_pixels=int(max_megapixels * 1_000_000),
                             decode_slots=decode_slots or None, build=build)
    service = IndexService(settings)
    service.start()  # fail here (locked index, bad model) rather than inside uvicorn
    if load_model:
        service.embedder()
    app = create_app(service, start_service=False)
    click.echo(f"serving {service.index_dir} on http://{host}:{port} (API docs at /docs)",
               err=True)
    # uvicorn catches SIGTERM, shuts the app down (which stops the service) and then
    # raises the signal again under the handler found at start: make that a clean exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        service.stop()
        click.echo("stopped; everything embedded is committed", err=True)


COMMANDS = [serve]

__all__ = ["COMMANDS", "serve"]
