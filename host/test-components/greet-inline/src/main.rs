//! The single-component twin of `greet-http` + `greeter`: the same greeting, made in the HTTP
//! component itself (the baseline of the linked-components benchmark).

use wstd::http::{Body, Error, Request, Response};

#[path = "../../greeting.rs"]
mod greeting;

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let name = request.uri().path().trim_start_matches('/').to_owned();
    Ok(Response::new(greeting::greeting(&name).into()))
}
