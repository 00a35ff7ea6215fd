"""Model training: corpus, tokenizer, LSTM, training loop, ONNX export, bundle store (only
model, train, export and run import torch; the daemon uses the rest)."""
