"""One thin module per verb: parse options → call the library → print results (JSON on stdout)."""
