//! The declarative HTTP connector runtime: one YAML spec per target type in `connectors/`.
