"""Inference: ONNX Runtime sessions, the model store, the LSTM and GAN generators, sampling, bar sources."""
