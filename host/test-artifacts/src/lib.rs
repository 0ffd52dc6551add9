//! Guest components for tests and benchmarks, built from source (`host/test-components`) for
//! `wasm32-wasip2` when this crate is built. Use it as a dev-dependency and read the paths:
//!
//! ```
//! let wasm = std::fs::read(weft_test_components::HELLO).unwrap();
//! assert_eq!(&wasm[..4], b"\0asm");
//! ```
//!
//! | component | behaviour |
//! |---|---|
//! | [`HELLO`] | answers `hello\n` |
//! | [`ECHO`] | echoes the body and `x-` headers, adds `x-echo-method`, `x-echo-uri`, `x-echo-authority` |
//! | [`ENV_CONFIG`] | `GET /env[/KEY]` reads `wasi:cli/environment`, `GET /config[/KEY]` reads `wasi:config/store` |
//! | [`SPINNER`] | burns CPU forever (or `?iterations=N` rounds) |
//! | [`HOG`] | allocates memory until stopped (or `?mb=N` MiB) |
//! | [`HTTP_CALLER`] | fetches the URL in header `x-target-url` and reports `upstream <status>: <body>`, or `502` |
//! | [`GREETER`] | library (no HTTP): exports `weft:test/greeter` (`greet`, `count`), logs through `wasi:logging` |
//! | [`GREET_HTTP`] | `GET /<name>[?times=N]` answers `greet(name)` of the `weft:test/greeter` it imports |
//! | [`GREET_INLINE`] | `GET /<name>` answers the same greeting itself (the single-component baseline) |
//! | [`KV_HTTP`] | `wasi:keyvalue` over HTTP: `GET/PUT/DELETE /<bucket>/<key>`, `POST …?add=N`, `GET /<bucket>[?many=a,b]` |
//! | [`TCP_CLIENT`] | `wasi:sockets`: `GET /?addr=HOST:PORT` sends `ping` over TCP and answers `reply: <line>`, `?lookup=NAME` resolves; `502` when denied |
//! | [`KV_COUNTER`] | service (`wasi:cli/run`): increments `hits` in bucket `$BUCKET`; `EXIT_AFTER=N` fails after N |

include!(concat!(env!("OUT_DIR"), "/components.rs"));

/// Every test component as `(name, path)`.
pub const ALL: [(&str, &str); 12] = [
    ("hello", HELLO),
    ("echo", ECHO),
    ("env-config", ENV_CONFIG),
    ("spinner", SPINNER),
    ("hog", HOG),
    ("http-caller", HTTP_CALLER),
    ("greeter", GREETER),
    ("greet-http", GREET_HTTP),
    ("greet-inline", GREET_INLINE),
    ("kv-http", KV_HTTP),
    ("kv-counter", KV_COUNTER),
    ("tcp-client", TCP_CLIENT),
];

/// Reads a test component's bytes.
pub fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read test component {path}: {e}"))
}
