"""The live pipeline: source -> detector -> preprocess -> classifier -> tracker -> annotator -> sinks.

Nothing under this package imports TensorFlow: the classifier runs the exported model with LiteRT.
"""
