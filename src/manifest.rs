//! Manifests: finding, parsing and validating the YAML files into a `model::DesiredState`.
