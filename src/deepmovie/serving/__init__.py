"""Serving: the FastAPI app and web page over one :class:`~deepmovie.recommender.Recommender`."""
