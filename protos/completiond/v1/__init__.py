"""Generated gRPC contract, version 1 (see completion.proto; regenerate with `make protos`)."""
