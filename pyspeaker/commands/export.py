"""`pyspeaker export`: a trained model as a TorchScript or ONNX file, for use outside pyspeaker."""
from __future__ import annotations

import click


@click.command(name="export")
@click.option("--model", "model_path", required=True, type=click.Path(),
              help="pyspeaker checkpoint (e.g. exp/<name>/checkpoints/final.pt or avg_last5.pt), experiment dir "
                   "or model dir from import-model.")
@click.option("--format", "fmt", required=True, type=click.Choice(["torchscript", "onnx"]),
              help="torchscript (load with torch.jit.load) or onnx (ONNX Runtime; needs the onnx package).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output file (written atomically).")
@click.option("--with-frontend", is_flag=True, default=False,
              help="Waveform models only: export the waveform front-end too (input [batch, samples] of 16 kHz "
                   "audio). Default: features in.")
@click.option("--example-frames", type=click.IntRange(64), default=200, show_default=True,
              help="Length of the traced example input (the exported model takes any length).")
def command(model_path, fmt, out, with_frontend, example_frames):
    """Export a trained embedding network: input features [batch, time, n_mels] (float32, as the
    model's feature store holds them), output embeddings [batch, nOut]; batch and time are dynamic.

    Give the exported model at least 64 frames (the shortest crop every family handles as in pyspeaker).
    The file records the model's front-end settings: pyspeaker.load_model(FILE) runs it (ONNX through
    onnxruntime) with the same features as the checkpoint.
    """
    from pyspeaker.errors import ConfigError
    from pyspeaker.export import export_model
    from pyspeaker.fileio import refuse_overlap
    from pyspeaker.inference import resolve_checkpoint
    from pyspeaker.log import get_logger, setup_logging
    from pyspeaker.models.frontend import WaveformModel
    from pyspeaker.training.checkpoint import model_from_checkpoint

    setup_logging()
    log = get_logger("pyspeaker.commands.export")
    refuse_overlap({"--out": out}, {"--model": model_path})
    model, ckpt = model_from_checkpoint(resolve_checkpoint(model_path))
    if with_frontend and not isinstance(model, WaveformModel):
        raise ConfigError(f"--with-frontend: {model_path} is a features model (no waveform front-end); "
                          "export it without --with-frontend")
    export_model(model, fmt, out, example_frames=example_frames, with_frontend=with_frontend, checkpoint=ckpt)
    name = ckpt["model_options"].get("name", type(model).__name__)
    log.info("exported %s (epoch %s) as %s%s -> %s", name, ckpt.get("epoch"), fmt,
             " with its waveform front-end" if with_frontend else "", out)
    click.echo(str(out))
