//! Echoes the request: the body unchanged, every `x-` request header copied back, plus
//! `x-echo-method`, `x-echo-uri` and `x-echo-authority`. `/trap` traps (a panic) instead, for tests of
//! how a failing component is reported.

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let (parts, mut body) = request.into_parts();
    if parts.uri.path() == "/trap" {
        panic!("trap requested");
    }
    let bytes = body.bytes_contents().await?;
    let mut response = Response::builder()
        .header("x-echo-method", parts.method.as_str())
        .header("x-echo-uri", parts.uri.to_string())
        .header("x-echo-authority", parts.uri.authority().map(|a| a.as_str()).unwrap_or(""));
    for (name, value) in parts.headers.iter() {
        if name.as_str().starts_with("x-") {
            response = response.header(name, value);
        }
    }
    Ok(response.body(Body::from(bytes.to_vec()))?)
}
