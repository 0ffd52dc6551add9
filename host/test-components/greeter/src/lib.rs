//! A library component: exports `weft:test/greeter` (no HTTP). `greet` logs through `wasi:logging`
//! and counts calls in the instance, so a caller can tell whether its calls share one instance.

use std::sync::atomic::{AtomicU64, Ordering};

mod bindings {
    wit_bindgen::generate!({ path: "../wit", world: "greeter-lib", generate_all });
}

#[path = "../../greeting.rs"]
mod greeting;

use bindings::exports::weft::test::greeter::Guest;
use bindings::wasi::logging::logging::{Level, log};

static CALLS: AtomicU64 = AtomicU64::new(0);

struct Greeter;

impl Guest for Greeter {
    fn greet(name: String) -> String {
        CALLS.fetch_add(1, Ordering::Relaxed);
        log(Level::Info, "greeter", &format!("greeting {name:?}"));
        greeting::greeting(&name)
    }

    fn count() -> u64 {
        CALLS.load(Ordering::Relaxed)
    }
}

bindings::export!(Greeter with_types_in bindings);
