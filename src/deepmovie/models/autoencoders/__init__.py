"""Autoencoder recommenders: AutoRec (I- and U-)."""
