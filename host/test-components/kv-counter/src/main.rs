//! A service (`wasi:cli/run`): increments key `hits` of the bucket named by `BUCKET` (default
//! `weft-test`) every `INTERVAL_MS` (default 50) milliseconds and logs each count through
//! `wasi:logging`. With `EXIT_AFTER=N` it fails (exit code 1) after N increments in this run; with
//! `EXIT_CODE=0` it exits cleanly instead.

mod bindings {
    wit_bindgen::generate!({ path: "../wit", world: "kv-user", generate_all });
}

use bindings::wasi::keyvalue::{atomics, store};
use bindings::wasi::logging::logging::{Level, log};

fn main() {
    let var = |name: &str| std::env::var(name).ok();
    let bucket_name = var("BUCKET").unwrap_or_else(|| "weft-test".into());
    let interval: u64 = var("INTERVAL_MS").and_then(|v| v.parse().ok()).unwrap_or(50);
    let exit_after: Option<u64> = var("EXIT_AFTER").and_then(|v| v.parse().ok());
    let exit_code: i32 = var("EXIT_CODE").and_then(|v| v.parse().ok()).unwrap_or(1);
    let bucket = match store::open(&bucket_name) {
        Ok(b) => b,
        Err(e) => {
            log(Level::Error, "kv-counter", &format!("open {bucket_name}: {e:?}"));
            std::process::exit(2);
        }
    };
    let mut done = 0u64;
    loop {
        match atomics::increment(&bucket, "hits", 1) {
            Ok(n) => log(Level::Info, "kv-counter", &format!("hits={n}")),
            Err(e) => log(Level::Warn, "kv-counter", &format!("increment: {e:?}")),
        }
        done += 1;
        if exit_after.is_some_and(|n| done >= n) {
            log(Level::Warn, "kv-counter", &format!("exiting with code {exit_code} after {done} increments"));
            std::process::exit(exit_code);
        }
        std::thread::sleep(std::time::Duration::from_millis(interval));
    }
}
