"""The serving daemon: onnxruntime engine, decoder, state cache, gRPC services, retraining.
Never imports torch."""
