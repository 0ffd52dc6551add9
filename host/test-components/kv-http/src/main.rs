//! Reads and writes `wasi:keyvalue` over HTTP, logging each request through `wasi:logging`.
//!
//! The bucket is the first path segment: `GET /<bucket>/<key>` answers the value (`404` when
//! absent), `PUT /<bucket>/<key>` stores the body, `DELETE /<bucket>/<key>` deletes it,
//! `POST /<bucket>/<key>?add=N` increments it atomically and answers the new value,
//! `GET /<bucket>` lists the keys (one per line, sorted), `GET /<bucket>?many=a,b` reads keys in one
//! batch. A store error answers `500` with the error. `GET|PUT /<bucket>/<key>?repeat=N` does the get
//! (or sets the body) N times and answers `<get|set> xN: <microseconds> us` (for benchmarks).

use wstd::http::{Body, Error, Method, Request, Response, StatusCode};

mod bindings {
    wit_bindgen::generate!({ path: "../wit", world: "kv-user", generate_all });
}

use bindings::wasi::keyvalue::{atomics, batch, store};
use bindings::wasi::logging::logging::{Level, log};

fn text(status: StatusCode, body: String) -> Result<Response<Body>, Error> {
    Ok(Response::builder().status(status).body(body.into())?)
}

fn store_error(err: store::Error) -> Result<Response<Body>, Error> {
    let message = match err {
        store::Error::NoSuchStore => "no-such-store".to_string(),
        store::Error::AccessDenied => "access-denied".to_string(),
        store::Error::Other(m) => format!("other: {m}"),
    };
    text(StatusCode::INTERNAL_SERVER_ERROR, format!("{message}\n"))
}

#[wstd::http_server]
async fn main(mut request: Request<Body>) -> Result<Response<Body>, Error> {
    let path = request.uri().path().trim_start_matches('/').to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let method = request.method().clone();
    log(Level::Info, "kv-http", &format!("{method} /{path}"));
    let (bucket_name, key) = match path.split_once('/') {
        Some((b, k)) => (b.to_owned(), Some(k.to_owned())),
        None => (path.clone(), None),
    };
    let bucket = match store::open(&bucket_name) {
        Ok(b) => b,
        Err(e) => return store_error(e),
    };
    let Some(key) = key else {
        if let Some(keys) = query.strip_prefix("many=") {
            let keys: Vec<String> = keys.split(',').map(str::to_owned).collect();
            return match batch::get_many(&bucket, &keys) {
                Ok(found) => {
                    let lines: String = found
                        .into_iter()
                        .zip(&keys)
                        .map(|(v, k)| match v {
                            Some((_, v)) => format!("{k}={}\n", String::from_utf8_lossy(&v)),
                            None => format!("{k} absent\n"),
                        })
                        .collect();
                    text(StatusCode::OK, lines)
                }
                Err(e) => store_error(e),
            };
        }
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            match bucket.list_keys(cursor) {
                Ok(page) => {
                    keys.extend(page.keys);
                    match page.cursor {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
                Err(e) => return store_error(e),
            }
        }
        keys.sort();
        return text(StatusCode::OK, keys.into_iter().map(|k| k + "\n").collect());
    };
    if let Some(n) = query.strip_prefix("repeat=").and_then(|n| n.parse::<u32>().ok()) {
        let value = if method == Method::PUT {
            request.body_mut().bytes_contents().await?.to_vec()
        } else {
            Vec::new()
        };
        let started = std::time::Instant::now();
        for _ in 0..n {
            let result = if method == Method::PUT {
                bucket.set(&key, &value)
            } else {
                bucket.get(&key).map(|_| ())
            };
            if let Err(e) = result {
                return store_error(e);
            }
        }
        let op = if method == Method::PUT { "set" } else { "get" };
        return text(StatusCode::OK, format!("{op} x{n}: {} us\n", started.elapsed().as_micros()));
    }
    match method {
        Method::GET => match bucket.get(&key) {
            Ok(Some(value)) => Ok(Response::new(value.into())),
            Ok(None) => text(StatusCode::NOT_FOUND, "absent\n".into()),
            Err(e) => store_error(e),
        },
        Method::PUT => {
            let value = request.body_mut().bytes_contents().await?;
            match bucket.set(&key, &value) {
                Ok(()) => text(StatusCode::NO_CONTENT, String::new()),
                Err(e) => store_error(e),
            }
        }
        Method::DELETE => match bucket.delete(&key) {
            Ok(()) => text(StatusCode::NO_CONTENT, String::new()),
            Err(e) => store_error(e),
        },
        Method::POST => {
            let delta = query.strip_prefix("add=").and_then(|n| n.parse().ok()).unwrap_or(1);
            match atomics::increment(&bucket, &key, delta) {
                Ok(n) => text(StatusCode::OK, format!("{n}\n")),
                Err(e) => store_error(e),
            }
        }
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "GET, PUT, DELETE or POST\n".into()),
    }
}
