"""The model: the Keras network and its masked metrics, weight files, NumPy generation."""
