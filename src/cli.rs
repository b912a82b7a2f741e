//! The command line: argument parsing and the top-level commands.
