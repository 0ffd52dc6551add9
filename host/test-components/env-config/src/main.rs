//! Reads its environment (`wasi:cli/environment`) and configuration (`wasi:config/store`).
//!
//! - `GET /env` lists `KEY=value` lines (sorted); `GET /env/KEY` answers the value or `404`.
//! - `GET /config` lists `key=value` lines (sorted); `GET /config/KEY` answers the value or `404`.

use wstd::http::{Body, Error, Request, Response, StatusCode};

mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "env-config", generate_all });
}

use bindings::wasi::config::store;

fn found(value: Option<String>) -> Result<Response<Body>, Error> {
    Ok(match value {
        Some(value) => Response::new(value.into()),
        None => Response::builder().status(StatusCode::NOT_FOUND).body("not set\n".into())?,
    })
}

fn lines(mut pairs: Vec<(String, String)>) -> Response<Body> {
    pairs.sort();
    let text: String = pairs.into_iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    Response::new(text.into())
}

fn config_error(err: store::Error) -> Result<Response<Body>, Error> {
    let text = match err {
        store::Error::Upstream(m) => format!("upstream: {m}\n"),
        store::Error::Io(m) => format!("io: {m}\n"),
    };
    Ok(Response::builder().status(StatusCode::INTERNAL_SERVER_ERROR).body(text.into())?)
}

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let path = request.uri().path().to_owned();
    if path == "/env" {
        return Ok(lines(std::env::vars().collect()));
    }
    if let Some(key) = path.strip_prefix("/env/") {
        return found(std::env::var(key).ok());
    }
    if path == "/config" {
        return match store::get_all() {
            Ok(pairs) => Ok(lines(pairs)),
            Err(err) => config_error(err),
        };
    }
    if let Some(key) = path.strip_prefix("/config/") {
        return match store::get(key) {
            Ok(value) => found(value),
            Err(err) => config_error(err),
        };
    }
    Ok(Response::builder().status(StatusCode::NOT_FOUND).body("unknown path\n".into())?)
}
