"""One module per kind of source; :func:`edge_committee.stream.uri.open_source` picks one by URI."""
