"""``geckokit serve``: an encoder behind OpenAI's ``/v1/embeddings``, with micro-batching.

The wire contracts live in :mod:`geckokit.serve.protocol`, the batcher in
:mod:`geckokit.serve.batching`, the model side (unified format, Matryoshka dimensions,
token counts) in :mod:`geckokit.serve.model` and the FastAPI app in :mod:`geckokit.serve.app`.
Importing this package stays light; fastapi and the encoder load when an app is made.
"""
