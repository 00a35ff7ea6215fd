"""The core: paths, file rules, corpus, secret masking, tokenizer, index, bundle format, durable
writes, errors and the version. numpy and the standard library only: every other layer uses it."""
