"""Autoencoder recommenders: AutoRec (I- and U-), DeepRec, CDAE."""
