//! Moved to [`crate::kit::fake`] (the generic vendor fake) and [`crate::kit::connector`] (building and
//! driving connectors); these re-exports keep files written against the old paths compiling.

#![allow(unused_imports)]

pub(crate) use crate::kit::connector::{Secrets, build, run};
pub(crate) use crate::kit::fake::{Req, Resp, percent_decode, resp, respond};
