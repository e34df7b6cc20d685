//! The managed network of `limited` sandboxes: the proxy host that serves
//! each sandbox's bridge, and the decisions it asks for.

// Until the proxy host is merged in, nothing outside the tests calls the
// decider.
#[allow(dead_code, unused_imports)]
mod decide;
#[allow(unused_imports)]
pub(crate) use decide::*;
