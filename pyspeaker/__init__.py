"""pyspeaker: Kaldi-style speaker verification in Python.

From Python, a trained model is one call away (see :mod:`pyspeaker.inference`)::

    import pyspeaker
    model = pyspeaker.load_model("exp/<name>/checkpoints/final.pt")
    model.embed("a.wav")                 # 1-D float32 embedding
    model.verify("a.wav", "b.wav", threshold=0.5).decision

The heavy libraries (torch, ...) are imported on first use, so ``import pyspeaker`` and
``pyspeaker --help`` stay fast.
"""
__version__ = "0.1.0"

__all__ = ["SpeakerModel", "__version__", "load_model"]


def load_model(path, device=None, feature_config=None, **options):
    """Load a trained model for inference: a :class:`pyspeaker.inference.SpeakerModel` with
    ``embed``, ``embed_batch``, ``score`` and ``verify``. ``path``: a pyspeaker checkpoint
    (``exp/<name>/checkpoints/final.pt``), an experiment directory, or a voxceleb_trainer ``.model``
    with its options (``model=``, ``trainfunc=``, ...). See :func:`pyspeaker.inference.load_model`."""
    from pyspeaker.inference import load_model as _load

    return _load(path, device=device, feature_config=feature_config, **options)


def __getattr__(name: str):
    if name == "SpeakerModel":
        from pyspeaker.inference import SpeakerModel

        return SpeakerModel
    raise AttributeError(f"module 'pyspeaker' has no attribute {name!r}")
