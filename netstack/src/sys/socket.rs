//! Socket calls nix does not wrap (filled in by the TCP data path).
