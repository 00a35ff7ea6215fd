"""Model training (torch): the LSTM, the training loop, ONNX export and parity, publishing a
bundle, several processes. Runs in a child process of the daemon, never in it."""
