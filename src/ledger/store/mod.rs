//! [`StateStore`](super::StateStore) implementations.
