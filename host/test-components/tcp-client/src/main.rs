//! Uses `wasi:sockets`: `GET /?addr=HOST:PORT` connects over TCP, sends `ping\n` and answers
//! `reply: <first line>`; `GET /?lookup=NAME` resolves a name and answers the addresses. A denied or
//! failed operation answers `502` with the error.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};

use wstd::http::{Body, Error, Request, Response, StatusCode};

fn failed(what: &str, err: std::io::Error) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(StatusCode::BAD_GATEWAY)
        .body(format!("{what} failed: {err}\n").into())?)
}

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let query = request.uri().query().unwrap_or("").to_owned();
    if let Some(name) = query.strip_prefix("lookup=") {
        return match (name, 0).to_socket_addrs() {
            Ok(addrs) => {
                let list: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
                Ok(Response::new(format!("{}\n", list.join(",")).into()))
            }
            Err(e) => failed("lookup", e),
        };
    }
    let Some(addr) = query.strip_prefix("addr=") else {
        return Ok(Response::builder().status(StatusCode::BAD_REQUEST).body("addr= or lookup=\n".into())?);
    };
    let mut stream = match TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => return failed("connect", e),
    };
    if let Err(e) = stream.write_all(b"ping\n") {
        return failed("write", e);
    }
    let mut line = String::new();
    if let Err(e) = BufReader::new(stream).read_line(&mut line) {
        return failed("read", e);
    }
    Ok(Response::new(format!("reply: {line}").into()))
}
