//! An HTTP component that imports `weft:test/greeter` from another component of its workload.
//!
//! `GET /<name>` answers the greeter's `greet(name)`; `GET /<name>?times=N` calls it N times and
//! answers the last greeting plus `calls: <greeter count>`.

use wstd::http::{Body, Error, Request, Response};

mod bindings {
    wit_bindgen::generate!({ path: "../wit", world: "greeter-client", generate_all });
}

use bindings::weft::test::greeter;

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let name = request.uri().path().trim_start_matches('/').to_owned();
    let times: u32 = request
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("times="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    if times <= 1 {
        return Ok(Response::new(greeter::greet(&name).into()));
    }
    let mut last = String::new();
    for _ in 0..times {
        last = greeter::greet(&name);
    }
    Ok(Response::new(format!("{last}calls: {}\n", greeter::count()).into()))
}
