//! Makes an outgoing request: `GET /` with header `x-target-url: <url>` fetches `<url>` and answers
//! `200` with `upstream <status>: <body>`, or `502` with `outgoing request failed: <error code>`.
//!
//! The outgoing call uses the raw `wasi:http/outgoing-handler` interface: the request body is finished
//! before the request is handed over, so the result never depends on how the host's HTTP client
//! schedules an empty body.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;
use wstd::http::{Body, Error, Request, Response, StatusCode, Uri};

fn fetch(url: &Uri) -> Result<(u16, String), String> {
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Get).map_err(|()| "set method")?;
    let scheme = match url.scheme_str() {
        Some("https") => Scheme::Https,
        _ => Scheme::Http,
    };
    request.set_scheme(Some(&scheme)).map_err(|()| "set scheme")?;
    request.set_authority(url.authority().map(|a| a.as_str())).map_err(|()| "set authority")?;
    request.set_path_with_query(url.path_and_query().map(|p| p.as_str())).map_err(|()| "set path")?;
    let body = request.body().map_err(|()| "take body")?;
    OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))?;
    let pending = outgoing_handler::handle(request, None).map_err(|e: ErrorCode| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = pending.get().ok_or("no response")?.map_err(|()| "response taken twice")?;
    let response = response.map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let incoming = response.consume().map_err(|()| "consume body")?;
    let stream = incoming.stream().map_err(|()| "body stream")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
        }
    }
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let Some(url) = request.headers().get("x-target-url").and_then(|v| v.to_str().ok()) else {
        return Ok(Response::builder().status(StatusCode::BAD_REQUEST).body("missing x-target-url\n".into())?);
    };
    let url: Uri = url.parse()?;
    match fetch(&url) {
        Ok((status, text)) => Ok(Response::new(format!("upstream {status}: {text}").into())),
        Err(err) => Ok(Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(format!("outgoing request failed: {err}\n").into())?),
    }
}
