"""Entry points: the Litestar app, the ``taskexec`` command line, and the composition root."""
