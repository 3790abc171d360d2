//! The connector contract suite (filled in below).
